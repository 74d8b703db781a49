package router

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/backupstore"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
)

// sent keeps what a delivery published, in order.
type sent struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (s *sent) Publish(topic string, msgs ...*message.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, msgs...)
	return nil
}

// The throttle, on a clock the test moves: the first update goes out, then
// at most one a second, each higher than the last; 100% goes out at once,
// and only once; nothing after the request's context ends.
func TestProgressThrottle(t *testing.T) {
	vol, id := uuid.NewString(), uuid.NewString()
	raw, _ := json.Marshal(map[string]any{"backup_id": uuid.NewString(), "volume_id": vol, "project_id": projA})
	rec, err := events.NewInput(events.BackupRequested, "/test", id, raw, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := events.Decode(rec.Headers, rec.Value, events.BackupRequested)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	pub := &sent{}
	d := &delivery{env: &functions.Env{Instance: "ember-test"}, pub: pub, cfg: &Config{TopicPrefix: "p.", OutputMode: events.Binary},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now }}
	ctx, cancel := context.WithCancel(context.Background())
	report := d.progress(ctx, in)
	for _, step := range []struct {
		after time.Duration // since t0
		pct   int
	}{
		{0, 0},                       // first: out
		{500 * time.Millisecond, 10}, // within the second: dropped
		{999 * time.Millisecond, 20}, // dropped
		{time.Second, 30},            // a second after 0%: out
		{3 * time.Second, 25},        // lower: dropped
		{3 * time.Second, 30},        // the same: dropped
		{3100 * time.Millisecond, 60},
		{3200 * time.Millisecond, 100}, // 0.1 s after 60%, but 100%: out
		{5 * time.Second, 100},         // once
	} {
		now = t0.Add(step.after)
		report(step.pct)
	}
	cancel()
	report(100)

	var got []int
	for _, m := range pub.msgs {
		h := events.Headers(m)
		if h["ce_type"] != "backup.create.progress" || h["ce_causationid"] != id || m.Metadata.Get("ce_source") != "/ember/ember-test" {
			t.Fatalf("progress record headers: %v", h)
		}
		var data events.ResultData
		if err := json.Unmarshal(m.Payload, &data); err != nil || data.Percent == nil || data.VolumeID != vol {
			t.Fatalf("progress data %s: %v", m.Payload, err)
		}
		got = append(got, *data.Percent)
	}
	if want := []int{0, 30, 60, 100}; !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
}

// pacedDriver reads volumes no faster than rate bytes a second, so that a
// backup lasts long enough for the throttle to show. The pace is a lower
// bound only: a slower machine makes the copy longer, never shorter.
type pacedDriver struct {
	drivers.Driver
	rate int64
}

func (p *pacedDriver) ReadVolume(ctx context.Context, v drivers.Volume, w io.Writer) error {
	return p.Driver.ReadVolume(ctx, v, &pacedWriter{w: w, rate: p.rate, began: time.Now()})
}

type pacedWriter struct {
	w     io.Writer
	rate  int64
	began time.Time
	n     int64
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if ahead := time.Duration(p.n*int64(time.Second)/p.rate) - time.Since(p.began); ahead > 0 {
		time.Sleep(ahead)
	}
	return n, err
}

// Long copies through the real broker, Redis and file driver publish
// <op>.progress: a backup (Ember counts the bytes), and a clone and a
// volume from a snapshot (qemu-img convert -p counts them).
func TestLongCopiesPublishProgress(t *testing.T) {
	p := newPipeline(t, func(pp *pipeline) {
		pp.types = []string{events.VolumeRequested, events.SnapshotRequested, events.BackupRequested}
		backups := t.TempDir()
		pp.extend = func(env *functions.Env) {
			// At least 3 s for a 1 GiB backup.
			env.Backends["local"] = &pacedDriver{Driver: pp.driver, rate: drivers.GiB / 3}
			env.Backups = &backupstore.Store{Dir: backups, ChunkSize: 4 << 20}
		}
	})
	p.start()
	ops := &opsPipeline{pipeline: p}
	a, s := uuid.NewString(), uuid.NewString()
	created := ops.do(events.VolumeRequested, createData(a, 1), events.PhaseEnd)
	write(t, p.driver, a, created.Data.ProviderLocation, content(1, 9))

	backup := ops.do(events.BackupRequested, map[string]any{"backup_id": uuid.NewString(), "volume_id": a}, events.PhaseEnd)
	rs := progressOf(t, p, "backup.create.progress", backup.Causation, a)
	if !slices.ContainsFunc(rs, func(r testenv.Result) bool { return *r.Data.Percent > 0 && *r.Data.Percent < 100 }) {
		t.Fatalf("a backup of at least 3 s reported no progress between 0 and 100: %v", percentsOf(rs))
	}

	clone := createData(uuid.NewString(), 1)
	clone["source"] = map[string]any{"kind": "volume", "id": a}
	end := ops.do(events.VolumeRequested, clone, events.PhaseEnd)
	progressOf(t, p, "volume.create.progress", end.Causation, end.Data.VolumeID)

	ops.do(events.SnapshotRequested, map[string]any{"snapshot_id": s, "volume_id": a}, events.PhaseEnd)
	fromSnap := createData(uuid.NewString(), 2)
	fromSnap["source"] = map[string]any{"kind": "snapshot", "id": s}
	end = ops.do(events.VolumeRequested, fromSnap, events.PhaseEnd)
	progressOf(t, p, "volume.create.progress", end.Causation, end.Data.VolumeID)
}

// progressOf waits for request id's progress results (of type typ, about
// volume vol) to reach 100% and checks them as a consumer would rely on
// them: percents in 0..100 that never go back, one 100% and that last,
// updates at least about a second apart (by the records' timestamps)
// except the final one, and no progress of that volume caused by another
// request.
func progressOf(t *testing.T, p *pipeline, typ, id, vol string) []testenv.Result {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var rs []testenv.Result
	for {
		rs = p.results.Of(typ, id)
		if slices.ContainsFunc(rs, func(r testenv.Result) bool { return r.Data.Percent != nil && *r.Data.Percent == 100 }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s of request %s: no 100%% within 60 s; got %d results", typ, id, len(rs))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, r := range p.results.Of(typ, "") {
		if r.Data.VolumeID == vol && r.Causation != id {
			t.Fatalf("%s about %s caused by %q, not by request %s", typ, vol, r.Causation, id)
		}
	}
	// The records share a partition (their key is the volume id), so they
	// are read in the order published.
	for i, r := range rs {
		pct := r.Data.Percent
		if pct == nil || *pct < 0 || *pct > 100 || r.Data.VolumeID != vol {
			t.Fatalf("%s #%d: %s", typ, i, r.Value)
		}
		if i == 0 {
			continue
		}
		prev := rs[i-1]
		if *pct < *prev.Data.Percent || *prev.Data.Percent == 100 {
			t.Fatalf("%s: percents %v go back or go on after 100", typ, percentsOf(rs))
		}
		// A second apart by the throttle's clock; the timestamps are the
		// producer's, taken a moment after it decides, hence the slack.
		if gap := r.Time.Sub(prev.Time); *pct < 100 && gap < 750*time.Millisecond {
			t.Fatalf("%s: %d%% and %d%% only %s apart", typ, *prev.Data.Percent, *pct, gap)
		}
	}
	if last := rs[len(rs)-1]; *last.Data.Percent != 100 {
		t.Fatalf("%s: the last of %v is not 100%%", typ, percentsOf(rs))
	}
	t.Logf("%s: %v", typ, percentsOf(rs))
	return rs
}

func percentsOf(rs []testenv.Result) []int {
	var out []int
	for _, r := range rs {
		if r.Data.Percent != nil {
			out = append(out, *r.Data.Percent)
		}
	}
	return out
}
