package imagestore

import (
	"bytes"
	"context"
	"io"
	"os"
)

const copyBlock = 1 << 20

var zeroBlock [copyBlock]byte

// copySparse copies r to the start of f, seeking over zero blocks so that
// holes in a volume stay holes in the file, and stops when ctx is done.
// It returns how many bytes r gave.
func copySparse(ctx context.Context, f *os.File, r io.Reader) (int64, error) {
	buf := make([]byte, copyBlock)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := io.ReadFull(r, buf)
		if m > 0 {
			if bytes.Equal(buf[:m], zeroBlock[:m]) {
				if _, err := f.Seek(int64(m), io.SeekCurrent); err != nil {
					return n, err
				}
			} else if _, err := f.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			// A trailing hole has no write to give the file its length.
			return n, f.Truncate(n)
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
