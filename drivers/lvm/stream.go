package lvm

import (
	"context"
	"io"
	"strconv"

	"github.com/ember-storage/ember/drivers"
)

// ReadVolume streams /dev/<vg>/volume-<id> to w with dd (backup, upload to
// an image, migration to another host). The LV must exist: dd of a missing
// path would fail anyway, but the error then names the volume.
func (d *Driver) ReadVolume(ctx context.Context, v drivers.Volume, w io.Writer) error {
	name, l, err := d.existing(ctx, v, "read")
	if err != nil {
		return err
	}
	_, err = run(ctx, d.ex, drivers.Command{
		Args:    []string{"dd", "if=" + l.path(d.vg.name), "bs=" + ddBlockSize, "count=" + strconv.FormatInt(l.Size, 10), "iflag=count_bytes"},
		Stdout:  w,
		Timeout: copyTimeout(l.Size),
	})
	return classify("read "+name+" on "+d.vg.name, err)
}

// WriteVolume replaces the content of /dev/<vg>/volume-<id> with r (restore,
// image download). conv=nocreat keeps dd from creating a plain file under
// /dev when the LV is not active; iflag=fullblock keeps short reads from the
// pipe from shortening the blocks written; fdatasync puts the data on disk
// before we report the restore done. Input longer than the volume fails
// with "No space left on device".
func (d *Driver) WriteVolume(ctx context.Context, v drivers.Volume, r io.Reader) error {
	name, l, err := d.existing(ctx, v, "write")
	if err != nil {
		return err
	}
	_, err = run(ctx, d.ex, drivers.Command{
		Args:    []string{"dd", "of=" + l.path(d.vg.name), "bs=" + ddBlockSize, "iflag=fullblock", "conv=nocreat,fdatasync"},
		Stdin:   r,
		Timeout: copyTimeout(l.Size),
	})
	if stderrHas(err, "No space left on device") {
		return drivers.Wrap(drivers.KindInvalid, "write "+name+" on "+d.vg.name+": input is larger than the volume", commandFailure{mustCE(err)})
	}
	return classify("write "+name+" on "+d.vg.name, err)
}

func mustCE(err error) *drivers.CommandError {
	ce, _ := drivers.AsCommandError(err)
	return ce
}

func (d *Driver) existing(ctx context.Context, v drivers.Volume, verb string) (string, lv, error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return "", lv{}, err
	}
	l, ok, err := d.vg.lookup(ctx, name)
	if err != nil {
		return "", lv{}, err
	}
	if !ok {
		return "", lv{}, drivers.Errorf(drivers.KindNotFound, verb+" "+name+" on "+d.vg.name, "no such logical volume")
	}
	return name, l, nil
}
