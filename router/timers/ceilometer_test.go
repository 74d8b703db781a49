package timers_test

import (
	"context"
	"encoding/json"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gopkg.in/yaml.v3"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/file"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/internal/pipetest"
	"github.com/ember-storage/ember/internal/testenv"
)

// ceilometerMeters are the volume.size and snapshot.size definitions of
// Ceilometer's data/meters.d/meters.yaml, unchanged but for `$.payload`,
// which reads the CloudEvents `data` member as `$.data`.
const ceilometerMeters = `
metric:
  - name: 'volume.size'
    event_type:
      - 'volume.exists'
      - 'volume.retype'
      - 'volume.create.*'
      - 'volume.delete.*'
      - 'volume.resize.*'
      - 'volume.attach.*'
      - 'volume.detach.*'
      - 'volume.update.*'
      - 'volume.manage.*'
    type: 'gauge'
    unit: 'GB'
    volume: $.payload.size
    user_id: $.payload.user_id
    project_id: $.payload.tenant_id
    resource_id: $.payload.volume_id
    metadata:
      display_name: $.payload.display_name
      volume_type: $.payload.volume_type

  - name: 'snapshot.size'
    event_type:
      - 'snapshot.exists'
      - 'snapshot.create.*'
      - 'snapshot.delete.*'
      - 'snapshot.manage.*'
    type: 'gauge'
    unit: 'GB'
    volume: $.payload.volume_size
    user_id: $.payload.user_id
    project_id: $.payload.tenant_id
    resource_id: $.payload.snapshot_id
    metadata:
      display_name: $.payload.display_name
`

type meterDef struct {
	Name       string            `yaml:"name"`
	EventType  []string          `yaml:"event_type"`
	Type       string            `yaml:"type"`
	Unit       string            `yaml:"unit"`
	Volume     string            `yaml:"volume"`
	UserID     string            `yaml:"user_id"`
	ProjectID  string            `yaml:"project_id"`
	ResourceID string            `yaml:"resource_id"`
	Metadata   map[string]string `yaml:"metadata"`
}

type sample struct {
	Meter, EventType                     string
	Volume                               float64
	UserID, ProjectID, ResourceID, Event string
}

// jsonPath evaluates the dotted JSONPath expressions the meters use
// ($.a.b.c) on a decoded JSON document; ok is false if a step is missing.
func jsonPath(doc any, expr string) (any, bool) {
	if !strings.HasPrefix(expr, "$.") {
		return nil, false
	}
	cur := doc
	for _, step := range strings.Split(expr[2:], ".") {
		m, isMap := cur.(map[string]any)
		if !isMap {
			return nil, false
		}
		if cur, isMap = m[step]; !isMap {
			return nil, false
		}
	}
	return cur, true
}

// evaluate turns one CloudEvent (structured JSON) into meter samples, as
// Ceilometer's notification agent does with a notification: the event type
// matches a definition by shell pattern, and volume, resource_id and
// project_id must resolve (a sample without them is an error here).
func evaluate(t *testing.T, defs []meterDef, ev []byte) []sample {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(ev, &doc); err != nil {
		t.Fatal(err)
	}
	typ, _ := doc["type"].(string)
	var out []sample
	for _, d := range defs {
		matched := false
		for _, pat := range d.EventType {
			if ok, _ := path.Match(pat, typ); ok {
				matched = true
			}
		}
		if !matched {
			continue
		}
		s := sample{Meter: d.Name, EventType: typ, Event: string(ev)}
		vol, ok := jsonPath(doc, d.Volume)
		f, isNum := vol.(float64)
		if !ok || !isNum {
			t.Errorf("%s on %s: volume %s = %v: %s", d.Name, typ, d.Volume, vol, ev)
			continue
		}
		s.Volume = f
		for expr, dst := range map[string]*string{d.UserID: &s.UserID, d.ProjectID: &s.ProjectID, d.ResourceID: &s.ResourceID} {
			v, ok := jsonPath(doc, expr)
			str, isStr := v.(string)
			if !ok || !isStr || str == "" {
				t.Errorf("%s on %s: %s does not resolve: %s", d.Name, typ, expr, ev)
			}
			*dst = str
		}
		// Metadata is optional in Ceilometer (a missing path is None).
		out = append(out, s)
	}
	return out
}

func loadMeters(t *testing.T) []meterDef {
	t.Helper()
	var defs struct {
		Metric []meterDef `yaml:"metric"`
	}
	adapted := strings.ReplaceAll(ceilometerMeters, "$.payload.", "$.data.")
	if err := yaml.Unmarshal([]byte(adapted), &defs); err != nil {
		t.Fatal(err)
	}
	return defs.Metric
}

// structured reads a record as a consumer would and writes it in the
// CloudEvents JSON format, where the payload is the `data` member.
func structured(t *testing.T, r testenv.Result) []byte {
	t.Helper()
	e, err := events.ReadRecord(r.Headers, r.Value)
	if err != nil {
		t.Fatalf("%s: %v", r.Type, err)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestCeilometerMetersReadEmberEvents runs a volume's life through the
// real pipeline (create, snapshot, extend, audit, snapshot delete, delete,
// audit) and evaluates Ceilometer's volume.size and snapshot.size meters
// over every event it emitted.
func TestCeilometerMetersReadEmberEvents(t *testing.T) {
	dir := t.TempDir()
	d, err := file.Open(drivers.Backend{Name: "local", Driver: "file", Options: map[string]any{"dir": dir}},
		drivers.LocalExecutor{DefaultTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := pipetest.New(t, map[string]drivers.Driver{"local": d}, events.VolumeRequested, events.VolumeDeleted,
		events.VolumeExtendRequested, events.SnapshotRequested, events.SnapshotDeleted)
	ctx := context.Background()
	if err := p.Stats(time.Hour).Once(ctx); err != nil {
		t.Fatal(err)
	}
	p.Start()
	audit := p.Audit(time.Hour)
	vol, other, gone, snap := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	p.Do(events.VolumeRequested, map[string]any{"volume_id": vol, "project_id": projA, "user_id": userA, "size_gb": 10, "name": "db"})
	p.Do(events.VolumeRequested, map[string]any{"volume_id": other, "project_id": projB, "user_id": userA, "size_gb": 3})
	p.Do(events.VolumeRequested, map[string]any{"volume_id": gone, "project_id": projB, "user_id": userA, "size_gb": 1})
	p.Do(events.VolumeDeleted, map[string]any{"volume_id": gone, "project_id": projB})
	p.Do(events.SnapshotRequested, map[string]any{"snapshot_id": snap, "volume_id": vol, "project_id": projA, "name": "nightly"})
	p.Do(events.VolumeExtendRequested, map[string]any{"volume_id": vol, "project_id": projA, "new_size_gb": 20})
	// The period that ends now: the volumes and the snapshot exist.
	begin, end := audit.LastPeriod(time.Now().Add(time.Hour))
	if n, err := audit.Publish(ctx, begin, end); err != nil || n != 3 {
		t.Fatalf("audit published %d events (%v), want volume.exists ×2 and snapshot.exists ×1", n, err)
	}
	p.Do(events.SnapshotDeleted, map[string]any{"snapshot_id": snap, "volume_id": vol, "project_id": projA})
	p.Do(events.VolumeDeleted, map[string]any{"volume_id": vol, "project_id": projA})
	if n, err := audit.Publish(ctx, end, end.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("second audit published %d events (%v), want only the other volume's volume.exists", n, err)
	}
	p.Results.Wait(t, events.VolumeExists, "", 3)
	p.Results.Wait(t, events.SnapshotExists, "", 1)
	p.Results.Wait(t, events.BackendStats, "", 1)

	defs := loadMeters(t)
	var samples []sample
	seen := map[string]bool{}
	for _, typ := range []string{"volume.create.start", "volume.create.end", "volume.delete.start", "volume.delete.end",
		"volume.resize.start", "volume.resize.end", "volume.exists", "snapshot.create.start", "snapshot.create.end",
		"snapshot.delete.start", "snapshot.delete.end", "snapshot.exists", "backend.stats"} {
		for _, r := range p.Results.Of(typ, "") {
			seen[typ] = true
			samples = append(samples, evaluate(t, defs, structured(t, r))...)
		}
	}
	if len(seen) != 13 {
		t.Fatalf("event types seen: %v", seen)
	}
	// What a billing pipeline would read, per resource and event type.
	got := map[string][]string{}
	for _, s := range samples {
		key := s.Meter + " " + s.ResourceID
		got[key] = append(got[key], s.EventType+"="+strings.TrimSuffix(strings.TrimSuffix(jsonNum(s.Volume), ".0"), ".00"))
		wantProject := map[string]string{vol: projA, snap: projA, other: projB, gone: projB}[s.ResourceID]
		if s.ProjectID != wantProject || s.UserID != userA {
			t.Errorf("%s: project %s user %s", key, s.ProjectID, s.UserID)
		}
	}
	for k := range got {
		sort.Strings(got[k])
	}
	want := map[string][]string{
		"volume.size " + vol: {"volume.create.end=10", "volume.create.start=10", "volume.delete.end=20", "volume.delete.start=20",
			"volume.exists=20", "volume.resize.end=20", "volume.resize.start=10"},
		"volume.size " + other: {"volume.create.end=3", "volume.create.start=3", "volume.exists=3", "volume.exists=3"},
		"volume.size " + gone:  {"volume.create.end=1", "volume.create.start=1", "volume.delete.end=1", "volume.delete.start=1"},
		"snapshot.size " + snap: {"snapshot.create.end=10", "snapshot.create.start=10", "snapshot.delete.end=10",
			"snapshot.delete.start=10", "snapshot.exists=10"},
	}
	for k, w := range want {
		if strings.Join(got[k], " ") != strings.Join(w, " ") {
			t.Errorf("%s:\n got %v\nwant %v", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("samples for %d resources, want %d: %v", len(got), len(want), got)
	}
	t.Logf("%d samples from %d event types", len(samples), len(seen))
}

func jsonNum(f float64) string { b, _ := json.Marshal(f); return string(b) }
