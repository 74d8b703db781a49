package glusterfs

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs"
	"github.com/ember-storage/ember/drivers/remotefs/chaintest"
	"github.com/ember-storage/ember/internal/testenv"
)

// env is the real GlusterFS volume that TestMain starts with
// deploy/testenv/glusterfs.sh: glusterd, volume gv0, FUSE-mounted.
var env struct {
	dir   string // the script's work dir; the driver's mounts go under it too
	share string
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // the real-GlusterFS tests skip themselves
	}
	script, err := filepath.Abs("../../deploy/testenv/glusterfs.sh")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "ember-glusterfs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env.dir = filepath.Join(dir, "gluster")
	// glusterd is one per host: wait for any other test package using it.
	unlock, err := testenv.Exclusive("glusterfs", 10*time.Minute)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	out, err := exec.Command(script, "up", env.dir).CombinedOutput()
	code := 1
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start GlusterFS (%s up %s): %v\n%s\nlogs: %s/log\n"+
			"(packages: deploy/testenv/install.sh; run with -short to skip the real-GlusterFS tests)\n",
			script, env.dir, err, out, env.dir)
	} else {
		lines := strings.Fields(string(out))
		env.share = lines[len(lines)-1]
		code = m.Run()
	}
	if out, err := exec.Command(script, "down", env.dir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "glusterfs.sh down: %v\n%s", err, out)
		code = 1
	}
	unlock()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func open(t *testing.T, format string) (drivers.Driver, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("real GlusterFS: not in -short")
	}
	base := filepath.Join(env.dir, "mnts")
	d, err := drivers.Open(drivers.Backend{Name: "gluster-1", Driver: "glusterfs", Options: map[string]any{
		"shares": []string{env.share}, "mount_point_base": base, "volume_format": format,
	}}, drivers.LocalExecutor{})
	if err != nil {
		t.Fatal(err)
	}
	return d, remotefs.MountPoint(base, env.share)
}

// The driver mounts its share at <base>/<md5(share)> on first use, and
// finds it mounted afterwards.
func TestMountsShare(t *testing.T) {
	d, mp := open(t, "raw")
	for i := 0; i < 2; i++ {
		s, err := d.GetVolumeStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.TotalCapacityGB <= 0 || s.LocationInfo != "glusterfs:"+env.share {
			t.Fatalf("stats: %+v", s)
		}
	}
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE,FSTYPE", "--mountpoint", mp).Output()
	if err != nil {
		t.Fatalf("findmnt %s: %v", mp, err)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != env.share || got[1] != "fuse.glusterfs" {
		t.Fatalf("mounted on %s: %q (one mount of %s wanted)", mp, out, env.share)
	}
}

// The chain scenario on the FUSE mount: commit -d, rebase, convert and
// resize against GlusterFS.
func TestSnapshotChain(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			d, dir := open(t, format)
			chaintest.Scenario(t, d, dir, env.share, format)
		})
	}
}

func TestReadWriteRoundTrip(t *testing.T) {
	d, _ := open(t, "raw")
	v := drivers.Volume{ID: "77777777-7777-4777-8777-777777777777", SizeGB: 1}
	if _, err := d.CreateVolume(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.DeleteVolume(context.Background(), v) })
	chaintest.RoundTrip(t, d, v)
}
