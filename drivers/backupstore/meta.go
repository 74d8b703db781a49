package backupstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ember-storage/ember/drivers"
)

const (
	metaFile    = "metadata.json"
	pendingFile = "pending.json"
	// metaVersion changes when a reader of the old format would misread the new.
	metaVersion = "1"
	// maxMetaBytes bounds what we read as JSON: 64 TiB in 32 MiB chunks is
	// about 2M entries of ~250 bytes.
	maxMetaBytes = 1 << 30
)

// Meta is a complete backup, as stored in <backup_id>/metadata.json.
type Meta struct {
	Version  string `json:"version"`
	BackupID string `json:"backup_id"`
	VolumeID string `json:"volume_id"`
	// ProjectID owns the backup (empty in backups written before it was kept).
	ProjectID string `json:"project_id,omitempty"`
	// SizeGB is the volume's size (Cinder's backup "size"); Length is the
	// number of bytes actually read from the volume.
	SizeGB    int    `json:"size"`
	Length    int64  `json:"length"`
	ChunkSize int64  `json:"chunk_size"`
	ParentID  string `json:"parent_id,omitempty"`
	CreatedAt string `json:"created_at"`
	// ObjectCount is how many chunk objects this backup itself stores
	// (Cinder's object_count); the rest are its parents' or zero.
	ObjectCount int     `json:"object_count"`
	Chunks      []Chunk `json:"chunks"`
}

// Chunk is one ChunkSize slice of the volume.
type Chunk struct {
	Index  int64  `json:"index"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"` // of the raw (uncompressed) bytes
	// Zero chunks have no object: they are stored sparsely.
	Zero bool `json:"zero,omitempty"`
	// Object is the chunk's file name inside its Owner backup's directory.
	Object      string `json:"object,omitempty"`
	Owner       string `json:"owner,omitempty"`
	Compression string `json:"compression,omitempty"`
}

// pending marks a backup being written, so that Delete of its parent waits
// and a redelivered request with other parameters is recognised.
type pending struct {
	BackupID string `json:"backup_id"`
	VolumeID string `json:"volume_id"`
	ParentID string `json:"parent_id,omitempty"`
}

// objectName is the chunk file name; eight digits keep listings in volume
// order up to 100M chunks.
func objectName(index int64) string { return fmt.Sprintf("chunk-%08d", index) }

// readMeta reads <dir>/metadata.json; KindNotFound when it is absent.
func readMeta(dir, id string) (Meta, error) {
	var m Meta
	err := readJSON(filepath.Join(dir, metaFile), &m)
	if errors.Is(err, os.ErrNotExist) {
		return Meta{}, drivers.Errorf(drivers.KindNotFound, "backup "+id, "no complete backup")
	}
	if err != nil {
		return Meta{}, drivers.Wrap(drivers.KindBackend, "backup "+id, err)
	}
	if m.Version != metaVersion {
		return Meta{}, drivers.Errorf(drivers.KindBackend, "backup "+id, "metadata version %q is not supported (want %q)", m.Version, metaVersion)
	}
	if m.BackupID != id {
		return Meta{}, drivers.Errorf(drivers.KindBackend, "backup "+id, "metadata names backup %q", m.BackupID)
	}
	return m, nil
}

func readJSON(p string, v any) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, maxMetaBytes))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(p), err)
	}
	return nil
}

// writeJSON writes v to p atomically.
func writeJSON(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(p, append(b, '\n'))
}
