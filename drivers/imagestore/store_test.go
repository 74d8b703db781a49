package imagestore

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

const (
	image1 = "b1000000-0000-4000-8000-000000000001"
	image2 = "b2000000-0000-4000-8000-000000000002"
	projA  = "0c9d5c3f2b1a4e8d9f7a6b5c4d3e2f10"
	projB  = "1d9d5c3f2b1a4e8d9f7a6b5c4d3e2f11"
)

var uploaderA = Uploader{ProjectID: projA}

// volumeBytes looks like a small volume: random data, a hole, a text run.
func volumeBytes(size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, size)
	for i := 0; i < size/3; i++ {
		b[i] = byte(rng.Uint32())
	}
	for i := 2 * size / 3; i < size; i++ {
		b[i] = "image "[i%6]
	}
	return b
}

func requireQemuImg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (Debian: qemu-utils)")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("volume went away") }

func TestPutRawAndQcow2ReadBack(t *testing.T) {
	requireQemuImg(t)
	ctx := context.Background()
	s := &Store{Dir: t.TempDir()}
	data := volumeBytes(3<<20+512, 1)

	if err := s.Put(ctx, image1, FormatRaw, uploaderA, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put raw: %v", err)
	}
	if err := s.Put(ctx, image1, FormatQcow2, uploaderA, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put qcow2: %v", err)
	}
	rawPath := filepath.Join(s.Dir, image1+".raw")
	qcowPath := filepath.Join(s.Dir, image1+".qcow2")
	if got, _ := os.ReadFile(rawPath); !bytes.Equal(got, data) {
		t.Fatal("raw image differs from the volume")
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", rawPath, qcowPath).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare: %v: %s", err, out)
	}
	if out, _ := exec.Command("qemu-img", "info", qcowPath).Output(); !strings.Contains(string(out), "file format: qcow2") {
		t.Fatalf("stored image is not qcow2:\n%s", out)
	}
	// And back through the fetcher, as create-from-image will read it.
	f := &Fetcher{AllowedPrefixes: []string{"file://" + s.Dir + "/"}, TempDir: t.TempDir()}
	for _, p := range []string{rawPath, qcowPath} {
		if got := fetchAll(t, f, "file://"+p); !bytes.Equal(got, data) {
			t.Fatalf("%s read back differs", filepath.Base(p))
		}
	}
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 3 {
		t.Fatalf("store holds %v; want the two images, their owner record and no temp files", entries)
	}
}

func TestPutRedeliveredIsDone(t *testing.T) {
	requireQemuImg(t)
	ctx := context.Background()
	s := &Store{Dir: t.TempDir()}
	data := volumeBytes(1<<20, 2)
	for _, format := range []string{FormatRaw, FormatQcow2} {
		if err := s.Put(ctx, image1, format, uploaderA, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		// A redelivered upload must not read the volume again.
		if err := s.Put(ctx, image1, format, uploaderA, failingReader{}, int64(len(data))); err != nil {
			t.Fatalf("redelivered Put %s = %v", format, err)
		}
		err := s.Put(ctx, image1, format, uploaderA, failingReader{}, 2<<20)
		if !drivers.IsKind(err, drivers.KindConflict) {
			t.Fatalf("Put %s of another size = %v; want KindConflict", format, err)
		}
	}
}

func TestPutRefuses(t *testing.T) {
	ctx := context.Background()
	s := &Store{Dir: t.TempDir()}
	data := volumeBytes(1<<20, 3)
	for _, tc := range []struct {
		name, id, format string
		data             []byte
		size             int64
		kind             drivers.Kind
	}{
		{"path as image id", "../../etc/passwd", FormatRaw, data, int64(len(data)), drivers.KindInvalid},
		{"unknown format", image2, "vmdk", data, int64(len(data)), drivers.KindInvalid},
		{"zero size", image2, FormatRaw, data, 0, drivers.KindInvalid},
		{"stream longer than size", image2, FormatRaw, data, int64(len(data)) - 1, drivers.KindInvalid},
		{"stream shorter than size", image2, FormatRaw, data, int64(len(data)) + 1, drivers.KindBackend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Put(ctx, tc.id, tc.format, uploaderA, bytes.NewReader(tc.data), tc.size)
			if !drivers.IsKind(err, tc.kind) {
				t.Fatalf("Put = %v; want %s", err, tc.kind)
			}
		})
	}
	if err := s.Put(ctx, image2, FormatRaw, uploaderA, failingReader{}, 1<<20); err == nil || !strings.Contains(err.Error(), "volume went away") {
		t.Fatalf("Put from a failing volume = %v", err)
	}
	// Only the owner record stays: the id is A's, whose retry finishes it.
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 1 || entries[0].Name() != image2+".owner" {
		t.Fatalf("failed uploads left %v; want only %s.owner", entries, image2)
	}
}
