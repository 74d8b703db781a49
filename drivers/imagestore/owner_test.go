package imagestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func readOwnerFile(t *testing.T, s *Store, imageID string) Owner {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, imageID+".owner"))
	if err != nil {
		t.Fatal(err)
	}
	var o Owner
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// An image id is its first uploader's: another project's upload to it is
// refused and writes nothing, also when it would otherwise count as a
// redelivery (same format and size).
func TestPutRefusesAnotherProjectsImage(t *testing.T) {
	ctx := context.Background()
	s := &Store{Dir: t.TempDir()}
	a, b := volumeBytes(1<<20, 1), volumeBytes(1<<20, 2)
	if err := s.Put(ctx, image1, FormatRaw, uploaderA, bytes.NewReader(a), int64(len(a))); err != nil {
		t.Fatal(err)
	}
	if o := readOwnerFile(t, s, image1); o.ProjectID != projA || o.Public {
		t.Fatalf("owner record %+v, want project A, private", o)
	}
	for _, size := range []int64{int64(len(b)), int64(len(b)) * 2} {
		err := s.Put(ctx, image1, FormatRaw, Uploader{ProjectID: projB}, bytes.NewReader(b), size)
		if !errors.Is(err, ErrForbidden) {
			t.Fatalf("B's upload of %d bytes to A's image: %v, want ErrForbidden", size, err)
		}
	}
	// Nor in the other format.
	if err := s.Put(ctx, image1, FormatQcow2, Uploader{ProjectID: projB}, bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrForbidden) {
		t.Fatalf("B's qcow2 upload to A's image id: %v, want ErrForbidden", err)
	}
	if got, _ := os.ReadFile(filepath.Join(s.Dir, image1+".raw")); !bytes.Equal(got, a) {
		t.Fatal("A's image changed")
	}
	if _, err := os.Stat(filepath.Join(s.Dir, image1+".qcow2")); !os.IsNotExist(err) {
		t.Fatalf("B's refused upload left %s.qcow2: %v", image1, err)
	}
	if o := readOwnerFile(t, s, image1); o.ProjectID != projA {
		t.Fatalf("owner record %+v after B's uploads", o)
	}
}

// Two projects racing to upload one image id: exactly one wins, the image
// holds the winner's bytes, and the record names the winner.
func TestPutRaceOnOneIDHasOneOwner(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 20; round++ {
		s := &Store{Dir: t.TempDir()}
		projects := []string{projA, projB}
		data := [][]byte{volumeBytes(256<<10, 3), volumeBytes(256<<10, 4)}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range projects {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = s.Put(ctx, image1, FormatRaw, Uploader{ProjectID: projects[i]}, bytes.NewReader(data[i]), int64(len(data[i])))
			}()
		}
		close(start)
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won < 0:
				won = i
			case err == nil:
				t.Fatalf("round %d: both uploads succeeded", round)
			case !errors.Is(err, ErrForbidden):
				t.Fatalf("round %d: upload %d: %v", round, i, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: both uploads refused: %v", round, errs)
		}
		if o := readOwnerFile(t, s, image1); o.ProjectID != projects[won] {
			t.Fatalf("round %d: owner %s, winner %s", round, o.ProjectID, projects[won])
		}
		if got, _ := os.ReadFile(filepath.Join(s.Dir, image1+".raw")); !bytes.Equal(got, data[won]) {
			t.Fatalf("round %d: the image does not hold the winner's bytes", round)
		}
	}
}

// A crash after the owner record and before the image: the owner's retry
// writes the image; nobody else can take the id meanwhile.
func TestPutAfterCrashBetweenOwnerAndImage(t *testing.T) {
	ctx := context.Background()
	s := &Store{Dir: t.TempDir()}
	data := volumeBytes(1<<20, 5)
	// The stream breaks after the claim: the state a crash there leaves.
	if err := s.Put(ctx, image1, FormatRaw, uploaderA, io.MultiReader(bytes.NewReader(data[:1000]), failingReader{}), int64(len(data))); err == nil {
		t.Fatal("Put from a failing stream succeeded")
	}
	if _, err := os.Stat(filepath.Join(s.Dir, image1+".raw")); !os.IsNotExist(err) {
		t.Fatalf("a failed Put left an image: %v", err)
	}
	if err := s.Put(ctx, image1, FormatRaw, Uploader{ProjectID: projB}, bytes.NewReader(data), int64(len(data))); !errors.Is(err, ErrForbidden) {
		t.Fatalf("B took A's claimed id: %v", err)
	}
	if err := s.Put(ctx, image1, FormatRaw, uploaderA, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("A's retry: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(s.Dir, image1+".raw")); !bytes.Equal(got, data) {
		t.Fatal("A's retry did not write the image")
	}
}

// The owner flips the public flag by uploading again with it given; an
// upload without it keeps the flag. An image in the store without a
// record (placed by hand, or uploaded before owners) is nobody's to write.
func TestPutPublicFlagAndUnownedImages(t *testing.T) {
	ctx := context.Background()
	s := &Store{Dir: t.TempDir()}
	data := volumeBytes(1<<20, 6)
	yes, no := true, false
	put := func(u Uploader) error {
		return s.Put(ctx, image1, FormatRaw, u, bytes.NewReader(data), int64(len(data)))
	}
	for _, step := range []struct {
		public *bool
		want   bool
	}{{&yes, true}, {nil, true}, {&no, false}, {nil, false}, {&yes, true}} {
		if err := put(Uploader{ProjectID: projA, Public: step.public}); err != nil {
			t.Fatal(err)
		}
		if o := readOwnerFile(t, s, image1); o.Public != step.want || o.ProjectID != projA {
			t.Fatalf("after public=%v: record %+v, want public %v", step.public, o, step.want)
		}
	}
	// Public does not let another project write the image.
	if err := put(Uploader{ProjectID: projB, Public: &no}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("B's upload to A's public image: %v", err)
	}
	if o := readOwnerFile(t, s, image1); !o.Public {
		t.Fatal("B's refused upload made A's image private")
	}

	if err := os.WriteFile(filepath.Join(s.Dir, image2+".raw"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx, image2, FormatRaw, uploaderA, bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("upload over an image without an owner record: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, image2+".owner")); !os.IsNotExist(err) {
		t.Fatalf("a refused upload claimed the operator's image: %v", err)
	}
}

// Fetching from the store reads the owner record of the resolved file:
// the owner's and public images open, another project's private image, an
// image without a record and the records themselves do not, also through
// a symlink from another allowed directory.
func TestFetchFromStoreChecksOwner(t *testing.T) {
	requireQemuImg(t)
	ctx := context.Background()
	root := t.TempDir()
	s := &Store{Dir: filepath.Join(root, "images")}
	other := filepath.Join(root, "other")
	if err := os.Mkdir(other, 0o750); err != nil {
		t.Fatal(err)
	}
	data := volumeBytes(1<<20, 7)
	yes := true
	if err := s.Put(ctx, image1, FormatRaw, uploaderA, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, image2, FormatQcow2, Uploader{ProjectID: projA, Public: &yes}, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"byhand.img": data, "shared.img": data, "shared.owner": []byte(`{"public":true}`)} {
		if err := os.WriteFile(filepath.Join(s.Dir, name), content, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(s.Dir, image1+".raw"), filepath.Join(other, "link.raw")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "plain.raw"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{AllowedPrefixes: []string{"file://" + s.Dir + "/", "file://" + other + "/"}, TempDir: t.TempDir(), Images: s}
	open := func(project, url string) error {
		g := *f
		g.Project = project
		r, _, err := g.Open(ctx, url)
		if err == nil {
			got, _ := io.ReadAll(r)
			r.Close()
			if !bytes.Equal(got, data) {
				t.Errorf("%s as %s: wrong bytes", url, project)
			}
		}
		return err
	}
	in := func(name string) string { return "file://" + filepath.Join(s.Dir, name) }
	for _, tc := range []struct {
		project, url string
		forbidden    bool
	}{
		{projA, in(image1 + ".raw"), false},
		{projB, in(image1 + ".raw"), true},
		{projB, "file://" + filepath.Join(other, "link.raw"), true},
		{projA, "file://" + filepath.Join(other, "link.raw"), false},
		{projB, in(image2 + ".qcow2"), false}, // public
		{projA, in("byhand.img"), true},       // no record: the operator's
		{projB, in("shared.img"), false},      // the operator's, marked public
		{projB, "file://" + filepath.Join(other, "plain.raw"), false},
	} {
		err := open(tc.project, tc.url)
		if tc.forbidden != errors.Is(err, ErrForbidden) || (!tc.forbidden && err != nil) {
			t.Errorf("%s as %s: %v, want forbidden %v", tc.url, tc.project, err, tc.forbidden)
		}
	}
	// Owner records and temp files are not images, for anyone.
	for _, name := range []string{image1 + ".owner", "shared.owner"} {
		if err := open(projA, in(name)); err == nil || errors.Is(err, ErrForbidden) {
			t.Errorf("%s opened as an image: %v", name, err)
		}
	}
}
