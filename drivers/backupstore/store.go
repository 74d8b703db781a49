// Package backupstore keeps volume backups in a directory, in the manner of
// Cinder's chunked backup driver: the volume's raw stream is cut into
// fixed-size chunks, each stored as its own (zlib-compressed) object with its
// sha256, and a metadata file written last lists them. An incremental backup
// stores only the chunks whose sha256 differs from its parent's and points at
// the parent's objects for the rest.
//
// Layout under Store.Dir:
//
//	<backup_id>/metadata.json      the complete backup (written last, atomically)
//	<backup_id>/pending.json       the request of a backup still being written
//	<backup_id>/chunk-00000003     chunk 3 of that backup
//
// Every name is built from validated ids and chunk indexes, never from free text.
package backupstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ember-storage/ember/drivers"
)

const (
	// DefaultChunkSize is Cinder's backup_file_size order of magnitude: large
	// enough that per-object overhead vanishes, small enough to hold in memory.
	DefaultChunkSize int64 = 32 << 20
	// MaxChunkSize bounds the memory one Backup or Restore holds (two chunks).
	MaxChunkSize int64 = 1 << 30

	CompressionZlib = "zlib"
	CompressionNone = "none"
)

// Store is a backup repository in a directory of this host.
type Store struct {
	// Dir is an absolute directory; it is created on first backup.
	Dir string
	// ChunkSize is the size of one chunk in bytes; zero means DefaultChunkSize.
	// Incremental backups need the same chunk size as their parent.
	ChunkSize int64
	// Compression is "zlib" (default, as Cinder) or "none".
	Compression string

	// now is the clock for progress throttling; tests replace it.
	now func() time.Time
}

// Validate checks the configuration; zero values mean defaults.
func (s *Store) Validate() error {
	if !filepath.IsAbs(s.Dir) {
		return drivers.Errorf(drivers.KindInvalid, "backup store", "dir %q must be an absolute path", s.Dir)
	}
	if s.ChunkSize < 0 || s.ChunkSize > MaxChunkSize {
		return drivers.Errorf(drivers.KindInvalid, "backup store", "chunk size %d is outside 1..%d", s.ChunkSize, MaxChunkSize)
	}
	switch s.Compression {
	case "", CompressionZlib, CompressionNone:
	default:
		return drivers.Errorf(drivers.KindInvalid, "backup store", "compression %q: want zlib or none", s.Compression)
	}
	return nil
}

func (s *Store) chunkSize() int64 {
	if s.ChunkSize == 0 {
		return DefaultChunkSize
	}
	return s.ChunkSize
}

func (s *Store) compression() string {
	if s.Compression == "" {
		return CompressionZlib
	}
	return s.Compression
}

func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// backupDir is <dir>/<id>; the id is checked so that no caller can name a path.
func (s *Store) backupDir(id string) (string, error) {
	if err := drivers.CheckID(id); err != nil {
		return "", err
	}
	return filepath.Join(s.Dir, id), nil
}

// Get returns the metadata of a complete backup; KindNotFound when there is
// none (or it is still being written).
func (s *Store) Get(backupID string) (Meta, error) {
	if err := s.Validate(); err != nil {
		return Meta{}, err
	}
	dir, err := s.backupDir(backupID)
	if err != nil {
		return Meta{}, err
	}
	return readMeta(dir, backupID)
}

// Delete removes a backup and its objects. A backup that another (complete
// or pending) incremental backup builds on is refused with KindBusy, as
// Cinder refuses; a backup already gone is success.
func (s *Store) Delete(ctx context.Context, backupID string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	dir, err := s.backupDir(backupID)
	if err != nil {
		return err
	}
	op := "delete backup " + backupID
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	child, err := s.dependent(ctx, backupID)
	if err != nil {
		return drivers.Wrap(drivers.KindOf(err), op, err)
	}
	if child != "" {
		return drivers.Errorf(drivers.KindBusy, op, "incremental backup %s depends on it; delete that first", child)
	}
	// One rename makes the backup vanish at once; a crash during the slow
	// RemoveAll leaves only a .deleting- directory, swept by the next Delete.
	trash := filepath.Join(s.Dir, fmt.Sprintf(".deleting-%s-%d", backupID, time.Now().UnixNano()))
	if err := os.Rename(dir, trash); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	if err := syncDir(s.Dir); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	return s.sweepTrash()
}

// dependent returns the id of a backup whose parent is parentID, or "".
func (s *Store) dependent(ctx context.Context, parentID string) (string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		id := e.Name()
		if !e.IsDir() || id == parentID || drivers.CheckID(id) != nil {
			continue
		}
		dir := filepath.Join(s.Dir, id)
		m, err := readMeta(dir, id)
		if drivers.IsKind(err, drivers.KindNotFound) {
			// A backup still being written counts too: deleting its parent
			// now would leave it pointing at nothing when it completes.
			var p pending
			if perr := readJSON(filepath.Join(dir, pendingFile), &p); perr == nil && p.ParentID == parentID {
				return id + " (in progress)", nil
			}
			continue
		}
		if err != nil {
			return "", err
		}
		if m.ParentID == parentID {
			return id, nil
		}
	}
	return "", nil
}

// sweepTrash removes what earlier Deletes renamed away.
func (s *Store) sweepTrash() error {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return drivers.Wrap(drivers.KindBackend, "sweep backup store", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".deleting-") {
			if err := os.RemoveAll(filepath.Join(s.Dir, e.Name())); err != nil {
				return drivers.Wrap(drivers.KindBackend, "sweep backup store", err)
			}
		}
	}
	return nil
}
