package lvm

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// ddBlockSize is Cinder's volume_dd_blocksize default.
const ddBlockSize = "1M"

// copyTimeout bounds a dd by its size: five minutes plus 10 MiB/s, so a copy
// that runs slowly still ends, and a host that hangs is given up on.
func copyTimeout(size int64) time.Duration {
	return 5*time.Minute + time.Duration(size/(10<<20))*time.Second
}

// supportsDirect is Cinder's check_for_odirect_support: a dd of zero blocks
// with the flag tells whether both ends accept O_DIRECT. /dev/zero never
// opens with iflag=direct, so that pair is not even tried.
func supportsDirect(ctx context.Context, ex drivers.Executor, src, dst, flag string) bool {
	if src == "/dev/zero" && flag == "iflag=direct" {
		return false
	}
	_, err := run(ctx, ex, drivers.Command{Args: []string{"dd", "count=0", "if=" + src, "of=" + dst, flag}})
	return err == nil
}

// copyVolume is Cinder's volume_utils.copy_volume: dd of size bytes with
// O_DIRECT on each side that accepts it (so a copy does not flush the host's
// page cache), fdatasync when the output is buffered and the data must be on
// disk before we report (sync), and sparse writes for thin targets.
func copyVolume(ctx context.Context, ex drivers.Executor, op, src, dst string, size int64, sync, sparse bool) error {
	args := []string{"dd", "if=" + src, "of=" + dst, "count=" + strconv.FormatInt(size, 10), "bs=" + ddBlockSize}
	direct := supportsDirect(ctx, ex, src, dst, "iflag=direct")
	if direct {
		args = append(args, "iflag=count_bytes,direct")
	} else {
		args = append(args, "iflag=count_bytes")
	}
	if supportsDirect(ctx, ex, src, dst, "oflag=direct") {
		args = append(args, "oflag=direct")
		direct = true
	}
	var conv []string
	if sync && !direct {
		conv = append(conv, "fdatasync")
	}
	if sparse {
		conv = append(conv, "sparse")
	}
	if len(conv) > 0 {
		args = append(args, "conv="+strings.Join(conv, ","))
	}
	_, err := run(ctx, ex, drivers.Command{Args: args, Timeout: copyTimeout(size)})
	return classify(op, err)
}

// clearBytes is how much of a device of size bytes volume_clear scrubs.
func (d *Driver) clearBytes(size int64) int64 {
	if clear := int64(d.opts.VolumeClearSize) << 20; clear > 0 && clear < size {
		return clear
	}
	return size
}

// clearDevice zeroes a thick LV before it is removed so that its extents do
// not carry one tenant's data to the next (Cinder's _clear_volume). Thin LVs
// are skipped: a thin pool hands out zeroed blocks. For a snapshot Cinder
// scrubs its copy-on-write store, the -cow device under /dev/mapper
// (Launchpad bug 1191812), since that is where the snapshot's own data lives.
func (d *Driver) clearDevice(ctx context.Context, vg *volumeGroup, l lv, isSnapshot bool) error {
	if d.opts.VolumeClear == "none" || vg.thin {
		return nil
	}
	dev := l.path(vg.name)
	if isSnapshot {
		dev = mapperPath(vg.name, l.Name) + "-cow"
	}
	return copyVolume(ctx, vg.ex, "clear "+l.Name+" on "+vg.name, "/dev/zero", dev, d.clearBytes(l.Size), true, false)
}

// mapperPath is the device-mapper name of an LV: VG and LV joined by '-',
// each '-' inside them doubled.
func mapperPath(vg, name string) string {
	return "/dev/mapper/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(name, "-", "--")
}
