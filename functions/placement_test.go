package functions_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/file"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/functions/scheduler"
	"github.com/ember-storage/ember/internal/testenv"
)

// TestCreatePlacementCandidates checks which backends a create that names
// no source volume may go to (volume_types, default_backend, an explicit
// backend), with the real scheduler on the real Redis deciding among them
// and real file backends making the volumes. "big" has 100 GB free and
// "small" 10 GB, so the weigher alone always prefers big: a volume that
// lands on small got there because its candidates said so.
func TestCreatePlacementCandidates(t *testing.T) {
	rdb := testenv.Redis(t)
	sched := scheduler.New(rdb, scheduler.Config{Prefix: "p" + testenv.Unique(), StaleAfter: time.Hour})
	ctx := context.Background()
	dirs := map[string]string{}
	backends := map[string]drivers.Driver{}
	for name, freeGB := range map[string]float64{"big": 100, "small": 10} {
		dirs[name] = t.TempDir()
		d, err := file.Open(drivers.Backend{Name: name, Driver: "file", Options: map[string]any{"dir": dirs[name], "target_helper": "none"}},
			drivers.LocalExecutor{DefaultTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		backends[name] = d
		// Thick figures, so that free space alone decides (no over-subscription).
		st := drivers.Stats{TotalCapacityGB: freeGB, FreeCapacityGB: freeGB, ThickProvisioningSupport: true, MaxOverSubscriptionRatio: 1}
		at, err := sched.Clock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := sched.StoreStats(ctx, name, st, at); err != nil || !ok {
			t.Fatalf("store stats %s: %v %v", name, ok, err)
		}
	}
	types := map[string]string{"gold": "small", "silver": "big"}

	for _, c := range []struct {
		name     string
		types    map[string]string
		fallback string // default_backend
		req      map[string]any
		want     string // backend; "" = refused
		code     string // of the refusal
		says     string // in the refusal's message
		never    string // not in the refusal's message
	}{
		{name: "type maps to its backend", types: types, req: map[string]any{"volume_type": "gold"}, want: "small"},
		{name: "type's backend full", types: types, req: map[string]any{"volume_type": "gold", "size_gb": 20},
			code: functions.CodeNoValidBackend, says: "small: free", never: "big"},
		{name: "untyped goes to the most free", types: types, want: "big"},
		{name: "untyped goes to default_backend", types: types, fallback: "small", want: "small"},
		{name: "default_backend full", types: types, fallback: "small", req: map[string]any{"size_gb": 20},
			code: functions.CodeNoValidBackend, says: "small: free", never: "big"},
		{name: "type wins over default_backend", types: types, fallback: "small", req: map[string]any{"volume_type": "silver"}, want: "big"},
		{name: "explicit backend wins over type", types: types, req: map[string]any{"volume_type": "gold", "backend": "big"}, want: "big"},
		{name: "explicit backend wins over default", types: types, fallback: "small", req: map[string]any{"backend": "big"}, want: "big"},
		{name: "unknown type", types: types, fallback: "small", req: map[string]any{"volume_type": "glod"},
			code: functions.CodeInvalid, says: `volume_type "glod" is not configured (volume_types: gold, silver)`},
		{name: "unknown type with a backend", types: types, req: map[string]any{"volume_type": "glod", "backend": "big"},
			code: functions.CodeInvalid, says: `volume_type "glod"`},
		{name: "type is a label without volume_types", req: map[string]any{"volume_type": "glod"}, want: "big"},
		{name: "unconfigured backend", types: types, req: map[string]any{"backend": "nowhere"},
			code: functions.CodeNoValidBackend, says: `backend "nowhere" is not configured`},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := &functions.Env{Instance: "ember-test", Backends: backends, VolumeTypes: c.types, DefaultBackend: c.fallback, Scheduler: sched}
			create := functions.All(env)[events.VolumeRequested]
			vol := uuid.NewString()
			data := map[string]any{"volume_id": vol, "project_id": projID, "user_id": userID, "size_gb": 1}
			for k, v := range c.req {
				data[k] = v
			}
			r := createRequest(t, data)
			out, err := create.Run(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			res := out.Results[0]
			for name, dir := range dirs {
				_, statErr := os.Stat(filepath.Join(dir, "volume-"+vol))
				if made := statErr == nil; made != (name == c.want) {
					t.Errorf("volume file on %s: %v, want it only on %q", name, made, c.want)
				}
			}
			if c.want != "" {
				if res.Type != "volume.create.end" || res.Data.Host != c.want || out.Volume == nil || out.Volume.Backend != c.want {
					t.Fatalf("got %s host %q %+v; want volume.create.end on %s", res.Type, res.Data.Host, res.Data.Error, c.want)
				}
				if vt, _ := c.req["volume_type"].(string); out.Volume.VolumeType != vt {
					t.Errorf("record volume_type %q, want %q", out.Volume.VolumeType, vt)
				}
				return
			}
			if res.Type != "volume.create.error" || res.Data.Error == nil || res.Data.Error.Code != c.code {
				t.Fatalf("got %s %+v; want volume.create.error %s", res.Type, res.Data.Error, c.code)
			}
			msg := res.Data.Error.Message
			if !strings.Contains(msg, c.says) || (c.never != "" && strings.Contains(msg, c.never)) {
				t.Errorf("message %q: want %q in it, and not %q", msg, c.says, c.never)
			}
			// A refusal: nothing made, the registry left as it was, and no
			// backend claimed for the volume in .start or .error.
			if out.Volume != nil {
				t.Errorf("refusal stored a record: %+v", out.Volume)
			}
			if start := create.Start(r); start.Source != "/ember/ember-test" || res.Source != "/ember/ember-test" {
				t.Errorf("sources: start %s, error %s; want /ember/ember-test", start.Source, res.Source)
			}
		})
	}
}

const (
	projID = "0c9d5c3f2b1a4e8d9f7a6b5c4d3e2f10"
	userID = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
)

func createRequest(t *testing.T, data map[string]any) *functions.Request {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := events.NewInput(events.VolumeRequested, "/t", uuid.NewString(), raw, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := events.Decode(rec.Headers, rec.Value, events.VolumeRequested)
	if err != nil {
		t.Fatal(err)
	}
	return &functions.Request{Input: in}
}
