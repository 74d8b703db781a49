package lvm

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// The real tests run against a volume group on a loop device, made by the
// project's deploy/testenv/lvm.sh (activation off: these machines have no
// device-mapper, so metadata operations are real and data paths are not).
// If the VG cannot be made the whole package fails; only -short skips it.

const realVGName = "cinder-volumes"

var realVGDir string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := upRealVG()
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: lvm tests need a real volume group (deploy/testenv/lvm.sh up): %v\n", err)
			return 1
		}
		realVGDir = dir
		defer downRealVG(dir)
		return m.Run()
	}())
}

func script(name string) string {
	p, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "testenv", name))
	return p
}

func upRealVG() (string, error) {
	if _, err := exec.LookPath("lvcreate"); err != nil {
		// lvm2 is missing: install the test packages once.
		if out, err := exec.Command("bash", script("install.sh")).CombinedOutput(); err != nil {
			return "", fmt.Errorf("install.sh: %v: %s", err, out)
		}
	}
	dir, err := os.MkdirTemp("", "ember-lvm-")
	if err != nil {
		return "", err
	}
	dir = filepath.Join(dir, "vg") // lvm.sh down removes it whole
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", script("lvm.sh"), "up", dir, realVGName, "4G").CombinedOutput()
	if err != nil {
		downRealVG(dir)
		return "", fmt.Errorf("%v: %s", err, out)
	}
	// The local executor passes the environment through to lvm.
	os.Setenv("LVM_SYSTEM_DIR", filepath.Join(dir, "etc"))
	os.Setenv("LVM_SUPPRESS_FD_WARNINGS", "1")
	return dir, nil
}

func downRealVG(dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "bash", script("lvm.sh"), "down", dir, realVGName).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "lvm.sh down %s: %v: %s\n", dir, err, out)
	}
	os.Remove(filepath.Dir(dir))
}

// realDriver is an lvm driver on the real VG. volume_clear is none because
// no LV has a device node here to zero (clearing is transcript-tested).
func realDriver(t *testing.T) *Driver {
	t.Helper()
	return realDriverOn(t, drivers.LocalExecutor{DefaultTimeout: 30 * time.Second})
}

// realDriverOn is realDriver with its commands run through ex.
func realDriverOn(t *testing.T, ex drivers.Executor) *Driver {
	t.Helper()
	if testing.Short() {
		t.Skip("real LVM volume group: not in -short")
	}
	d, err := New(drivers.Backend{Name: "lvm-1", Driver: "lvm", Options: map[string]any{"volume_clear": "none"}}, ex)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // leave the VG empty for the next test
		for _, name := range realLVs(t) {
			exec.Command("lvremove", "-f", realVGName+"/"+name).Run()
		}
	})
	return d
}

// realLVs asks LVM itself, not the driver, what LVs exist.
func realLVs(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("lvs", "--noheadings", "-o", "lv_name", realVGName).Output()
	if err != nil {
		t.Fatalf("lvs: %v", err)
	}
	return strings.Fields(string(out))
}

func realLVSize(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", realVGName+"/"+name).Output()
	if err != nil {
		t.Fatalf("lvs %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

func TestRealCreateExtendDelete(t *testing.T) {
	d := realDriver(t)
	ctx := context.Background()
	v := drivers.Volume{ID: vid, SizeGB: 1}
	for i := 0; i < 2; i++ { // the second create is a redelivery
		mu, err := d.CreateVolume(ctx, v)
		if err != nil {
			t.Fatalf("create #%d: %v", i+1, err)
		}
		if mu.ProviderLocation != realVGName {
			t.Fatalf("provider location %q", mu.ProviderLocation)
		}
	}
	if got := realLVs(t); len(got) != 1 || got[0] != "volume-"+vid {
		t.Fatalf("after two creates LVM has %v, want exactly volume-%s", got, vid)
	}
	if got := realLVSize(t, "volume-"+vid); got != "1073741824" {
		t.Fatalf("size %s", got)
	}
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 2}); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("create with another size: want conflict, got %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := d.ExtendVolume(ctx, v, 2); err != nil {
			t.Fatalf("extend #%d: %v", i+1, err)
		}
	}
	if got := realLVSize(t, "volume-"+vid); got != "2147483648" {
		t.Fatalf("size after extend %s", got)
	}
	if err := d.ExtendVolume(ctx, v, 1); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("shrink: want conflict, got %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := d.DeleteVolume(ctx, v); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
	if got := realLVs(t); len(got) != 0 {
		t.Fatalf("after delete LVM still has %v", got)
	}
	if err := d.ExtendVolume(ctx, v, 3); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("extend of a deleted volume: want not_found, got %v", err)
	}
}

func TestRealNoCapacityLeavesNothing(t *testing.T) {
	d := realDriver(t)
	ctx := context.Background()
	_, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 5}) // the VG holds 4 GiB
	if !drivers.IsKind(err, drivers.KindNoCapacity) {
		t.Fatalf("want no_capacity, got %v", err)
	}
	if !strings.Contains(err.Error(), "lvcreate volume-"+vid+" on cinder-volumes") {
		t.Fatalf("error does not say what and where: %v", err)
	}
	if got := realLVs(t); len(got) != 0 {
		t.Fatalf("a refused create left %v behind", got)
	}
	// LVM's own refusal (past the driver's pre-check) classifies the same.
	err = d.vg.create(ctx, "volume-"+vid, 5, 0)
	if !drivers.IsKind(err, drivers.KindNoCapacity) {
		t.Fatalf("lvcreate's insufficient free space: want no_capacity, got %v", err)
	}
	want := `lvcreate volume-` + vid + ` on cinder-volumes: exit 5: Volume group "cinder-volumes" has insufficient free space`
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error reads\n  %v\nwant prefix\n  %s", err, want)
	}
	if ce, ok := drivers.AsCommandError(err); !ok || ce.ExitCode != 5 || ce.Args[0] != "lvcreate" {
		t.Fatalf("the command error is not kept: %#v", ce)
	}
	if got := realLVs(t); len(got) != 0 {
		t.Fatalf("a refused lvcreate left %v behind", got)
	}
}

func TestRealStatsMatchVGS(t *testing.T) {
	d := realDriver(t)
	ctx := context.Background()
	for _, id := range []string{vid, vid2} {
		if _, err := d.CreateVolume(ctx, drivers.Volume{ID: id, SizeGB: 1}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := d.GetVolumeStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("vgs", "--reportformat", "json", "--units", "g", "--nosuffix", "-o", "vg_size,vg_free", realVGName).Output()
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Report []struct {
			VG []struct {
				Size, Free float64 `json:",string"`
			} `json:"vg"`
		} `json:"report"`
	}
	raw := strings.NewReplacer(`"vg_size"`, `"Size"`, `"vg_free"`, `"Free"`).Replace(string(out))
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	vg := r.Report[0].VG[0]
	host, _ := os.Hostname()
	if st.TotalCapacityGB != vg.Size || st.FreeCapacityGB != vg.Free || st.TotalVolumes != 2 ||
		st.ProvisionedCapacityGB != round2(vg.Size-vg.Free) || st.ProvisionedCapacityGB < 2 ||
		st.LocationInfo != "LVMVolumeDriver:"+host+":cinder-volumes:default:0" ||
		!st.ThickProvisioningSupport || st.ThinProvisioningSupport || st.MaxOverSubscriptionRatio != 20 {
		t.Fatalf("stats %+v\nvgs says %+v", st, vg)
	}
}

func TestRealRename(t *testing.T) {
	d := realDriver(t)
	ctx := context.Background()
	a, b := "volume-"+vid, "volume-"+vid2
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.vg.rename(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	if got := realLVs(t); len(got) != 1 || got[0] != b {
		t.Fatalf("after rename LVM has %v, want exactly %s", got, b)
	}
	if got := realLVSize(t, b); got != "1073741824" {
		t.Fatalf("renamed LV is %s bytes", got)
	}
	// A re-run finds the old name gone: not_found, and nothing changes.
	if err := d.vg.rename(ctx, a, b); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("rename of a missing LV: want not_found, got %v", err)
	}
	// Onto a name that is taken: a conflict, both LVs stay as they were.
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 2}); err != nil {
		t.Fatal(err)
	}
	err := d.vg.rename(ctx, a, b)
	if !drivers.IsKind(err, drivers.KindConflict) || !strings.Contains(err.Error(), "lvrename "+a+" to "+b+" on cinder-volumes: exit 5") {
		t.Fatalf("rename onto an existing LV: want a conflict naming the command, got %v", err)
	}
	if realLVSize(t, a) != "2147483648" || realLVSize(t, b) != "1073741824" {
		t.Fatalf("a refused rename changed the LVs: %v", realLVs(t))
	}
}

// stdoutByCommand keeps what each lvcreate, lvextend, lvchange, lvrename
// and lvremove printed on stdout.
type stdoutByCommand struct {
	ex  drivers.Executor
	mu  sync.Mutex
	out map[string][]string // program → stdout of each successful run
}

func (s *stdoutByCommand) Run(ctx context.Context, c drivers.Command) (drivers.Output, error) {
	out, err := s.ex.Run(ctx, c)
	if err == nil {
		s.mu.Lock()
		s.out[c.Args[0]] = append(s.out[c.Args[0]], string(out.Stdout))
		s.mu.Unlock()
	}
	return out, err
}

// The success lines the transcripts print (saysCreated, saysResized, …)
// are lvm2's own: the same commands on the loop-device VG print them.
func TestRealOutputMatchesTranscripts(t *testing.T) {
	rec := &stdoutByCommand{ex: drivers.LocalExecutor{DefaultTimeout: 30 * time.Second}, out: map[string][]string{}}
	d := realDriverOn(t, rec)
	ctx := context.Background()
	a, b := "volume-"+vid, "volume-"+vid2
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.ExtendVolume(ctx, drivers.Volume{ID: vid, SizeGB: 1}, 2); err != nil {
		t.Fatal(err)
	}
	if err := d.vg.create(ctx, b, 1, 0, copyPendingTag); err != nil {
		t.Fatal(err)
	}
	if err := d.vg.deleteTag(ctx, b, copyPendingTag); err != nil {
		t.Fatal(err)
	}
	if err := d.vg.remove(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := d.vg.rename(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"lvcreate": {saysCreated(a), saysCreated(b)},
		"lvextend": {saysResized(realVGName, a, 1, 2)},
		"lvchange": {saysChanged(realVGName, b)},
		"lvremove": {saysRemoved(b)},
		"lvrename": {saysRenamed(realVGName, a, b)},
	}
	for prog, w := range want {
		if got := rec.out[prog]; fmt.Sprintf("%q", got) != fmt.Sprintf("%q", w) {
			t.Errorf("%s printed %q, the transcripts say %q", prog, got, w)
		}
	}
}
