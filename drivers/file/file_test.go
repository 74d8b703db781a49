package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

const vid = "0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10"

func open(t *testing.T, format string) (*Driver, string) {
	t.Helper()
	return openWith(t, format, drivers.LocalExecutor{})
}

func openWith(t *testing.T, format string, ex drivers.Executor) (*Driver, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := Open(drivers.Backend{Name: "t", Driver: "file", Options: map[string]any{"dir": dir, "format": format}}, ex)
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Driver), dir
}

func TestCreateExtendDeleteIdempotent(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			d, dir := open(t, format)
			ctx := context.Background()
			v := drivers.Volume{ID: vid, SizeGB: 1}
			for i := 0; i < 2; i++ { // the second create is a redelivery
				if _, err := d.CreateVolume(ctx, v); err != nil {
					t.Fatalf("create #%d: %v", i+1, err)
				}
			}
			p := filepath.Join(dir, "volume-"+vid)
			ii, ok, err := imageInfo(ctx, p)
			if err != nil || !ok || ii.Format != format || ii.VirtualSize != drivers.GiB {
				t.Fatalf("after create: %+v %v %v", ii, ok, err)
			}
			if format == "raw" {
				var st os.FileInfo
				if st, err = os.Stat(p); err != nil || st.Size() != drivers.GiB {
					t.Fatalf("raw file size: %v %v", st, err)
				}
			}
			if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 2}); !drivers.IsKind(err, drivers.KindConflict) {
				t.Fatalf("create with another size: want conflict, got %v", err)
			}
			if err := d.ExtendVolume(ctx, v, 3); err != nil {
				t.Fatal(err)
			}
			if err := d.ExtendVolume(ctx, v, 3); err != nil { // redelivered extend
				t.Fatal(err)
			}
			if err := d.ExtendVolume(ctx, v, 2); !drivers.IsKind(err, drivers.KindConflict) {
				t.Fatalf("shrink: want conflict, got %v", err)
			}
			if ii, _, _ = imageInfo(ctx, p); ii.VirtualSize != 3*drivers.GiB {
				t.Fatalf("after extend: %+v", ii)
			}
			for i := 0; i < 2; i++ {
				if err := d.DeleteVolume(ctx, v); err != nil {
					t.Fatalf("delete #%d: %v", i+1, err)
				}
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("file still there: %v", err)
			}
			if err := d.ExtendVolume(ctx, v, 4); !drivers.IsKind(err, drivers.KindNotFound) {
				t.Fatalf("extend of a missing volume: want not_found, got %v", err)
			}
		})
	}
}

func TestBadIDRunsNothing(t *testing.T) {
	d, _ := openWith(t, "raw", failExecutor{t})
	for _, id := range []string{"../etc/passwd", "x; rm -rf /", "-rf", "", "0B5CBF4E-8F0A-4C1E-9D5C-2F1A7A3C9E10"} {
		if _, err := d.CreateVolume(context.Background(), drivers.Volume{ID: id, SizeGB: 1}); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("id %q: want invalid, got %v", id, err)
		}
		if err := d.DeleteVolume(context.Background(), drivers.Volume{ID: id}); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("id %q: want invalid, got %v", id, err)
		}
	}
}

type failExecutor struct{ t *testing.T }

func (f failExecutor) Run(_ context.Context, c drivers.Command) (drivers.Output, error) {
	f.t.Errorf("command ran: %s", c)
	return drivers.Output{}, nil
}

func TestStats(t *testing.T) {
	d, _ := open(t, "raw")
	ctx := context.Background()
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 2}); err != nil {
		t.Fatal(err)
	}
	s, err := d.GetVolumeStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.TotalVolumes != 1 || s.ProvisionedCapacityGB != 2 || s.TotalCapacityGB <= 0 || s.FreeCapacityGB <= 0 {
		t.Fatalf("stats: %+v", s)
	}
}
