package file

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs/chaintest"
)

// A clone and a volume from a snapshot report the progress real qemu-img
// prints: whole percents in 0..100, never going back, ending at 100.
func TestCopiesReportProgress(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			d, dir := open(t, format)
			ctx := context.Background()
			src := drivers.Volume{ID: vid, SizeGB: 1}
			if _, err := d.CreateVolume(ctx, src); err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(dir, "volume-"+vid)
			chaintest.QemuIO(t, base, "", "write -P 0x11 0 64k", "write -P 0x22 512M 64M")
			snap := drivers.Snapshot{ID: chaintest.Snap1, VolumeID: vid, VolumeSizeGB: 1}
			if _, err := d.CreateSnapshot(ctx, snap); err != nil {
				t.Fatal(err)
			}
			for _, cp := range []struct {
				name string
				id   string
				make func(ctx context.Context, v drivers.Volume) error
			}{
				{"clone", chaintest.Clone, func(ctx context.Context, v drivers.Volume) error {
					_, err := d.CreateClonedVolume(ctx, v, src)
					return err
				}},
				{"from snapshot", chaintest.FromS3, func(ctx context.Context, v drivers.Volume) error {
					_, err := d.CreateVolumeFromSnapshot(ctx, v, snap)
					return err
				}},
			} {
				var mu sync.Mutex
				var got []int
				pctx := drivers.WithProgress(ctx, func(pct int) {
					mu.Lock()
					defer mu.Unlock()
					got = append(got, pct)
				})
				if err := cp.make(pctx, drivers.Volume{ID: cp.id, SizeGB: 2}); err != nil {
					t.Fatalf("%s: %v", cp.name, err)
				}
				mu.Lock()
				if len(got) == 0 || got[len(got)-1] != 100 {
					t.Fatalf("%s: progress %v, want updates ending at 100", cp.name, got)
				}
				for i, pct := range got {
					if pct < 0 || pct > 100 || (i > 0 && pct < got[i-1]) {
						t.Fatalf("%s: progress %v goes back or out of 0..100", cp.name, got)
					}
				}
				mu.Unlock()
				t.Logf("%s: %d updates", cp.name, len(got))
				chaintest.QemuIO(t, filepath.Join(dir, "volume-"+cp.id), format, "read -P 0x11 0 64k", "read -P 0x22 512M 64M")
			}
		})
	}
}
