package nfs

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
	"github.com/ember-storage/ember/drivers/remotefs"
)

func findVolumes(dir, names string) exectest.Step {
	return exectest.Step{Args: []string{"find", "-H", dir, "-ignore_readdir_race", "-mindepth", "1", "-maxdepth", "1",
		"-type", "f", "-name", "volume-*", "-printf", `%f\0`}, Stdout: names}
}

// ListVolumes mounts each share as any operation does, then lists its
// volume files: volume-<id> exactly, names NUL-terminated. Overlays,
// .info, temporary and foreign files are not volumes; a file name with a
// newline cannot pass for another volume.
func TestListVolumes(t *testing.T) {
	const share2 = "nfs2.example.com:/srv/cinder"
	const vid2 = "7d1f3e2a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
	const sid = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
	const vid3 = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
	mp2 := remotefs.MountPoint(base, share2)
	v, v2 := "volume-"+vid, "volume-"+vid2
	steps := script(mountedJSON)
	steps = append(steps, findVolumes(mp, strings.Join([]string{v + "." + sid, v, v + ".info", v + ".tmp-create",
		"volume-" + strings.ToUpper(vid), "notes.txt", "volume-" + vid3 + "\nvolume-" + vid3}, "\x00")+"\x00"))
	steps = append(steps, script(`
# the second share is not mounted yet
$ findmnt -J -o SOURCE,FSTYPE,TARGET --mountpoint `+mp2+`
? 1
$ mkdir -p -- `+mp2+`
$ mount -t nfs -o vers=4.1,proto=tcp `+share2+` `+mp2+`
`)...)
	steps = append(steps, findVolumes(mp2, v2+"\x00"+v2+".info\x00"))
	// A stale handle on the next listing fails it: a partial list would
	// report every volume of the share missing.
	steps = append(steps, script(mountedJSON)...)
	stale := findVolumes(mp, "")
	stale.ExitCode, stale.Stderr = 1, "find: '"+mp+"': Stale file handle\n"
	steps = append(steps, stale)

	d, err := drivers.Open(drivers.Backend{Name: "nfs-1", Driver: "nfs", Options: map[string]any{
		"shares": []string{share, share2}, "mount_point_base": base, "mount_options": "vers=4.1,proto=tcp",
	}}, exectest.New(t, steps...))
	if err != nil {
		t.Fatal(err)
	}
	l, ok := d.(drivers.Lister)
	if !ok {
		t.Fatal("the nfs driver is not a drivers.Lister")
	}
	ids, err := l.ListVolumes(context.Background())
	if err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{vid, vid2}) {
		t.Fatalf("list: %q %v, want [%s %s]", ids, err, vid, vid2)
	}
	if _, err := l.ListVolumes(context.Background()); !drivers.IsKind(err, drivers.KindUnavailable) {
		t.Fatalf("stale handle: want unavailable, got %v", err)
	}
}
