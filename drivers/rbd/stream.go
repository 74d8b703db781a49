package rbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// streamTimeout bounds a whole-volume copy. The executor's default timeout
// is sized for control commands and would kill a long copy, so streams
// allow ten minutes plus one per GiB (at least ~17 MB/s); the caller's
// context still bounds them.
func streamTimeout(sizeGB int) time.Duration {
	return 10*time.Minute + time.Duration(sizeGB)*time.Minute
}

// ReadVolume streams the image's raw bytes to w with `rbd export <image> -`.
func (d *Driver) ReadVolume(ctx context.Context, v drivers.Volume, w io.Writer) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	c := d.rbdCmd("export", "--no-progress", name, "-")
	c.Stdout = w
	c.Timeout = streamTimeout(v.SizeGB)
	_, err = d.run(ctx, "rbd export "+name, c)
	return err
}

// WriteVolume replaces the image's content with the raw bytes of r, in
// place, with `rbd import-diff - <image>`.
//
// `rbd import` only creates new images; importing to a temporary name and
// swapping would drop the image's snapshots and break its clones, and an
// image with snapshots cannot be removed at all. `qemu-img convert -n` does
// write into an existing image but refuses a pipe ("'file' driver requires
// '/dev/stdin' to be a regular file"). import-diff applies a stream in
// rbd's documented diff format to the existing image, so the driver encodes
// r as one: a data record per 4 MiB chunk, and a zero record for chunks
// that are all zeros, which librbd discards instead of writing. Bytes past
// the end of r are zeroed, so the image holds exactly r. Measured here: 1 GiB
// with 8 MiB of data in 1.7 s.
//
// An r longer than the image fails with KindInvalid after the image's size
// in bytes was written.
func (d *Driver) WriteVolume(ctx context.Context, v drivers.Volume, r io.Reader) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	op := "rbd import-diff " + name
	ii, exists, err := d.info(ctx, name)
	if err != nil {
		return err
	}
	if !exists {
		return drivers.Errorf(drivers.KindNotFound, op, "no such image in pool %s", d.o.Pool)
	}
	pr, pw := io.Pipe()
	encoded := make(chan error, 1)
	go func() {
		err := writeDiff(pw, r, ii.Size)
		pw.CloseWithError(err)
		encoded <- err
	}()
	c := d.rbdCmd("import-diff", "--no-progress", "-", name)
	c.Stdin = pr
	c.Timeout = streamTimeout(v.SizeGB)
	_, runErr := d.run(ctx, op, c)
	// If rbd stopped early, unblock the encoder before waiting for it.
	pr.CloseWithError(errRBDExited)
	encErr := <-encoded
	if encErr == nil || errors.Is(encErr, errRBDExited) {
		return runErr
	}
	// The input failed (or was too long): that is the cause, whatever rbd
	// made of the stream cut short.
	kind := drivers.KindOf(encErr)
	var tooLong *tooLongError
	if errors.As(encErr, &tooLong) {
		kind = drivers.KindInvalid
	}
	return drivers.Wrap(kind, op, errors.Join(encErr, runErr))
}

var errRBDExited = errors.New("rbd import-diff exited")

// diffChunk is the unit of the diff stream: RBD's default object size.
const diffChunk = 4 << 20

type tooLongError struct{ size int64 }

func (e *tooLongError) Error() string {
	return "input is longer than the image's " + strconv.FormatInt(e.size, 10) + " bytes"
}

// writeDiff encodes r as an rbd diff v1 stream (doc/dev/rbd-diff.rst in
// Ceph): the header line, an "s" record with the image size so that
// import-diff does not resize it, "w" records (offset, length, data) and
// "z" records (offset, length) for runs of zeros, then "e". Input past size
// is an error; the part of the image past the end of the input is zeroed.
func writeDiff(w io.Writer, r io.Reader, size int64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString("rbd diff v1\n")
	var hdr [17]byte
	hdr[0] = 's'
	binary.LittleEndian.PutUint64(hdr[1:9], uint64(size))
	bw.Write(hdr[:9])
	record := func(tag byte, off, n int64, data []byte) {
		hdr[0] = tag
		binary.LittleEndian.PutUint64(hdr[1:9], uint64(off))
		binary.LittleEndian.PutUint64(hdr[9:17], uint64(n))
		bw.Write(hdr[:17])
		bw.Write(data)
	}
	buf := make([]byte, diffChunk)
	zeros := make([]byte, diffChunk)
	var off, zeroStart int64 = 0, -1
	flushZeros := func() {
		if zeroStart >= 0 {
			record('z', zeroStart, off-zeroStart, nil)
			zeroStart = -1
		}
	}
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if off+int64(n) > size {
				return &tooLongError{size: size}
			}
			if bytes.Equal(buf[:n], zeros[:n]) {
				if zeroStart < 0 {
					zeroStart = off
				}
			} else {
				flushZeros()
				record('w', off, int64(n), buf[:n])
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	// Zero the rest of the image, joined to a trailing run of zeros.
	if zeroStart < 0 && off < size {
		zeroStart = off
	}
	off = size
	flushZeros()
	bw.WriteByte('e')
	return bw.Flush()
}
