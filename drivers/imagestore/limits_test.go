package imagestore

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// recorder runs commands locally and keeps their argv.
type recorder struct {
	mu   sync.Mutex
	args [][]string
}

func (r *recorder) Run(ctx context.Context, c drivers.Command) (drivers.Output, error) {
	r.mu.Lock()
	r.args = append(r.args, slices.Clone(c.Args))
	r.mu.Unlock()
	return drivers.LocalExecutor{}.Run(ctx, c)
}

// Every qemu-img info the store runs is under Cinder's limits, with the
// format given.
func TestInfoRunsUnderLimits(t *testing.T) {
	requireQemuImg(t)
	rec := &recorder{}
	s := &Store{Dir: t.TempDir(), Executor: rec}
	data := volumeBytes(1<<20, 2)
	for range 2 { // the second Put finds the image stored and inspects it
		if err := s.Put(context.Background(), image1, FormatQcow2, Uploader{ProjectID: "p1"}, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	// The fetcher inspects a qcow2 before converting it.
	f := &Fetcher{AllowedPrefixes: []string{"file://" + s.Dir + "/"}, TempDir: t.TempDir(), Executor: rec}
	if got := fetchAll(t, f, "file://"+filepath.Join(s.Dir, image1+".qcow2")); !bytes.Equal(got, data) {
		t.Fatal("fetched image differs")
	}
	infos := 0
	for _, a := range rec.args {
		if i := slices.Index(a, "info"); i > 0 && a[i-1] == "qemu-img" {
			infos++
			if !slices.Equal(a[:i-1], []string{"prlimit", "--cpu=30", "--as=1073741824", "--"}) || !slices.Contains(a, "-f") {
				t.Errorf("qemu-img info without limits or format: %q", a)
			}
		}
	}
	if infos != 2 {
		t.Fatalf("%d qemu-img info among %q, want 2", infos, rec.args)
	}
}
