package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// ListVolumes on a real directory: the volume files only, whatever else the
// directory holds (snapshot overlays, .info, temporary files, the targets
// subdirectory, a directory or symlink named like a volume, foreign files).
func TestListVolumes(t *testing.T) {
	const vid2 = "7d1f3e2a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
	const vid3 = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
	const sid = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
	d, dir := open(t, "qcow2")
	ctx := context.Background()
	if ids, err := d.ListVolumes(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("empty directory: %v %v", ids, err)
	}
	for _, id := range []string{vid2, vid} {
		if _, err := d.CreateVolume(ctx, drivers.Volume{ID: id, SizeGB: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: sid, VolumeID: vid, VolumeSizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"volume-" + vid2 + ".tmp-create", "volume-" + vid3 + ".info", "notes.txt",
		"volume-0B5CBF4E-8F0A-4C1E-9D5C-2F1A7A3C9E10", "volume-" + vid3 + "\nvolume-" + vid3} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "volume-"+vid3), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "volume-"+vid), filepath.Join(dir, "volume-"+sid)); err != nil {
		t.Fatal(err)
	}
	ids, err := d.ListVolumes(ctx)
	if err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{vid, vid2}) {
		t.Fatalf("list: %q %v, want [%s %s]", ids, err, vid, vid2)
	}
	if err := d.DeleteSnapshot(ctx, drivers.Snapshot{ID: sid, VolumeID: vid, VolumeSizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVolume(ctx, drivers.Volume{ID: vid}); err != nil {
		t.Fatal(err)
	}
	if ids, err = d.ListVolumes(ctx); err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{vid2}) {
		t.Fatalf("after a delete: %q %v", ids, err)
	}
}

// PurgeVolume (reconcile's removal of an orphan) takes the volume with its
// snapshot overlays and .info, where DeleteVolume refuses; it leaves other
// volumes alone, and gone is success.
func TestPurgeVolumeTakesItsSnapshots(t *testing.T) {
	const other = "7d1f3e2a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
	const sid = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
	d, dir := open(t, "qcow2")
	ctx := context.Background()
	for _, id := range []string{vid, other} {
		if _, err := d.CreateVolume(ctx, drivers.Volume{ID: id, SizeGB: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: sid, VolumeID: vid, VolumeSizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVolume(ctx, drivers.Volume{ID: vid}); !drivers.IsKind(err, drivers.KindBusy) {
		t.Fatalf("DeleteVolume with a snapshot: %v, want volume_busy", err)
	}
	p, ok := any(d).(drivers.Purger)
	if !ok {
		t.Fatal("the file driver is no drivers.Purger")
	}
	for i := 0; i < 2; i++ { // the second time it is gone: success
		if err := p.PurgeVolume(ctx, drivers.Volume{ID: vid}); err != nil {
			t.Fatalf("purge %d: %v", i+1, err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "volume-"+vid+"*"))
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "volume-"+other)); err != nil {
		t.Fatalf("another volume went too: %v", err)
	}
}
