package remotefs

import (
	"context"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

var _ drivers.Lister = (*Driver)(nil)

// ListVolumes implements drivers.Lister: the volume files (volume-<id>,
// exactly) in the directory of every configured share, each share mounted
// first as for any operation. Snapshot overlays (volume-<id>.<snapshot
// id>), .info files, temporary files (volume-<id>.tmp-*) and foreign files
// are not volumes. Names are NUL-terminated (find -printf '%f\0'), so no
// file name can pass for two.
func (d *Driver) ListVolumes(ctx context.Context) ([]string, error) {
	var names []string
	for _, s := range d.cfg.Shares {
		dir, err := d.dir(ctx, s)
		if err != nil {
			return nil, err
		}
		// -ignore_readdir_race: a file deleted between readdir and stat
		// (a concurrent delete) is not an error, as in capacity. -H: a
		// share directory that is a symlink is listed (every other
		// operation reaches its files through the link); links inside it
		// are still not volumes.
		out, err := d.cmd(ctx, "find "+dir, "find", "-H", dir, "-ignore_readdir_race", "-mindepth", "1", "-maxdepth", "1",
			"-type", "f", "-name", "volume-*", "-printf", `%f\0`)
		if err != nil {
			return nil, err
		}
		names = append(names, strings.Split(string(out.Stdout), "\x00")...)
	}
	return drivers.VolumeIDs(names), nil
}
