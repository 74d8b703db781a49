package router

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
)

// publishLarge sends rec to partition of typ's topic with a producer that
// allows what the broker allows (1 MiB), as a Java client would.
func (p *pipeline) publishLarge(typ string, rec events.Record, partition int32) (offset int64) {
	p.t.Helper()
	sc := p.cfg.SaramaConfig()
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.MaxMessageBytes = 1 << 20
	prod, err := sarama.NewSyncProducer(p.cfg.Brokers, sc)
	if err != nil {
		p.t.Fatal(err)
	}
	defer prod.Close()
	pm, _ := events.KafkaMarshaler{}.Marshal(p.cfg.Topic(typ), rec.Message())
	pm.Partition = partition
	_, off, err := prod.SendMessage(pm)
	if err != nil {
		p.t.Fatal(err)
	}
	return off
}

// TestOversizedRecordDoesNotStopItsPartition: a 1,000,100-byte record that
// is no CloudEvent, then one whose padded tracestate would make its .start
// larger than the producer sends, then a valid request, all on one
// partition of the real broker. The first two are dead-lettered (truncated,
// with their coordinates), and the valid one is answered: the partition
// moves on. Before the fix the first record was retried forever and every
// record behind it waited.
func TestOversizedRecordDoesNotStopItsPartition(t *testing.T) {
	p := newPipeline(t)
	p.start()
	vol := uuid.NewString()

	junk := events.Record{Type: events.VolumeDeleted, Key: vol, Headers: map[string]string{"content-type": "application/json"},
		Value: []byte(strings.Repeat("x", 1_000_100))}
	junkOff := p.publishLarge(events.VolumeDeleted, junk, 0)

	padded := hostileRecord(events.VolumeDeleted, vol, mustJSON(deleteData(vol, projA)),
		map[string]string{"ce_tracestate": "v=" + strings.Repeat("a", 900_000)})
	paddedOff := p.publishLarge(events.VolumeDeleted, padded, 0)

	// A tracestate over W3C's 512 characters but within the header bound is
	// cut, not refused; the valid request behind it is answered.
	long := make([]string, 40)
	for i := range long {
		long[i] = "k" + strconv.Itoa(i) + "=" + strings.Repeat("v", 30)
	}
	ok := hostileRecord(events.VolumeDeleted, vol, mustJSON(deleteData(vol, projA)),
		map[string]string{"ce_tracestate": strings.Join(long, ","), "ce_traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	p.publishLarge(events.VolumeDeleted, ok, 0)

	end := p.results.Wait(t, "volume.delete.end", ok.ID, 1)[0]
	if ts := end.Headers["ce_tracestate"]; len(ts) > events.MaxTraceStateBytes || !strings.HasPrefix(ts, "k0=") {
		t.Fatalf("result tracestate is %d bytes (%.40q…), want the first members within %d", len(ts), ts, events.MaxTraceStateBytes)
	}
	deadline := time.Now().Add(30 * time.Second)
	var dlq []testenv.Result
	for time.Now().Before(deadline) {
		if dlq = p.results.Of("volume.deleted.dlq", ""); len(dlq) >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(dlq) != 2 {
		t.Fatalf("%d dead letters, want the 2 oversized records", len(dlq))
	}
	want := map[string]string{strconv.FormatInt(junkOff, 10): "1000100", strconv.FormatInt(paddedOff, 10): strconv.Itoa(len(padded.Value))}
	for _, d := range dlq {
		h := d.Headers
		size, found := want[h[HeaderDLQOffset]]
		if !found || h[HeaderDLQPartition] != "0" || h[HeaderDLQTopic] != p.cfg.Topic(events.VolumeDeleted) ||
			h[HeaderDLQSize] != size || h[HeaderDLQReason] == "" {
			t.Errorf("dead letter headers: %v", without(h, "ce_tracestate"))
		}
		if n := len(d.Value) + len(d.Key); n > 256<<10 {
			t.Errorf("dead letter of %d bytes", n)
		}
		delete(want, h[HeaderDLQOffset])
	}
	if h := dlq[0].Headers; h[HeaderDLQOffset] == strconv.FormatInt(junkOff, 10) &&
		(h[HeaderDLQTruncated] != "true" || len(dlq[0].Value) != MaxDeadLetterValue) {
		t.Errorf("the 1,000,100-byte record was not truncated: %d bytes, headers %v", len(dlq[0].Value), h)
	}
}

func without(h map[string]string, key string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if k != key {
			out[k] = v
		}
	}
	return out
}

// TestStartTellsAStrangerNothing: project B's delete and snapshot of A's
// volume are refused, and neither their .start nor their .error carries
// anything of A's volume but its id (before the fix .start carried A's
// tenant, user, name, metadata, size, backend and provider location).
func TestStartTellsAStrangerNothing(t *testing.T) {
	p := newPipeline(t, func(p *pipeline) {
		p.types = []string{events.VolumeRequested, events.VolumeDeleted, events.SnapshotRequested, events.VolumeExtendRequested}
	})
	p.start()
	vol := uuid.NewString()
	data := createData(vol, 1)
	data["metadata"] = map[string]string{"secret": "A's"}
	p.results.Wait(t, "volume.create.end", p.emit(events.VolumeRequested, data), 1)

	reqs := map[string]string{
		"volume.delete": p.emit(events.VolumeDeleted, deleteData(vol, projB)),
		"snapshot.create": p.emit(events.SnapshotRequested,
			map[string]any{"snapshot_id": uuid.NewString(), "volume_id": vol, "project_id": projB}),
		"volume.resize": p.emit(events.VolumeExtendRequested, map[string]any{"volume_id": vol, "project_id": projB, "new_size_gb": 2}),
	}
	for op, id := range reqs {
		for _, phase := range []string{"start", "error"} {
			r := p.results.Wait(t, op+"."+phase, id, 1)[0]
			d := r.Data
			if d.TenantID != projB || d.VolumeID != vol || d.UserID != "" || d.DisplayName != "" || d.Size != 0 ||
				d.Host != "" || d.Backend != "" || d.ProviderLocation != "" || len(d.Metadata) != 0 || d.CreatedAt != "" {
				t.Errorf("%s.%s tells B about A's volume: %+v", op, phase, d)
			}
			if r.Headers["ce_source"] != "/ember/ember-test" {
				t.Errorf("%s.%s source %q names A's backend", op, phase, r.Headers["ce_source"])
			}
			if phase == "error" && (d.Error == nil || d.Error.Code != functions.CodeForbidden) {
				t.Errorf("%s.error: %+v, want forbidden", op, d.Error)
			}
		}
	}
	if !exists(p.volumeFile(vol)) {
		t.Fatal("A's volume is gone")
	}
}

// TestReusedKeyIsNotAnsweredWithAStrangersResults: the idempotency key is
// the request's type, volume, source and id. A delete from project B that
// reuses the (source, id) of A's create is its own request (refused as
// forbidden), never acked with A's stored volume.create.end; a create that
// reuses the key of a finished create with another payload gets its own
// .error (conflict), and the first create's results stand.
func TestReusedKeyIsNotAnsweredWithAStrangersResults(t *testing.T) {
	p := newPipeline(t)
	p.start()
	vol := uuid.NewString()
	id := p.emit(events.VolumeRequested, createData(vol, 1))
	p.results.Wait(t, "volume.create.end", id, 1)

	reuse := func(typ string, data any) {
		rec, err := events.NewInput(typ, "/test", id, mustJSON(data), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		p.publish(typ, rec, -1)
	}
	reuse(events.VolumeDeleted, deleteData(vol, projB))
	e := p.results.Wait(t, "volume.delete.error", id, 1)[0]
	if e.Data.Error == nil || e.Data.Error.Code != functions.CodeForbidden {
		t.Fatalf("B's delete with A's key: %+v, want forbidden", e.Data.Error)
	}

	bigger := createData(vol, 2)
	reuse(events.VolumeRequested, bigger)
	c := p.results.Wait(t, "volume.create.error", id, 1)[0]
	if c.Data.Error == nil || c.Data.Error.Code != string(drivers.KindConflict) {
		t.Fatalf("reused key with another payload: %+v, want conflict", c.Data.Error)
	}
	// The same request again is a duplicate: its stored .end once more.
	reuse(events.VolumeRequested, createData(vol, 1))
	ends := p.results.Wait(t, "volume.create.end", id, 2)
	if ends[0].ID != ends[1].ID || c.ID == ends[0].ID {
		t.Fatalf("ids: .end %s and %s, conflict %s", ends[0].ID, ends[1].ID, c.ID)
	}
	if !exists(p.volumeFile(vol)) {
		t.Fatal("A's volume is gone")
	}
	if n := p.driver.creates.Load() + p.driver.deletes.Load(); n != 1 {
		t.Fatalf("%d driver calls, want the first create only", n)
	}
}

// hangingCreate blocks the first CreateVolume, deaf to its context (a
// command stuck on its host), until release; then the create lands.
type hangingCreate struct {
	drivers.Driver
	hang    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *hangingCreate) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	if h.hang.CompareAndSwap(true, false) {
		close(h.entered)
		<-h.release
		return h.Driver.CreateVolume(context.Background(), v)
	}
	return h.Driver.CreateVolume(ctx, v)
}

// TestStaleOwnerRemovesWhatItMadeAfterADelete: a create's host hangs, its
// lease is lost, a delete of the volume runs meanwhile (a tombstone), and
// then the hung create lands. The stale owner's fenced complete fails; it
// finds the tombstone and deletes the file it made, which nobody else
// would ever delete. Before the fix the file stayed.
func TestStaleOwnerRemovesWhatItMadeAfterADelete(t *testing.T) {
	h := &hangingCreate{entered: make(chan struct{}), release: make(chan struct{})}
	h.hang.Store(true)
	p := newPipeline(t)
	p.extend = func(env *functions.Env) {
		h.Driver = p.driver
		env.Backends["local"] = h
	}
	p.start()
	vol := uuid.NewString()
	raw := mustJSON(createData(vol, 1))
	id := uuid.NewString()
	rec, _ := events.NewInput(events.VolumeRequested, "/test", id, raw, time.Time{})
	p.publish(events.VolumeRequested, rec, 0)
	select {
	case <-h.entered:
	case <-time.After(60 * time.Second):
		t.Fatal("the create never reached the driver")
	}
	// The lease runs out (as if the owner had been paused past it).
	if err := p.guard.rdb.Del(context.Background(), p.guard.key(vol, "lock")).Err(); err != nil {
		t.Fatal(err)
	}
	del := p.emit(events.VolumeDeleted, deleteData(vol, projA))
	p.results.Wait(t, "volume.delete.end", del, 1)
	close(h.release)
	// The redelivered create finds the tombstone.
	e := p.results.Wait(t, "volume.create.error", id, 1)[0]
	if e.Data.Error == nil || e.Data.Error.Code != functions.CodeVolumeDeleted {
		t.Fatalf("create after its delete: %+v", e.Data.Error)
	}
	if exists(p.volumeFile(vol)) {
		t.Fatal("the stale owner's volume file is left behind after the delete")
	}
}

// TestDeleteOfAnUnknownIdDoesNotSquatIt: project B deletes a volume id
// nobody has created; A's create of that id still works (a delete of an id
// never seen leaves a tombstone only for its own project's late create).
func TestDeleteOfAnUnknownIdDoesNotSquatIt(t *testing.T) {
	p := newPipeline(t)
	p.start()
	vol := uuid.NewString()
	p.results.Wait(t, "volume.delete.end", p.emit(events.VolumeDeleted, deleteData(vol, projB)), 1)
	p.results.Wait(t, "volume.create.end", p.emit(events.VolumeRequested, createData(vol, 1)), 1)
	if !exists(p.volumeFile(vol)) {
		t.Fatal("A's volume was not made")
	}
	// A project's own late create of an id it deleted is refused (ordering).
	other := uuid.NewString()
	p.results.Wait(t, "volume.delete.end", p.emit(events.VolumeDeleted, deleteData(other, projA)), 1)
	e := p.results.Wait(t, "volume.create.error", p.emit(events.VolumeRequested, createData(other, 1)), 1)[0]
	if e.Data.Error == nil || e.Data.Error.Code != functions.CodeVolumeDeleted {
		t.Fatalf("late create after its own delete: %+v", e.Data.Error)
	}
}
