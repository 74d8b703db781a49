package backupstore

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const tmpPrefix = ".tmp-"

// writeFileAtomic writes data to p through a synced temp file and a rename,
// so a reader sees the whole file or none of it, even after a crash.
func writeFileAtomic(p string, data []byte) error {
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// removeTemps deletes temp files a crashed attempt left in dir.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// chunkCodec compresses chunks into a reused buffer.
type chunkCodec struct {
	buf bytes.Buffer
	zw  *zlib.Writer
}

// encode returns what to store for data and the compression it used. Like
// Cinder, a chunk that does not shrink is stored as it is.
func (c *chunkCodec) encode(data []byte, compression string) ([]byte, string, error) {
	if compression != CompressionZlib {
		return data, CompressionNone, nil
	}
	c.buf.Reset()
	if c.zw == nil {
		// BestSpeed: volume data is mostly either compressible runs or
		// incompressible blocks, where higher levels gain little and cost
		// several times the CPU. Any zlib level restores the same way.
		zw, err := zlib.NewWriterLevel(&c.buf, flate.BestSpeed)
		if err != nil {
			return nil, "", err
		}
		c.zw = zw
	} else {
		c.zw.Reset(&c.buf)
	}
	if _, err := c.zw.Write(data); err != nil {
		return nil, "", err
	}
	if err := c.zw.Close(); err != nil {
		return nil, "", err
	}
	if c.buf.Len() >= len(data) {
		return data, CompressionNone, nil
	}
	return c.buf.Bytes(), CompressionZlib, nil
}

// decode reads a stored chunk of want raw bytes into dst (len(dst) >= want).
// It reads at most want+1 bytes, so a damaged or hostile object cannot
// inflate beyond the chunk it claims to be.
func decode(r io.Reader, compression string, dst []byte, want int64) ([]byte, error) {
	switch compression {
	case CompressionNone:
	case CompressionZlib:
		zr, err := zlib.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("zlib: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("unknown compression %q", compression)
	}
	n, err := io.ReadFull(r, dst[:want])
	if err != nil {
		return nil, fmt.Errorf("read %d of %d bytes: %w", n, want, err)
	}
	// The object must end where the metadata says the chunk ends; for zlib
	// this read also checks the stream's adler32 trailer.
	var one [1]byte
	switch _, err := io.ReadFull(r, one[:]); err {
	case io.EOF:
	case nil:
		return nil, fmt.Errorf("longer than %d bytes", want)
	default:
		return nil, fmt.Errorf("after %d bytes: %w", want, err)
	}
	return dst[:want], nil
}

var zeroPage [64 << 10]byte

// isZero reports whether b holds only zero bytes (a hole in a sparse volume).
func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
