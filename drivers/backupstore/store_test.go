package backupstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
)

const (
	volA    = "0b8e5c1e-6f1a-4d7e-9a55-3f1c2d4e5a60"
	volB    = "1c9f6d2f-7a2b-4e8f-8b66-4a2d3e5f6b71"
	backup1 = "a1000000-0000-4000-8000-000000000001"
	backup2 = "a2000000-0000-4000-8000-000000000002"
	backup3 = "a3000000-0000-4000-8000-000000000003"

	testChunk = 64 << 10
)

func newStore(t testing.TB) *Store {
	t.Helper()
	return &Store{Dir: t.TempDir(), ChunkSize: testChunk}
}

// volumeImage is what a real volume looks like to a backup: random blocks
// (incompressible), text-like runs (compressible) and holes (zero), with a
// partial chunk at the end.
func volumeImage(size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for off := 0; off < size; off += testChunk {
		end := min(off+testChunk, size)
		switch (off / testChunk) % 3 {
		case 0:
			for i := off; i < end; i++ {
				b[i] = byte(rng.Uint32())
			}
		case 1:
			for i := off; i < end; i++ {
				b[i] = "ember block storage "[i%20]
			}
		case 2: // a hole
		}
	}
	return b
}

func chunkObjects(t *testing.T, s *Store, id string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(s.Dir, id, "chunk-*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func backup(t *testing.T, s *Store, req BackupRequest, data []byte) Meta {
	t.Helper()
	m, err := s.Backup(context.Background(), req, bytes.NewReader(data), nil)
	if err != nil {
		t.Fatalf("Backup %s: %v", req.BackupID, err)
	}
	return m
}

func restore(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := s.Restore(context.Background(), id, &out, nil); err != nil {
		t.Fatalf("Restore %s: %v", id, err)
	}
	return out.Bytes()
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	for _, compression := range []string{CompressionZlib, CompressionNone} {
		t.Run(compression, func(t *testing.T) {
			s := newStore(t)
			s.Compression = compression
			data := volumeImage(3<<20+1000, 1)
			m := backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, data)

			if got := restore(t, s, backup1); !bytes.Equal(got, data) {
				t.Fatalf("restored %d bytes differ from the %d backed up", len(got), len(data))
			}
			chunks := (len(data) + testChunk - 1) / testChunk
			holes := chunks / 3 // every third chunk is zero and stored sparsely
			if len(m.Chunks) != chunks || m.ObjectCount != chunks-holes {
				t.Fatalf("meta has %d chunks, %d objects; want %d, %d", len(m.Chunks), m.ObjectCount, chunks, chunks-holes)
			}
			if objs := chunkObjects(t, s, backup1); len(objs) != chunks-holes {
				t.Fatalf("%d chunk objects on disk, want %d", len(objs), chunks-holes)
			}
			last := m.Chunks[len(m.Chunks)-1]
			if last.Length != 1000 || m.Length != int64(len(data)) {
				t.Fatalf("last chunk length %d, total %d", last.Length, m.Length)
			}
			if compression == CompressionZlib && m.Chunks[1].Compression != CompressionZlib {
				t.Fatalf("text chunk stored with %q, want zlib", m.Chunks[1].Compression)
			}
			if m.Chunks[0].Compression != CompressionNone {
				t.Fatalf("random chunk stored with %q: compression that does not shrink must be skipped", m.Chunks[0].Compression)
			}
			entries, _ := os.ReadDir(filepath.Join(s.Dir, backup1))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), tmpPrefix) || e.Name() == pendingFile {
					t.Fatalf("left behind %s", e.Name())
				}
			}
			got, err := s.Get(backup1)
			if err != nil || got.VolumeID != volA || len(got.Chunks) != chunks {
				t.Fatalf("Get = %+v, %v", got.VolumeID, err)
			}
		})
	}
}

func TestIncrementalStoresOnlyChangedChunks(t *testing.T) {
	s := newStore(t)
	v0 := volumeImage(2<<20, 2) // 32 chunks
	backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, v0)

	v1 := bytes.Clone(v0)
	v1[2*testChunk+10] ^= 0xff // random chunk
	v1[7*testChunk] = 'X'      // text chunk
	v1[8*testChunk+5] = 1      // was a hole
	m1 := backup(t, s, BackupRequest{BackupID: backup2, VolumeID: volA, SizeGB: 1, ParentID: backup1}, v1)
	if objs := chunkObjects(t, s, backup2); len(objs) != 3 || m1.ObjectCount != 3 {
		t.Fatalf("incremental stored %d objects (meta %d), want the 3 changed chunks", len(objs), m1.ObjectCount)
	}
	if c := m1.Chunks[3]; c.Owner != backup1 || c.Object != objectName(3) {
		t.Fatalf("unchanged chunk 3 = %+v, want the parent's object", c)
	}

	v2 := bytes.Clone(v1)
	v2[9*testChunk] ^= 1
	m2 := backup(t, s, BackupRequest{BackupID: backup3, VolumeID: volA, SizeGB: 1, ParentID: backup2}, v2)
	if m2.ObjectCount != 1 || m2.Chunks[2].Owner != backup2 || m2.Chunks[0].Owner != backup1 {
		t.Fatalf("second incremental: %d objects, chunk 2 owner %s, chunk 0 owner %s", m2.ObjectCount, m2.Chunks[2].Owner, m2.Chunks[0].Owner)
	}

	for id, want := range map[string][]byte{backup1: v0, backup2: v1, backup3: v2} {
		if got := restore(t, s, id); !bytes.Equal(got, want) {
			t.Fatalf("restore %s differs from the volume it backed up", id)
		}
	}
}

func TestRestoreRefusesCorruptBackup(t *testing.T) {
	for _, tc := range []struct {
		name, compression string
		damage            func(t *testing.T, object string)
		want              string
	}{
		{"flipped byte, stored raw", CompressionNone, flipByte, "chunk 4: sha256 mismatch"},
		{"flipped byte, zlib", CompressionZlib, flipByte, "chunk 4: object " + backup1 + "/chunk-00000004: "},
		{"missing object", CompressionZlib, func(t *testing.T, p string) { os.Remove(p) }, "chunk 4: object " + backup1 + "/chunk-00000004 is missing"},
		{"truncated object", CompressionNone, func(t *testing.T, p string) { os.Truncate(p, 100) }, "chunk 4: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			s.Compression = tc.compression
			data := volumeImage(1<<20, 3)
			m := backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, data)
			if got := m.Chunks[4].Compression; got != tc.compression {
				t.Fatalf("chunk 4 stored with %q, want %q", got, tc.compression)
			}
			tc.damage(t, filepath.Join(s.Dir, backup1, objectName(4)))

			var out bytes.Buffer
			err := s.Restore(context.Background(), backup1, &out, nil)
			if !errors.Is(err, ErrCorrupt) || !drivers.IsKind(err, drivers.KindBackend) {
				t.Fatalf("Restore = %v; want a KindBackend error wrapping ErrCorrupt", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "backup "+backup1+": "+tc.want) {
				t.Fatalf("error %q does not start with %q", msg, "backup "+backup1+": "+tc.want)
			}
			if out.Len() != 4*testChunk {
				t.Fatalf("wrote %d bytes; want only the 4 chunks before the damaged one", out.Len())
			}
		})
	}
}

func flipByte(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreRefusesMissingParent(t *testing.T) {
	s := newStore(t)
	data := volumeImage(256<<10, 4)
	backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, data)
	backup(t, s, BackupRequest{BackupID: backup2, VolumeID: volA, SizeGB: 1, ParentID: backup1}, data)
	// Behind Delete's back, as a lost disk would.
	os.RemoveAll(filepath.Join(s.Dir, backup1))
	err := s.Restore(context.Background(), backup2, io.Discard, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "parent backup "+backup1+" is missing") {
		t.Fatalf("Restore = %v", err)
	}
}

func TestDeleteRefusedWhileChildExists(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := volumeImage(512<<10, 5)
	backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, data)
	backup(t, s, BackupRequest{BackupID: backup2, VolumeID: volA, SizeGB: 1, ParentID: backup1}, data)

	err := s.Delete(ctx, backup1)
	if !drivers.IsKind(err, drivers.KindBusy) || !strings.Contains(err.Error(), backup2) {
		t.Fatalf("Delete parent = %v; want KindBusy naming %s", err, backup2)
	}
	if got := restore(t, s, backup2); !bytes.Equal(got, data) {
		t.Fatal("refused delete damaged the child")
	}
	for i := 0; i < 2; i++ { // the second time it is already gone
		if err := s.Delete(ctx, backup2); err != nil {
			t.Fatalf("Delete child #%d: %v", i+1, err)
		}
	}
	if err := s.Delete(ctx, backup1); err != nil {
		t.Fatalf("Delete parent without children: %v", err)
	}
	if _, err := s.Get(backup1); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("Get deleted = %v; want KindNotFound", err)
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 0 {
		t.Fatalf("store not empty after deletes: %v", entries)
	}
}

func TestDeleteRefusedWhileChildInProgress(t *testing.T) {
	s := newStore(t)
	data := volumeImage(256<<10, 6)
	backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, data)
	// A child that failed half way keeps its pending mark until redone or deleted.
	_, err := s.Backup(context.Background(), BackupRequest{BackupID: backup2, VolumeID: volA, SizeGB: 1, ParentID: backup1},
		io.MultiReader(bytes.NewReader(data[:100<<10]), failingReader{}), nil)
	if err == nil {
		t.Fatal("Backup from a failing stream succeeded")
	}
	if err := s.Delete(context.Background(), backup1); !drivers.IsKind(err, drivers.KindBusy) {
		t.Fatalf("Delete parent of a pending child = %v; want KindBusy", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("device went away") }

func TestBackupRedeliveredReturnsStored(t *testing.T) {
	s := newStore(t)
	data := volumeImage(256<<10, 7)
	first := backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, data)

	// A redelivered request must not read the volume again.
	var calls [][2]int64
	again, err := s.Backup(context.Background(), BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, failingReader{},
		func(done, total int64) { calls = append(calls, [2]int64{done, total}) })
	if err != nil || again.CreatedAt != first.CreatedAt || len(again.Chunks) != len(first.Chunks) {
		t.Fatalf("redelivered Backup = %v; want the stored backup", err)
	}
	if len(calls) != 1 || calls[0] != [2]int64{first.Length, first.Length} {
		t.Fatalf("progress calls %v; want one final 100%%", calls)
	}
	_, err = s.Backup(context.Background(), BackupRequest{BackupID: backup1, VolumeID: volB, SizeGB: 1}, failingReader{}, nil)
	if !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("same backup id for another volume = %v; want KindConflict", err)
	}
}

func TestBackupRedoneAfterCrash(t *testing.T) {
	s := newStore(t)
	data := volumeImage(1<<20, 8)
	_, err := s.Backup(context.Background(), BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1},
		io.MultiReader(bytes.NewReader(data[:300<<10]), failingReader{}), nil)
	if err == nil || !strings.Contains(err.Error(), "device went away") {
		t.Fatalf("Backup from a failing stream = %v", err)
	}
	if _, err := s.Get(backup1); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("Get of an interrupted backup = %v; want KindNotFound", err)
	}
	// What a crash would leave besides: a half-written temp file and an
	// object the new data no longer has.
	dir := filepath.Join(s.Dir, backup1)
	os.WriteFile(filepath.Join(dir, tmpPrefix+"chunk-00000004-123"), []byte("half"), 0o640)
	os.WriteFile(filepath.Join(dir, objectName(99)), []byte("stale"), 0o640)

	backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, data)
	if got := restore(t, s, backup1); !bytes.Equal(got, data) {
		t.Fatal("redone backup restores other data")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, tmpPrefix) || n == objectName(99) || n == pendingFile {
			t.Fatalf("redone backup left %s", n)
		}
	}
}

func TestBackupRefusesBadRequests(t *testing.T) {
	s := newStore(t)
	data := volumeImage(128<<10, 9)
	backup(t, s, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, data)
	for _, tc := range []struct {
		name string
		req  BackupRequest
		kind drivers.Kind
	}{
		{"path as backup id", BackupRequest{BackupID: "../../etc", VolumeID: volA, SizeGB: 1}, drivers.KindInvalid},
		{"bad volume id", BackupRequest{BackupID: backup2, VolumeID: "vol a", SizeGB: 1}, drivers.KindInvalid},
		{"size zero", BackupRequest{BackupID: backup2, VolumeID: volA}, drivers.KindInvalid},
		{"missing parent", BackupRequest{BackupID: backup2, VolumeID: volA, SizeGB: 1, ParentID: backup3}, drivers.KindNotFound},
		{"parent of another volume", BackupRequest{BackupID: backup2, VolumeID: volB, SizeGB: 1, ParentID: backup1}, drivers.KindInvalid},
		{"own parent", BackupRequest{BackupID: backup2, VolumeID: volA, SizeGB: 1, ParentID: backup2}, drivers.KindInvalid},
		{"existing backup, other parent", BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1, ParentID: backup2}, drivers.KindConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Backup(context.Background(), tc.req, bytes.NewReader(data), nil)
			if !drivers.IsKind(err, tc.kind) {
				t.Fatalf("Backup = %v; want %s", err, tc.kind)
			}
		})
	}
	other := &Store{Dir: s.Dir, ChunkSize: 2 * testChunk}
	_, err := other.Backup(context.Background(), BackupRequest{BackupID: backup2, VolumeID: volA, SizeGB: 1, ParentID: backup1}, bytes.NewReader(data), nil)
	if !drivers.IsKind(err, drivers.KindInvalid) || !strings.Contains(err.Error(), "do a full backup") {
		t.Fatalf("incremental with another chunk size = %v", err)
	}
	for _, id := range []string{"", "..", "A1000000-0000-4000-8000-000000000001"} {
		if _, err := s.Get(id); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Fatalf("Get(%q) = %v; want KindInvalid", id, err)
		}
		if err := s.Delete(context.Background(), id); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Fatalf("Delete(%q) = %v; want KindInvalid", id, err)
		}
	}
	if _, err := s.Get(backup3); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("Get(unknown) = %v; want KindNotFound", err)
	}
}

func TestProgressAtMostOncePerSecond(t *testing.T) {
	s := newStore(t)
	clock := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { clock = clock.Add(300 * time.Millisecond); return clock }
	data := volumeImage(1<<20, 10) // 16 chunks: one clock tick each

	type call struct {
		at          time.Time
		done, total int64
	}
	var calls []call
	record := func(done, total int64) { calls = append(calls, call{clock, done, total}) }
	if _, err := s.Backup(context.Background(), BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, bytes.NewReader(data), record); err != nil {
		t.Fatal(err)
	}
	check := func(op string, total int64) {
		t.Helper()
		if len(calls) < 3 || len(calls) > 7 {
			t.Fatalf("%s: %d progress calls for 16 chunks over 4.8 s", op, len(calls))
		}
		for i := 1; i < len(calls)-1; i++ {
			if d := calls[i].at.Sub(calls[i-1].at); d < time.Second {
				t.Fatalf("%s: progress calls %d and %d only %v apart", op, i-1, i, d)
			}
			if calls[i].total != total || calls[i].done <= calls[i-1].done {
				t.Fatalf("%s: call %d = %+v", op, i, calls[i])
			}
		}
		if last := calls[len(calls)-1]; last.done != int64(len(data)) || last.total != last.done {
			t.Fatalf("%s: final call %+v; want 100%%", op, last)
		}
	}
	check("backup", drivers.GiB)

	calls = nil
	if err := s.Restore(context.Background(), backup1, io.Discard, record); err != nil {
		t.Fatal(err)
	}
	check("restore", int64(len(data)))
}

func TestBackupStopsOnCancel(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Backup(ctx, BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, bytes.NewReader(volumeImage(1<<20, 11)), nil)
	if !errors.Is(err, context.Canceled) || !drivers.IsKind(err, drivers.KindUnavailable) {
		t.Fatalf("Backup with a cancelled context = %v", err)
	}
}
