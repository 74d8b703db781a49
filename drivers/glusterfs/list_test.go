package glusterfs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// ListVolumes on the FUSE mount: the volume files, not the rest. Other
// tests of the package share the GlusterFS volume; only this one's names
// are checked.
func TestListVolumes(t *testing.T) {
	const vid = "6f0e1d2c-3b4a-4958-8776-a5b4c3d2e1f0" // no other test's id: they share the volume
	d, mp := open(t, "raw")
	ctx := context.Background()
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.DeleteVolume(ctx, drivers.Volume{ID: vid}) })
	stray := filepath.Join(mp, "volume-"+vid+".tmp-create")
	if err := os.WriteFile(stray, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ids, err := d.(drivers.Lister).ListVolumes(ctx)
	if err != nil || !slices.Contains(ids, vid) {
		t.Fatalf("list: %q %v, want %s in it", ids, err, vid)
	}
	for _, id := range ids {
		if drivers.CheckID(id) != nil {
			t.Errorf("listed %q", id)
		}
	}
}
