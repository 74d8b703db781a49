package timers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/internal/pipetest"
)

// TestStatsRoundPublishesCinderFigures takes one stats round over two file
// backends on tmpfs of known sizes and reads backend.stats back from Kafka,
// as a consumer would: one per backend, with Cinder's get_volume_stats
// names and the backend's real figures, and the same figures stored for the
// scheduler in Redis with the time they were taken.
func TestStatsRoundPublishesCinderFigures(t *testing.T) {
	one, oneDir := tmpfsBackend(t, "one", "1g")
	two, twoDir := tmpfsBackend(t, "two", "2g")
	ctx := context.Background()
	// one: two sparse volumes (1 + 3 GB provisioned, nothing allocated) and
	// 100 MiB of data that is not a volume (used, not provisioned).
	for _, size := range []int{1, 3} {
		if _, err := one.CreateVolume(ctx, drivers.Volume{ID: uuid.NewString(), SizeGB: size}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(oneDir, "not-a-volume"), bytes.Repeat([]byte{1}, 100<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	p := pipetest.New(t, map[string]drivers.Driver{"one": one, "two": two}, events.VolumeRequested)
	before, err := p.Sched.Clock(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stats(time.Hour).Once(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := p.Sched.Clock(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	got := p.Results.Wait(t, events.BackendStats, "", 2)
	if len(got) != 2 {
		t.Fatalf("%d backend.stats for one round of two backends", len(got))
	}

	// free_capacity_gb is what statfs says now (nothing wrote since).
	freeGB := func(dir string) float64 {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(dir, &fs); err != nil {
			t.Fatal(err)
		}
		return float64(fs.Bavail) * float64(fs.Bsize) / float64(drivers.GiB)
	}
	want := map[string]map[string]any{
		"one": {"total_capacity_gb": 1.0, "free_capacity_gb": freeGB(oneDir), "provisioned_capacity_gb": 4.0,
			"total_volumes": 2.0, "location_info": "file:" + oneDir},
		"two": {"total_capacity_gb": 2.0, "free_capacity_gb": freeGB(twoDir), "provisioned_capacity_gb": 0.0,
			"total_volumes": 0.0, "location_info": "file:" + twoDir},
	}
	if f := want["one"]["free_capacity_gb"].(float64); f > 1-100.0/1024 {
		t.Fatalf("statfs shows %v GB free on one: the 100 MiB written do not count", f)
	}
	seen := map[string]bool{}
	for _, r := range got {
		name := r.Headers["ce_subject"]
		w, ok := want[name]
		if !ok || seen[name] {
			t.Fatalf("backend.stats for %q (seen %v)", name, seen)
		}
		seen[name] = true
		if r.Headers["ce_source"] != "/ember/"+name || r.Key != name || r.Headers["ce_partitionkey"] != name {
			t.Errorf("%s: source %q, key %q, partitionkey %q; want /ember/%s and %s", name, r.Headers["ce_source"], r.Key,
				r.Headers["ce_partitionkey"], name, name)
		}
		// Field names as the consumer reads them, not through Ember's types.
		var data struct {
			Host, Backend string
			Stats         map[string]any
		}
		if err := json.Unmarshal(r.Value, &data); err != nil {
			t.Fatal(err)
		}
		if data.Host != name || data.Backend != name {
			t.Errorf("%s: host %q backend %q", name, data.Host, data.Backend)
		}
		for k, v := range map[string]any{"reserved_percentage": 0.0, "thin_provisioning_support": true,
			"thick_provisioning_support": false, "max_over_subscription_ratio": 20.0} {
			w[k] = v
		}
		for k, v := range w {
			if data.Stats[k] != v {
				t.Errorf("%s: %s = %v, want %v", name, k, data.Stats[k], v)
			}
		}

		// The same figures in Redis, stamped with the event's time, which is
		// the Redis clock when the round began.
		key := p.KeyPref + ":{backend:" + name + "}:stats"
		h, err := p.RDB.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var stored map[string]any
		if err := json.Unmarshal([]byte(h["stats"]), &stored); err != nil {
			t.Fatalf("%s: %v in %v", key, err, h)
		}
		for k, v := range data.Stats {
			if !jsonEqual(stored[k], v) {
				t.Errorf("%s: Redis has %s = %v, the event %v", name, k, stored[k], v)
			}
		}
		at, _ := strconv.ParseInt(h["at"], 10, 64)
		evTime, err := time.Parse(time.RFC3339Nano, r.Headers["ce_time"])
		if err != nil {
			t.Fatal(err)
		}
		if at != evTime.UnixMilli() || at < before.UnixMilli() || at > after.UnixMilli() {
			t.Errorf("%s: stored at %d, event time %s; want the same, within the round [%d, %d]", name, at,
				r.Headers["ce_time"], before.UnixMilli(), after.UnixMilli())
		}
		if v, err := p.Sched.Read(ctx, name, ""); err != nil || v.Stats == nil || !v.At.Equal(time.UnixMilli(at)) {
			t.Errorf("%s: the scheduler reads %+v (%v)", name, v, err)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
