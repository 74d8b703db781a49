package imagestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/ember-storage/ember/drivers"
)

// qcow2Magic opens every qcow2 image ("QFI\xfb").
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// qcow2HeaderLen covers the version 3 header up to the feature bits we read.
const qcow2HeaderLen = 104

// isQcow2 reports whether the file starts with the qcow2 magic.
func isQcow2(f *os.File) (bool, error) {
	var magic [4]byte
	n, err := f.ReadAt(magic[:], 0)
	if err != nil && err != io.EOF {
		return false, err
	}
	return n == 4 && bytes.Equal(magic[:], qcow2Magic), nil
}

// checkQcow2Header refuses, before qemu-img ever opens the image, what would
// make it read other files of this host: a backing file or an external data
// file (the hole behind Cinder's and Glance's image-conversion advisories),
// and encryption, which we cannot convert. It returns the virtual size.
func checkQcow2Header(f *os.File) (int64, error) {
	h := make([]byte, qcow2HeaderLen)
	if _, err := f.ReadAt(h, 0); err != nil {
		return 0, fmt.Errorf("qcow2 header: %w", err)
	}
	be := binary.BigEndian
	version := be.Uint32(h[4:8])
	if version != 2 && version != 3 {
		return 0, fmt.Errorf("qcow2 version %d is not supported", version)
	}
	if be.Uint64(h[8:16]) != 0 {
		return 0, fmt.Errorf("qcow2 image has a backing file")
	}
	if be.Uint32(h[32:36]) != 0 {
		return 0, fmt.Errorf("qcow2 image is encrypted")
	}
	const externalDataFile = 1 << 2
	if version == 3 && be.Uint64(h[72:80])&externalDataFile != 0 {
		return 0, fmt.Errorf("qcow2 image has an external data file")
	}
	size := be.Uint64(h[24:32])
	if size > 1<<62 {
		return 0, fmt.Errorf("qcow2 virtual size %d is absurd", size)
	}
	return int64(size), nil
}

// imageInfo is the part of `qemu-img info --output=json` we read.
type imageInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	FormatSpecific  struct {
		Data struct {
			DataFile string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

// qemuImg runs qemu-img through an executor. The format is always given
// (-f): letting qemu-img probe a file's format is how a raw upload becomes
// a qcow2 with a backing file.
type qemuImg struct{ ex drivers.Executor }

func (q qemuImg) info(ctx context.Context, p, format string) (imageInfo, error) {
	out, err := q.ex.Run(ctx, drivers.Command{
		Args: drivers.QemuImgInfo(format, p), // under Cinder's CPU and memory limits
		Env:  []string{"LC_ALL=C"},
	})
	if err != nil {
		return imageInfo{}, err
	}
	var ii imageInfo
	if err := json.Unmarshal(out.Stdout, &ii); err != nil {
		return imageInfo{}, fmt.Errorf("qemu-img info %s: %w", p, err)
	}
	return ii, nil
}

func (q qemuImg) convert(ctx context.Context, src, srcFormat, dst, dstFormat string) error {
	_, err := q.ex.Run(ctx, drivers.Command{
		Args: []string{"qemu-img", "convert", "-q", "-f", srcFormat, "-O", dstFormat, src, dst},
		Env:  []string{"LC_ALL=C"},
	})
	return err
}

// commandKind classifies a failed qemu-img: a timeout is transient, no space
// is capacity, anything else a backend error.
func commandKind(err error) drivers.Kind {
	if ce, ok := drivers.AsCommandError(err); ok && bytes.Contains([]byte(ce.Stderr), []byte("No space left on device")) {
		return drivers.KindNoCapacity
	}
	return drivers.KindOf(err)
}
