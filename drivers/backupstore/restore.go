package backupstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ember-storage/ember/drivers"
)

// ErrCorrupt is wrapped by every error that means the stored backup is
// damaged (a chunk that fails its sha256, a missing object or parent).
var ErrCorrupt = errors.New("backup is corrupt")

// maxChain bounds the walk up parent links, so a damaged store with a
// parent cycle fails instead of looping.
const maxChain = 10000

// Restore writes backup backupID's raw bytes to w. Every chunk is checked
// against its sha256 before it is written; a mismatch stops the restore with
// a KindBackend error wrapping ErrCorrupt that names the chunk.
func (s *Store) Restore(ctx context.Context, backupID string, w io.Writer, progress ProgressFunc) error {
	m, err := s.Get(backupID)
	if err != nil {
		return err
	}
	op := "backup " + backupID
	owners, err := s.chain(m)
	if err != nil {
		return err
	}
	prog := newProgress(progress, m.Length, s.clock)
	buf := make([]byte, m.ChunkSize)
	var done int64
	for i, c := range m.Chunks {
		if err := ctx.Err(); err != nil {
			return drivers.Wrap(drivers.KindUnavailable, op, err)
		}
		if c.Index != int64(i) || c.Offset != done || c.Length < 1 || c.Length > m.ChunkSize {
			return drivers.Errorf(drivers.KindBackend, op, "chunk %d: metadata out of order (index %d, offset %d, length %d): %w",
				i, c.Index, c.Offset, c.Length, ErrCorrupt)
		}
		data, err := readChunk(owners, c, buf)
		if err != nil {
			return drivers.Errorf(drivers.KindBackend, op, "chunk %d: %w", i, err)
		}
		if _, err := w.Write(data); err != nil {
			return drivers.Wrap(drivers.KindOf(err), op+": write volume", err)
		}
		done += c.Length
		prog.update(done)
	}
	if done != m.Length {
		return drivers.Errorf(drivers.KindBackend, op, "chunks hold %d bytes, metadata says %d: %w", done, m.Length, ErrCorrupt)
	}
	prog.finish(done)
	return nil
}

// chain walks from m up its parents and returns the directory of every
// backup in it, by id; chunks may only point into these.
func (s *Store) chain(m Meta) (map[string]string, error) {
	op := "backup " + m.BackupID
	owners := map[string]string{}
	for cur := m; ; {
		dir, err := s.backupDir(cur.BackupID)
		if err != nil {
			return nil, drivers.Wrap(drivers.KindBackend, op, err)
		}
		owners[cur.BackupID] = dir
		if cur.ParentID == "" {
			return owners, nil
		}
		if _, seen := owners[cur.ParentID]; seen || len(owners) > maxChain {
			return nil, drivers.Errorf(drivers.KindBackend, op, "parent chain loops at %s: %w", cur.ParentID, ErrCorrupt)
		}
		parent, err := s.Get(cur.ParentID)
		if drivers.IsKind(err, drivers.KindNotFound) {
			return nil, drivers.Errorf(drivers.KindBackend, op, "parent backup %s is missing: %w", cur.ParentID, ErrCorrupt)
		}
		if err != nil {
			return nil, drivers.Wrap(drivers.KindOf(err), op, err)
		}
		cur = parent
	}
}

// readChunk returns chunk c's verified raw bytes, in buf or from zeroPage.
func readChunk(owners map[string]string, c Chunk, buf []byte) ([]byte, error) {
	if c.Zero {
		data := buf[:c.Length]
		clear(data)
		return data, verify(c, data)
	}
	dir, ok := owners[c.Owner]
	// The object name must be the one its index gives: metadata never
	// names a path.
	if !ok || c.Object != objectName(c.Index) {
		return nil, corrupt("object %s/%s is outside the backup chain", c.Owner, c.Object)
	}
	name := c.Owner + "/" + c.Object
	f, err := os.Open(filepath.Join(dir, c.Object))
	if errors.Is(err, os.ErrNotExist) {
		return nil, corrupt("object %s is missing", name)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := decode(f, c.Compression, buf, c.Length)
	if err != nil {
		return nil, corrupt("object %s: %v", name, err)
	}
	return data, verify(c, data)
}

// corrupt builds an error that wraps ErrCorrupt.
func corrupt(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrCorrupt)...)
}

func verify(c Chunk, data []byte) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != c.SHA256 {
		return corrupt("sha256 mismatch in object %s/%s: metadata has %s, data has %s", c.Owner, c.Object, c.SHA256, got)
	}
	return nil
}
