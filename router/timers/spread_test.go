package timers_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/file"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/pipetest"
)

const (
	projA = "0c9d5c3f2b1a4e8d9f7a6b5c4d3e2f10"
	projB = "1d9d5c3f2b1a4e8d9f7a6b5c4d3e2f11"
	userA = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
)

// tmpfsBackend mounts a tmpfs of size under a temporary directory (root
// only) and opens a file backend on it.
func tmpfsBackend(t *testing.T, name, size string) (drivers.Driver, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: mounts tmpfs")
	}
	dir := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "ember-"+name, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs %s (this test needs root): %v %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	d, err := file.Open(drivers.Backend{Name: name, Driver: "file", Options: map[string]any{"dir": dir}},
		drivers.LocalExecutor{DefaultTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return d, dir
}

// TestTwentyCreatesSpreadAsTheWeigherSays is the "must show": two
// file backends of different free space (tmpfs of 2 GiB and 4 GiB; the file
// driver is thin with Cinder's max_over_subscription_ratio 20, so they hold
// 40 and 80 GB of volumes), 20 creates of 7 GB sent at once through the
// real pipeline, with one stats round before them and none during.
//
// By hand, CapacityWeigher (virtual free = total × 20 − provisioned) sends
// each create to the most free: big 80→73→…→45→38 (6 creates), then
// small 40→33 and big 38→31 alternate: small 33→26→19→12→5 (5 in all),
// big 31→24→17→10→3 (11 in all). 16 fit; the last 4 find neither backend
// able to hold 7 GB and get no_valid_backend.
func TestTwentyCreatesSpreadAsTheWeigherSays(t *testing.T) {
	small, smallDir := tmpfsBackend(t, "small", "2g")
	big, bigDir := tmpfsBackend(t, "big", "4g")
	t0 := time.Now()
	p := pipetest.New(t, map[string]drivers.Driver{"small": small, "big": big}, events.VolumeRequested)
	t.Logf("topics ready in %s", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() { t.Logf("cleanup at %s", time.Since(t0).Round(time.Millisecond)) })
	if err := p.Stats(time.Hour).Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	p.Start()
	t.Logf("pipeline started in %s", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	ids := map[string]string{} // request id -> volume id
	for range 20 {
		vol := uuid.NewString()
		ids[p.Emit(events.VolumeRequested, map[string]any{"volume_id": vol, "project_id": projA, "user_id": userA, "size_gb": 7})] = vol
	}
	count := map[string]int{}
	for id, vol := range ids {
		r := p.Terminal(events.VolumeRequested, id)
		switch r.Type {
		case "volume.create.end":
			count[r.Data.Host]++
			dir := map[string]string{"small": smallDir, "big": bigDir}[r.Data.Host]
			if fi, err := os.Stat(filepath.Join(dir, "volume-"+vol)); err != nil || fi.Size() != 7*drivers.GiB {
				t.Errorf("volume %s on %s: %v", vol, r.Data.Host, err)
			}
		case "volume.create.error":
			if r.Data.Error == nil || r.Data.Error.Code != functions.CodeNoValidBackend {
				t.Fatalf("create error %s", r.Value)
			}
			count["none"]++
			if count["none"] == 1 {
				t.Logf("refusal: %s", r.Data.Error.Message)
			}
		}
	}
	t.Logf("20 creates answered in %s", time.Since(began).Round(time.Millisecond))
	want := map[string]int{"big": 11, "small": 5, "none": 4}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Fatalf("placements %v, want %v", count, want)
	}
	// Neither backend holds more than it can: fresh stats agree.
	for name, d := range map[string]drivers.Driver{"small": small, "big": big} {
		st, err := d.GetVolumeStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: total %.1f GB, provisioned %.1f GB in %d volumes (limit %.0f GB)", name, st.TotalCapacityGB,
			st.ProvisionedCapacityGB, st.TotalVolumes, st.TotalCapacityGB*st.MaxOverSubscriptionRatio)
		if st.ProvisionedCapacityGB > st.TotalCapacityGB*st.MaxOverSubscriptionRatio || st.TotalVolumes != want[name] {
			t.Errorf("%s over-filled: %+v", name, st)
		}
	}
}

// TestVolumeTypesAndDefaultBackendThroughThePipeline configures
// volume_types and default_backend on the real pipeline, over two tmpfs
// file backends where the weigher alone would always choose big (80 GB of
// virtual free space against small's 40), and checks where creates land.
func TestVolumeTypesAndDefaultBackendThroughThePipeline(t *testing.T) {
	small, smallDir := tmpfsBackend(t, "small", "2g")
	big, bigDir := tmpfsBackend(t, "big", "4g")
	p := pipetest.New(t, map[string]drivers.Driver{"small": small, "big": big}, events.VolumeRequested)
	p.Env.VolumeTypes = map[string]string{"gold": "small", "silver": "big"}
	p.Env.DefaultBackend = "small"
	if err := p.Stats(time.Hour).Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Start()
	for _, c := range []struct {
		name string
		req  map[string]any
		want string // backend, or the error code
	}{
		{"gold goes to small", map[string]any{"volume_type": "gold"}, "small"},
		{"silver goes to big", map[string]any{"volume_type": "silver"}, "big"},
		{"untyped goes to default_backend", map[string]any{}, "small"},
		{"explicit backend wins", map[string]any{"volume_type": "gold", "backend": "big"}, "big"},
		{"gold beyond small", map[string]any{"volume_type": "gold", "size_gb": 41}, functions.CodeNoValidBackend},
		{"unknown type", map[string]any{"volume_type": "glod"}, functions.CodeInvalid},
	} {
		vol := uuid.NewString()
		data := map[string]any{"volume_id": vol, "project_id": projA, "user_id": userA, "size_gb": 1}
		for k, v := range c.req {
			data[k] = v
		}
		r := p.Terminal(events.VolumeRequested, p.Emit(events.VolumeRequested, data))
		got := r.Data.Host
		if r.Data.Error != nil {
			got = r.Data.Error.Code
			t.Logf("%s: %s", c.name, r.Data.Error.Message)
			if c.want == functions.CodeNoValidBackend && (!strings.Contains(r.Data.Error.Message, "small:") || strings.Contains(r.Data.Error.Message, "big")) {
				t.Errorf("%s: the refusal should name small only: %s", c.name, r.Data.Error.Message)
			}
		}
		if got != c.want {
			t.Errorf("%s: %s on %q, want %q", c.name, r.Type, got, c.want)
		}
		for name, dir := range map[string]string{"small": smallDir, "big": bigDir} {
			if _, err := os.Stat(filepath.Join(dir, "volume-"+vol)); (err == nil) != (name == c.want) {
				t.Errorf("%s: volume file on %s: %v", c.name, name, err)
			}
		}
	}
}
