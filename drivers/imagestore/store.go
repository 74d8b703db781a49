// Package imagestore moves volume images in and out of Ember: Store keeps
// images uploaded from volumes (volume.upload.requested) as raw or qcow2
// files in a directory, and Fetcher reads the image a volume is created from
// (source.url), from file:// or http(s):// URLs under allowed prefixes only,
// as raw bytes.
package imagestore

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// Disk formats an image may be stored in.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

const tmpPrefix = ".tmp-"

// Store keeps uploaded images as <Dir>/<image_id>.<disk_format>, each with
// its owner record <Dir>/<image_id>.owner (owner.go).
type Store struct {
	// Dir is an absolute directory on this host; it is created on first Put.
	Dir string
	// Executor runs qemu-img; nil means a LocalExecutor. It must run on
	// this host: qemu-img reads the temp file Put has just written.
	Executor drivers.Executor
}

// Validate checks the configuration.
func (s *Store) Validate() error {
	if !filepath.IsAbs(s.Dir) {
		return drivers.Errorf(drivers.KindInvalid, "image store", "dir %q must be an absolute path", s.Dir)
	}
	return nil
}

// Path is where image imageID in diskFormat is (or will be) stored.
func (s *Store) Path(imageID, diskFormat string) (string, error) {
	if err := drivers.CheckID(imageID); err != nil {
		return "", err
	}
	if diskFormat != FormatRaw && diskFormat != FormatQcow2 {
		return "", drivers.Errorf(drivers.KindInvalid, "image "+imageID, "disk format %q: want raw or qcow2", diskFormat)
	}
	return filepath.Join(s.Dir, imageID+"."+diskFormat), nil
}

func (s *Store) qemuImg() qemuImg {
	if s.Executor == nil {
		return qemuImg{ex: drivers.LocalExecutor{}}
	}
	return qemuImg{ex: s.Executor}
}

// Put stores size raw bytes from r as image imageID in diskFormat, owned by
// u's project. The owner record comes first (claim): an id another project
// owns, or an image placed by the operator, is refused with ErrForbidden
// and nothing is written. The image appears whole or not at all (temp
// file, then rename). An image of the owner already there of the same
// format and size is success without reading r: a redelivered upload (its
// public flag is set as u asks); one of another size is a conflict.
func (s *Store) Put(ctx context.Context, imageID, diskFormat string, u Uploader, r io.Reader, size int64) error {
	if err := s.Validate(); err != nil {
		return err
	}
	final, err := s.Path(imageID, diskFormat)
	if err != nil {
		return err
	}
	op := "upload image " + imageID
	if size <= 0 {
		return drivers.Errorf(drivers.KindInvalid, op, "size %d must be positive", size)
	}
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	if err := s.claim(imageID, u); err != nil {
		return err
	}
	if done, err := s.stored(ctx, final, diskFormat, size); err != nil || done {
		return drivers.Wrap(drivers.KindOf(err), op, err)
	}
	if err := s.removeTemps(imageID); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}

	raw, err := s.writeRaw(ctx, imageID, r, size)
	if raw != "" {
		defer os.Remove(raw)
	}
	if err != nil {
		return drivers.Wrap(drivers.KindOf(err), op, err)
	}
	src := raw
	if diskFormat == FormatQcow2 {
		src, err = s.toQcow2(ctx, raw)
		defer os.Remove(src) // a no-op once renamed
		if err != nil {
			return drivers.Wrap(commandKind(err), op, err)
		}
	}
	if err := os.Rename(src, final); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	return drivers.Wrap(drivers.KindBackend, op, syncDir(s.Dir))
}

// stored reports whether final already holds this image; another image
// there is a conflict.
func (s *Store) stored(ctx context.Context, final, diskFormat string, size int64) (bool, error) {
	st, err := os.Stat(final)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, drivers.Wrap(drivers.KindBackend, "stat", err)
	}
	have := st.Size()
	if diskFormat == FormatQcow2 {
		ii, err := s.qemuImg().info(ctx, final, FormatQcow2)
		if err != nil {
			return false, drivers.Wrap(commandKind(err), "inspect stored image", err)
		}
		have = ii.VirtualSize
	}
	if have != size {
		return false, drivers.Errorf(drivers.KindConflict, "stored image", "exists with %d bytes, requested %d", have, size)
	}
	return true, nil
}

// writeRaw copies exactly size bytes of r into a synced temp file and
// returns its path (also on error, for the caller to remove).
func (s *Store) writeRaw(ctx context.Context, imageID string, r io.Reader, size int64) (string, error) {
	f, err := os.CreateTemp(s.Dir, tmpPrefix+imageID+"-*.raw")
	if err != nil {
		return "", err
	}
	defer f.Close()
	n, err := copySparse(ctx, f, io.LimitReader(r, size+1))
	switch {
	case err != nil:
		return f.Name(), err
	case n > size:
		return f.Name(), drivers.Errorf(drivers.KindInvalid, "read volume", "stream is longer than %d bytes", size)
	case n < size:
		return f.Name(), drivers.Errorf(drivers.KindBackend, "read volume", "stream ended after %d of %d bytes", n, size)
	}
	return f.Name(), f.Sync()
}

// toQcow2 converts the raw temp file into a qcow2 temp file beside it.
func (s *Store) toQcow2(ctx context.Context, raw string) (string, error) {
	dst := strings.TrimSuffix(raw, ".raw") + ".qcow2"
	if err := s.qemuImg().convert(ctx, raw, FormatRaw, dst, FormatQcow2); err != nil {
		return dst, err
	}
	f, err := os.Open(dst)
	if err != nil {
		return dst, err
	}
	defer f.Close()
	return dst, f.Sync()
}

// removeTemps deletes what an interrupted Put of the same image left.
func (s *Store) removeTemps(imageID string) error {
	leftovers, err := filepath.Glob(filepath.Join(s.Dir, tmpPrefix+imageID+"-*"))
	if err != nil {
		return err
	}
	for _, p := range leftovers {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
