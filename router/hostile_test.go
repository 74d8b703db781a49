package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
)

// recordingDriver records every driver call that reaches the backend.
type recordingDriver struct {
	drivers.Driver
	mu    sync.Mutex
	calls []string
}

func (r *recordingDriver) record(op string) {
	r.mu.Lock()
	r.calls = append(r.calls, op)
	r.mu.Unlock()
}

func (r *recordingDriver) reset() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *recordingDriver) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	r.record("create_volume " + v.ID)
	return r.Driver.CreateVolume(ctx, v)
}
func (r *recordingDriver) DeleteVolume(ctx context.Context, v drivers.Volume) error {
	r.record("delete_volume " + v.ID)
	return r.Driver.DeleteVolume(ctx, v)
}
func (r *recordingDriver) ExtendVolume(ctx context.Context, v drivers.Volume, n int) error {
	r.record("extend_volume " + v.ID)
	return r.Driver.ExtendVolume(ctx, v, n)
}
func (r *recordingDriver) CreateSnapshot(ctx context.Context, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	r.record("create_snapshot " + s.ID)
	return r.Driver.CreateSnapshot(ctx, s)
}
func (r *recordingDriver) DeleteSnapshot(ctx context.Context, s drivers.Snapshot) error {
	r.record("delete_snapshot " + s.ID)
	return r.Driver.DeleteSnapshot(ctx, s)
}
func (r *recordingDriver) CreateVolumeFromSnapshot(ctx context.Context, v drivers.Volume, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	r.record("create_volume_from_snapshot " + v.ID)
	return r.Driver.CreateVolumeFromSnapshot(ctx, v, s)
}
func (r *recordingDriver) CreateClonedVolume(ctx context.Context, v, src drivers.Volume) (drivers.ModelUpdate, error) {
	r.record("create_cloned_volume " + v.ID)
	return r.Driver.CreateClonedVolume(ctx, v, src)
}
func (r *recordingDriver) InitializeConnection(ctx context.Context, v drivers.Volume, a string, c drivers.Connector) (drivers.ConnectionInfo, error) {
	r.record("initialize_connection " + v.ID)
	return r.Driver.InitializeConnection(ctx, v, a, c)
}
func (r *recordingDriver) TerminateConnection(ctx context.Context, v drivers.Volume, a string, c drivers.Connector) error {
	r.record("terminate_connection " + v.ID)
	return r.Driver.TerminateConnection(ctx, v, a, c)
}
func (r *recordingDriver) ReadVolume(ctx context.Context, v drivers.Volume, w io.Writer) error {
	r.record("read_volume " + v.ID)
	return r.Driver.ReadVolume(ctx, v, w)
}
func (r *recordingDriver) WriteVolume(ctx context.Context, v drivers.Volume, rd io.Reader) error {
	r.record("write_volume " + v.ID)
	return r.Driver.WriteVolume(ctx, v, rd)
}

// GetVolumeStats is not recorded: timers may ask for capacity at any time,
// and it changes nothing.

// hostile is one hostile record and how Ember must answer it.
type hostile struct {
	name string
	typ  string
	rec  events.Record
	dlq  bool // dead letter; else an .error result caused by rec's id
	code string
}

// hostileRecord builds a binary-mode record with every attribute set from
// data; change then removes ("" values) or replaces attributes.
func hostileRecord(typ, subject string, data []byte, change map[string]string) events.Record {
	id := uuid.NewString()
	h := map[string]string{"ce_specversion": "1.0", "ce_id": id, "ce_source": "/hostile", "ce_type": typ,
		"ce_subject": subject, "content-type": "application/json"}
	for k, v := range change {
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return events.Record{ID: h["ce_id"], Type: typ, Key: subject, Headers: h, Value: data}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// TestHostileEventsRunNothing publishes a corpus of hostile events on the
// real broker: oversized, wrong types, missing attributes, path and shell
// characters, other projects' ids, replays of old events. Each is answered
// by an .error result (with its causationid) or goes to the dead-letter
// topic, and not one reaches the driver. A replay of a finished request
// re-publishes its stored result, byte for byte, and runs nothing.
func TestHostileEventsRunNothing(t *testing.T) {
	p := newPipeline(t, func(p *pipeline) {
		p.types = []string{events.VolumeRequested, events.VolumeDeleted, events.VolumeExtendRequested,
			events.VolumeAttachRequested, events.SnapshotRequested, events.VolumeMigrateRequested, events.VolumeUploadRequested}
	})
	rec := &recordingDriver{Driver: p.driver.Driver}
	p.driver.Driver = rec
	fns := p.functions()
	var topics []string
	for _, typ := range functions.Types(fns) {
		topics = append(append(topics, events.ResultTypes(typ)...), typ+".dlq")
	}
	results := testenv.Collect(t, p.cfg.Brokers, p.cfg.SaramaConfig(), p.cfg.TopicPrefix, topics)
	began := time.Now()
	p.start()
	t.Logf("%d functions consuming after %s", len(fns), time.Since(began).Round(time.Millisecond))

	// Setup: projA owns vol; gone was created and deleted (a tombstone).
	vol, gone := uuid.NewString(), uuid.NewString()
	create := func(v string) map[string]any {
		return map[string]any{"volume_id": v, "project_id": projA, "user_id": userA, "size_gb": 1, "backend": "local"}
	}
	volReq := p.emit(events.VolumeRequested, create(vol))
	results.Wait(t, "volume.create.end", volReq, 1)
	goneReq := p.emit(events.VolumeRequested, create(gone))
	results.Wait(t, "volume.create.end", goneReq, 1)
	goneDel := p.emit(events.VolumeDeleted, deleteData(gone, projA))
	results.Wait(t, "volume.delete.end", goneDel, 1)
	if calls := rec.reset(); len(calls) != 3 {
		t.Fatalf("setup ran %v", calls)
	}
	filesBefore := listDir(t, p.dir)
	t.Logf("setup done after %s", time.Since(began).Round(time.Millisecond))

	snap, att := uuid.NewString(), uuid.NewString()
	conn := map[string]any{"initiator": "iqn.1993-08.org.debian:01:abc", "host": "compute-1", "ip": "10.0.0.5"}
	var corpus []hostile
	add := func(name, typ string, r events.Record, dlq bool, code string) {
		corpus = append(corpus, hostile{name: name, typ: typ, rec: r, dlq: dlq, code: code})
	}
	bad := func(name, typ, subject string, data any) {
		add(name, typ, hostileRecord(typ, subject, mustJSON(data), nil), false, "invalid")
	}
	attr := func(name string, change map[string]string) {
		add(name, events.VolumeRequested, hostileRecord(events.VolumeRequested, vol, mustJSON(create(uuid.NewString())), change), true, "")
	}
	// Oversized.
	big := create(uuid.NewString())
	big["name"] = strings.Repeat("A", events.MaxDataBytes+1)
	bad("oversized data", events.VolumeRequested, big["volume_id"].(string), big)
	meta := create(uuid.NewString())
	m := map[string]string{}
	for i := 0; i < 100; i++ {
		m[fmt.Sprint("k", i)] = "v"
	}
	meta["metadata"] = m
	bad("too many metadata keys", events.VolumeRequested, meta["volume_id"].(string), meta)
	bad("size over the limit", events.VolumeExtendRequested, vol, map[string]any{"volume_id": vol, "project_id": projA, "new_size_gb": 1 << 20})
	// Wrong types.
	wrong := create(uuid.NewString())
	wrong["size_gb"] = "10"
	bad("size as a string", events.VolumeRequested, wrong["volume_id"].(string), wrong)
	bad("volume id as a number", events.VolumeDeleted, "42", map[string]any{"volume_id": 42, "project_id": projA})
	bad("connector as a string", events.VolumeAttachRequested, vol, map[string]any{"volume_id": vol, "project_id": projA, "attachment_id": att, "connector": "rm -rf /"})
	bad("data is an array", events.SnapshotRequested, snap, []any{snap, vol})
	add("data is not JSON", events.VolumeDeleted, hostileRecord(events.VolumeDeleted, vol, []byte("{'volume_id': 1"), nil), false, "invalid")
	add("trailing JSON", events.VolumeDeleted, hostileRecord(events.VolumeDeleted, vol, []byte(`{"volume_id":"`+vol+`","project_id":"`+projA+`"} {"volume_id":"x"}`), nil), false, "invalid")
	// Missing or wrong attributes: dead letters.
	attr("no id", map[string]string{"ce_id": ""})
	attr("no source", map[string]string{"ce_source": ""})
	attr("no specversion", map[string]string{"ce_specversion": ""})
	attr("specversion 0.3", map[string]string{"ce_specversion": "0.3"})
	attr("no subject", map[string]string{"ce_subject": ""})
	attr("no content type", map[string]string{"content-type": ""})
	attr("xml content", map[string]string{"content-type": "application/xml"})
	attr("type of another topic", map[string]string{"ce_type": events.VolumeDeleted})
	attr("bad time", map[string]string{"ce_time": "yesterday; reboot"})
	add("structured, not JSON", events.VolumeRequested, events.Record{Type: events.VolumeRequested, Key: vol,
		Headers: map[string]string{"content-type": "application/cloudevents+json"}, Value: []byte(`{"specversion":"1.0",`)}, true, "")
	// Path and shell characters where ids and names go.
	for _, id := range []string{"../../etc/passwd", "x; rm -rf /", "$(reboot)", "`id`", strings.ToUpper(vol), vol + "\n", "-rf"} {
		bad("id "+id, events.VolumeDeleted, id, map[string]any{"volume_id": id, "project_id": projA})
		bad("snapshot id "+id, events.SnapshotRequested, id, map[string]any{"snapshot_id": id, "volume_id": vol, "project_id": projA})
	}
	withBackend := create(uuid.NewString())
	withBackend["backend"] = "../../etc"
	bad("backend with a path", events.VolumeRequested, withBackend["volume_id"].(string), withBackend)
	bad("migrate to a shell string", events.VolumeMigrateRequested, vol, map[string]any{"volume_id": vol, "project_id": projA, "dest_backend": "lvm; reboot"})
	bad("upload format", events.VolumeUploadRequested, vol, map[string]any{"volume_id": vol, "project_id": projA, "image_id": uuid.NewString(), "disk_format": "raw -o /etc/shadow"})
	bad("project with a path", events.VolumeDeleted, vol, map[string]any{"volume_id": vol, "project_id": "../" + projA})
	bad("subject does not match", events.VolumeDeleted, "../"+vol, map[string]any{"volume_id": vol, "project_id": projA})
	add("partition key does not match", events.VolumeDeleted, hostileRecord(events.VolumeDeleted, vol, mustJSON(deleteData(vol, projA)),
		map[string]string{"ce_partitionkey": uuid.NewString()}), false, "invalid")
	// Another project's ids: refused, never acted on.
	other := func(name, typ, subject string, data any) {
		add(name, typ, hostileRecord(typ, subject, mustJSON(data), nil), false, functions.CodeForbidden)
	}
	other("delete another project's volume", events.VolumeDeleted, vol, deleteData(vol, projB))
	other("extend another project's volume", events.VolumeExtendRequested, vol, map[string]any{"volume_id": vol, "project_id": projB, "new_size_gb": 5})
	other("snapshot another project's volume", events.SnapshotRequested, snap, map[string]any{"snapshot_id": snap, "volume_id": vol, "project_id": projB})
	other("attach another project's volume", events.VolumeAttachRequested, vol, map[string]any{"volume_id": vol, "project_id": projB, "attachment_id": att, "connector": conn})
	// A create replayed (new id, old content) after its volume was deleted.
	replay := hostileRecord(events.VolumeRequested, gone, mustJSON(create(gone)), nil)
	add("create replayed after delete", events.VolumeRequested, replay, false, functions.CodeVolumeDeleted)

	for _, h := range corpus {
		h.rec.Headers["hostile_case"] = h.name
		p.publish(h.typ, h.rec, -1)
	}
	// Replays of finished requests, same (source, id): their stored results.
	var old []events.Record
	for _, o := range []struct{ typ, id string }{{events.VolumeRequested, volReq}, {events.VolumeDeleted, goneDel}} {
		data := create(vol)
		if o.typ == events.VolumeDeleted {
			data = deleteData(gone, projA)
		}
		r, err := events.NewInput(o.typ, "/test", o.id, mustJSON(data), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		p.publish(o.typ, r, -1)
		old = append(old, r)
	}

	deadline := time.Now().Add(90 * time.Second)
	pending := map[string]bool{}
	for _, h := range corpus {
		pending[h.name] = true
	}
	for len(pending) > 0 && time.Now().Before(deadline) {
		for _, h := range corpus {
			if !pending[h.name] {
				continue
			}
			if h.dlq {
				for _, d := range results.Of(h.typ+".dlq", "") {
					if d.Headers["hostile_case"] == h.name {
						if d.Headers[HeaderDLQReason] == "" {
							t.Errorf("%s: dead letter without a reason", h.name)
						}
						delete(pending, h.name)
					}
				}
				continue
			}
			errType := events.ResultType(h.typ, events.PhaseError)
			if rs := results.Of(errType, h.rec.ID); len(rs) > 0 {
				e := rs[0].Data.Error
				if e == nil || e.Code != h.code {
					t.Errorf("%s: %s error %+v, want code %s", h.name, errType, e, h.code)
				}
				delete(pending, h.name)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(pending) > 0 {
		var names []string
		for n := range pending {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Fatalf("no .error and no dead letter within 90s for: %s", strings.Join(names, " | "))
	}
	t.Logf("corpus answered after %s", time.Since(began).Round(time.Millisecond))
	// The replays re-publish the stored results.
	for i, want := range []string{"volume.create.end", "volume.delete.end"} {
		deadline := time.Now().Add(30 * time.Second)
		for len(results.Of(want, old[i].ID)) < 2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		rs := results.Of(want, old[i].ID)
		if len(rs) != 2 || testenv.DistinctIDs(rs) != 1 || string(rs[0].Value) != string(rs[1].Value) {
			t.Errorf("replay of %s: %d results with %d ids, want the stored one again", want, len(rs), testenv.DistinctIDs(rs))
		}
	}
	t.Logf("replays answered after %s", time.Since(began).Round(time.Millisecond))
	// Nothing ran. Invalid input does not even start; a refused one may
	// (the project and tombstone checks read the registry under the lock).
	for _, h := range corpus {
		if h.rec.ID == "" || h.code != "invalid" {
			continue
		}
		for _, rt := range events.ResultTypes(h.typ) {
			if strings.HasSuffix(rt, "."+events.PhaseStart) && len(results.Of(rt, h.rec.ID)) > 0 {
				t.Errorf("%s: a hostile request started", h.name)
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	if calls := rec.reset(); len(calls) != 0 {
		t.Fatalf("hostile events reached the driver: %v", calls)
	}
	if after := listDir(t, p.dir); after != filesBefore {
		t.Fatalf("backend files changed: before %s, after %s", filesBefore, after)
	}
	t.Logf("%d hostile events and %d replays answered; 0 driver calls", len(corpus), len(old))
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}
