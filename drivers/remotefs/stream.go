package remotefs

import (
	"context"
	"errors"
	"io"
	"strconv"

	"github.com/ember-storage/ember/drivers"
)

// ReadVolume streams the volume's raw bytes (its current content, through
// any snapshots) to w.
//
// A raw volume without snapshots is streamed as it is. Anything else is
// first converted to a sparse raw file beside it: qemu-img writes only to
// regular files (to /dev/stdout it fails: "'file' driver requires
// '/dev/stdout' to be a regular file"), and a temporary file on the share
// keeps the copy on the storage host, where it works over SSH too. The
// temporary file takes at most the volume's allocated space.
func (d *Driver) ReadVolume(ctx context.Context, vol drivers.Volume, w io.Writer) error {
	v, err := d.mustLocate(ctx, "read", vol.ID, vol.ProviderLocation)
	if err != nil {
		return err
	}
	_, c, err := d.activeChain(ctx, "read", v)
	if err != nil {
		return err
	}
	a := c.active()
	src := v.path(a.file())
	if len(c) > 1 || a.Format != "raw" {
		tmp := v.tmp("read")
		defer func() { _ = d.remove(context.WithoutCancel(ctx), tmp) }()
		if err := d.convert(ctx, src, a.Format, tmp, "raw"); err != nil {
			return err
		}
		src = tmp
	}
	_, err = d.run(ctx, drivers.Command{Args: []string{"dd", "if=" + src, "bs=1M", "status=none"}, Stdout: w})
	return classify("read "+src, err)
}

// WriteVolume replaces the volume's content with the raw bytes of r. Input
// shorter than the volume leaves the rest reading as zeros; longer input is
// refused before the volume is touched.
//
// The bytes land in a sparse temporary raw file first (dd conv=sparse keeps
// runs of zeros as holes). A raw volume without snapshots is then replaced
// by that file in one rename, so it holds the old or the new content, never
// a mix. Otherwise `qemu-img convert -n` writes it into the active image,
// keeping the snapshot chain below it.
func (d *Driver) WriteVolume(ctx context.Context, vol drivers.Volume, r io.Reader) error {
	v, err := d.mustLocate(ctx, "write", vol.ID, vol.ProviderLocation)
	if err != nil {
		return err
	}
	_, c, err := d.activeChain(ctx, "write", v)
	if err != nil {
		return err
	}
	a := c.active()
	size := a.VirtualSize
	tmp := v.tmp("write")
	defer func() { _ = d.remove(context.WithoutCancel(ctx), tmp) }()
	_, err = d.run(ctx, drivers.Command{
		Args:  []string{"dd", "of=" + tmp, "bs=1M", "conv=sparse", "status=none"},
		Stdin: io.LimitReader(r, size),
	})
	if err != nil {
		return classify("write "+tmp, err)
	}
	var one [1]byte
	switch n, err := io.ReadFull(r, one[:]); {
	case n > 0:
		return drivers.Errorf(drivers.KindInvalid, "write "+v.name, "input is larger than the volume's %d bytes", size)
	case err != nil && !errors.Is(err, io.EOF):
		return drivers.Wrap(drivers.KindBackend, "write "+v.name+": read input", err)
	}
	if _, err := d.cmd(ctx, "write "+tmp, "truncate", "-s", strconv.FormatInt(size, 10), tmp); err != nil {
		return err
	}
	dst := v.path(a.file())
	if len(c) == 1 && a.Format == "raw" {
		return d.rename(ctx, tmp, dst)
	}
	_, err = d.cmd(ctx, "write "+dst, "qemu-img", "convert", "-n", "-f", "raw", "-O", a.Format, tmp, dst)
	return err
}
