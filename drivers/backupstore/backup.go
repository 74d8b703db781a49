package backupstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// BackupRequest names a backup and the volume it copies.
type BackupRequest struct {
	BackupID string
	VolumeID string
	SizeGB   int
	// ProjectID owns the backup: restores and creates from it are refused
	// to other projects.
	ProjectID string
	// ParentID, when set, makes the backup incremental on that backup.
	ParentID string
}

// Backup reads the volume's raw bytes from r and stores them as backup
// req.BackupID. A backup already complete for the same volume and parent is
// returned as it is without reading r (a redelivered request); one that a
// crash interrupted is redone from the start, overwriting its own objects.
func (s *Store) Backup(ctx context.Context, req BackupRequest, r io.Reader, progress ProgressFunc) (Meta, error) {
	if err := s.Validate(); err != nil {
		return Meta{}, err
	}
	op := "backup " + req.BackupID
	dir, err := s.backupDir(req.BackupID)
	if err != nil {
		return Meta{}, err
	}
	if err := drivers.CheckID(req.VolumeID); err != nil {
		return Meta{}, drivers.Wrap(drivers.KindInvalid, op, err)
	}
	size, err := drivers.Bytes(req.SizeGB)
	if err != nil {
		return Meta{}, drivers.Wrap(drivers.KindInvalid, op, err)
	}

	if m, err := readMeta(dir, req.BackupID); err == nil {
		if m.VolumeID != req.VolumeID || m.ParentID != req.ParentID {
			return Meta{}, drivers.Errorf(drivers.KindConflict, op,
				"exists for volume %s (parent %q), requested for volume %s (parent %q)", m.VolumeID, m.ParentID, req.VolumeID, req.ParentID)
		}
		newProgress(progress, m.Length, s.clock).finish(m.Length)
		return m, nil
	} else if !drivers.IsKind(err, drivers.KindNotFound) {
		return Meta{}, err
	}

	parent, err := s.parentOf(req)
	if err != nil {
		return Meta{}, err
	}
	if err := s.begin(dir, req); err != nil {
		return Meta{}, err
	}
	m := Meta{
		Version:   metaVersion,
		BackupID:  req.BackupID,
		VolumeID:  req.VolumeID,
		ProjectID: req.ProjectID,
		SizeGB:    req.SizeGB,
		ChunkSize: s.chunkSize(),
		ParentID:  req.ParentID,
		CreatedAt: time.Now().UTC().Format(time.RFC3339),
		Chunks:    []Chunk{},
	}
	if err := s.writeChunks(ctx, dir, &m, parent, io.LimitReader(r, size+1), size, progress); err != nil {
		kind := drivers.KindOf(err)
		if ctx.Err() != nil {
			kind = drivers.KindUnavailable // cancelled (e.g. lease lost): retry later
		}
		return Meta{}, drivers.Wrap(kind, op, err)
	}
	if m.Length > size {
		return Meta{}, drivers.Errorf(drivers.KindInvalid, op, "volume stream is longer than its size of %d GB", req.SizeGB)
	}
	// The objects must be durable before the metadata that makes them a backup.
	if err := syncDir(dir); err != nil {
		return Meta{}, drivers.Wrap(drivers.KindBackend, op, err)
	}
	if err := writeJSON(filepath.Join(dir, metaFile), m); err != nil {
		return Meta{}, drivers.Wrap(drivers.KindBackend, op, err)
	}
	if err := s.finishDir(dir, m); err != nil {
		return Meta{}, drivers.Wrap(drivers.KindBackend, op, err)
	}
	newProgress(progress, m.Length, s.clock).finish(m.Length)
	return m, nil
}

// parentOf returns the parent of an incremental backup, nil for a full one.
func (s *Store) parentOf(req BackupRequest) (*Meta, error) {
	if req.ParentID == "" {
		return nil, nil
	}
	op := "backup " + req.BackupID
	if req.ParentID == req.BackupID {
		return nil, drivers.Errorf(drivers.KindInvalid, op, "a backup cannot be its own parent")
	}
	p, err := s.Get(req.ParentID)
	if err != nil {
		return nil, drivers.Wrap(drivers.KindOf(err), op+": parent", err)
	}
	if p.VolumeID != req.VolumeID {
		return nil, drivers.Errorf(drivers.KindInvalid, op, "parent backup %s is of volume %s, not %s", p.BackupID, p.VolumeID, req.VolumeID)
	}
	if p.ChunkSize != s.chunkSize() {
		// Chunks are compared by index: another size aligns nothing.
		return nil, drivers.Errorf(drivers.KindInvalid, op,
			"chunk size changed since parent backup %s (%d, now %d); do a full backup", p.BackupID, p.ChunkSize, s.chunkSize())
	}
	return &p, nil
}

// begin creates the backup's directory and marks it pending. A pending mark
// for another volume or parent is a conflicting request, not a retry.
func (s *Store) begin(dir string, req BackupRequest) error {
	op := "backup " + req.BackupID
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	want := pending{BackupID: req.BackupID, VolumeID: req.VolumeID, ParentID: req.ParentID}
	var have pending
	if err := readJSON(filepath.Join(dir, pendingFile), &have); err == nil && have != want {
		return drivers.Errorf(drivers.KindConflict, op,
			"in progress for volume %s (parent %q), requested for volume %s (parent %q)", have.VolumeID, have.ParentID, req.VolumeID, req.ParentID)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	if err := removeTemps(dir); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	if err := writeJSON(filepath.Join(dir, pendingFile), want); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	return syncDir(s.Dir)
}

// writeChunks cuts r into chunks and stores those that are neither zero nor
// unchanged from the parent, filling m.Chunks, m.Length and m.ObjectCount.
func (s *Store) writeChunks(ctx context.Context, dir string, m *Meta, parent *Meta, r io.Reader, total int64, fn ProgressFunc) error {
	prog := newProgress(fn, total, s.clock)
	compression := s.compression()
	buf := make([]byte, m.ChunkSize)
	var codec chunkCodec
	for index := int64(0); ; index++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			data := buf[:n]
			sum := sha256.Sum256(data)
			c := Chunk{Index: index, Offset: m.Length, Length: int64(n), SHA256: hex.EncodeToString(sum[:])}
			switch {
			case isZero(data):
				c.Zero = true
			case parent != nil && index < int64(len(parent.Chunks)) && sameData(parent.Chunks[index], c):
				pc := parent.Chunks[index]
				c.Object, c.Owner, c.Compression = pc.Object, pc.Owner, pc.Compression
			default:
				stored, alg, err := codec.encode(data, compression)
				if err != nil {
					return err
				}
				c.Object, c.Owner, c.Compression = objectName(index), m.BackupID, alg
				if err := writeFileAtomic(filepath.Join(dir, c.Object), stored); err != nil {
					return err
				}
				m.ObjectCount++
			}
			m.Chunks = append(m.Chunks, c)
			m.Length += int64(n)
			prog.update(m.Length)
		}
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			return nil
		case rerr != nil:
			return rerr
		case m.Length > total:
			return nil // the caller refuses the oversized stream
		}
	}
}

func sameData(parent, c Chunk) bool {
	return !parent.Zero && parent.SHA256 == c.SHA256 && parent.Length == c.Length
}

// finishDir drops the pending mark and any chunk object the metadata does
// not reference (left by an interrupted attempt over different data).
func (s *Store) finishDir(dir string, m Meta) error {
	keep := make(map[string]bool, m.ObjectCount)
	for _, c := range m.Chunks {
		if c.Owner == m.BackupID {
			keep[c.Object] = true
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if (strings.HasPrefix(name, "chunk-") && !keep[name]) || name == pendingFile {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return syncDir(dir)
}
