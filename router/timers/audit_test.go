package timers_test

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router/timers"
)

// recorder is a router.Publisher that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []*message.Message
	tops []string
}

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.msgs = append(r.msgs, m)
		r.tops = append(r.tops, topic)
	}
	return nil
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, m := range r.msgs {
		ids = append(ids, m.UUID)
	}
	sort.Strings(ids)
	return ids
}

// TestAuditRegistryAndGuard writes registry records as the functions
// leave them and checks what one audit period publishes, that among
// replicas one publishes it, and that a redo publishes the same events.
func TestAuditRegistryAndGuard(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := "a" + testenv.Unique()
	ctx := context.Background()
	begin := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	end := begin.Add(time.Hour)
	live, inUse, gone, failed, late := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	snap, deadSnap := uuid.NewString(), uuid.NewString()
	created := events.FormatTime(begin.Add(-time.Hour))
	for _, v := range []functions.Volume{
		{ID: live, ProjectID: projA, UserID: userA, Backend: "local", SizeGB: 10, Status: functions.StatusAvailable, CreatedAt: created,
			Snapshots: map[string]functions.Snapshot{
				snap:     {ID: snap, Status: functions.StatusAvailable, VolumeSizeGB: 8, CreatedAt: created},
				deadSnap: {ID: deadSnap, Status: "error", CreatedAt: created}}},
		{ID: inUse, ProjectID: projB, Backend: "local", SizeGB: 2, Status: functions.StatusInUse, CreatedAt: created},
		{ID: gone, ProjectID: projB, Backend: "local", SizeGB: 1, Status: functions.StatusDeleted, CreatedAt: created},
		{ID: failed, ProjectID: projB, Backend: "local", SizeGB: 1, Status: functions.StatusError, CreatedAt: created},
		{ID: late, ProjectID: projB, Backend: "local", SizeGB: 1, Status: functions.StatusAvailable, CreatedAt: events.FormatTime(end.Add(time.Second))},
	} {
		raw, _ := json.Marshal(v)
		if err := rdb.Set(ctx, prefix+":{"+v.ID+"}:vol", raw, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Other keys of the same prefix are not records.
	rdb.Set(ctx, prefix+":{"+live+"}:lock", "x", time.Hour)
	rdb.HSet(ctx, prefix+":{backend:local}:stats", "at", 1)
	t.Cleanup(func() {
		for _, id := range []string{live, inUse, gone, failed, late} {
			rdb.Del(ctx, prefix+":{"+id+"}:vol", prefix+":{"+id+"}:lock")
		}
	})

	recs := make([]*recorder, 3)
	var wg sync.WaitGroup
	won := make([]bool, 3)
	for i := range recs {
		recs[i] = &recorder{}
		a := &timers.Audit{RDB: rdb, Out: timers.Output{Pub: recs[i], TopicPrefix: "p."}, Prefix: prefix}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if won[i], err = a.RunPeriod(ctx, begin, end); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var winner *recorder
	for i, w := range won {
		if w {
			if winner != nil {
				t.Fatal("two replicas published one period")
			}
			winner = recs[i]
		}
	}
	if winner == nil {
		t.Fatal("no replica published the period")
	}
	got := map[string]events.ResultData{}
	for i, m := range winner.msgs {
		var d events.ResultData
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			t.Fatal(err)
		}
		id := d.VolumeID
		if winner.tops[i] == "p.snapshot.exists" {
			id = d.SnapshotID
		}
		got[winner.tops[i]+" "+id] = d
		if m.Metadata.Get("ce_id") != m.UUID || m.Metadata.Get("ce_time") != "2026-03-01T11:00:00Z" ||
			m.Metadata.Get("ce_source") != "/ember/local" || m.Metadata.Get("ce_partitionkey") != d.VolumeID {
			t.Errorf("headers %v", m.Metadata)
		}
	}
	if len(got) != 3 {
		t.Fatalf("published %v; want volume.exists for %s and %s, snapshot.exists for %s", got, live, inUse, snap)
	}
	v := got["p.volume.exists "+live]
	if v.Size != 10 || v.TenantID != projA || v.UserID != userA || v.Status != "available" || v.Host != "local" ||
		v.AuditPeriodBeginning != "2026-03-01T10:00:00.000000Z" || v.AuditPeriodEnding != "2026-03-01T11:00:00.000000Z" {
		t.Errorf("volume.exists %+v", v)
	}
	s := got["p.snapshot.exists "+snap]
	if s.VolumeSize != 8 || s.VolumeID != live || s.TenantID != projA || s.AuditPeriodEnding != v.AuditPeriodEnding {
		t.Errorf("snapshot.exists %+v", s)
	}
	if got["p.volume.exists "+inUse].Status != "in-use" {
		t.Errorf("in-use volume: %+v", got["p.volume.exists "+inUse])
	}
	// The period is done: nobody publishes it again.
	again := &recorder{}
	a := &timers.Audit{RDB: rdb, Out: timers.Output{Pub: again}, Prefix: prefix}
	if did, err := a.RunPeriod(ctx, begin, end); did || err != nil || len(again.msgs) != 0 {
		t.Fatalf("a done period was published again: %v %v", did, err)
	}
	// A redo (after a crash mid-period) publishes the same events.
	if _, err := a.Publish(ctx, begin, end); err != nil {
		t.Fatal(err)
	}
	if a, b := again.ids(), winner.ids(); len(a) != 3 || a[0] != b[0] || a[1] != b[1] || a[2] != b[2] {
		t.Fatalf("redo ids %v, first %v", a, b)
	}
	// The next period has new ids.
	next := &recorder{}
	a = &timers.Audit{RDB: rdb, Out: timers.Output{Pub: next}, Prefix: prefix}
	if _, err := a.Publish(ctx, end, end.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := next.ids(); len(n) != 4 || n[0] == winner.ids()[0] {
		// late (created in the next period) is in it now
		t.Fatalf("next period: %v", n)
	}
}

func TestLastPeriodIsAligned(t *testing.T) {
	a := &timers.Audit{Period: time.Hour}
	b, e := a.LastPeriod(time.Date(2026, 3, 1, 10, 42, 7, 0, time.UTC))
	if b != time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC) || e != time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC) {
		t.Fatalf("%s – %s", b, e)
	}
}
