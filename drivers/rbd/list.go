package rbd

import (
	"context"

	"github.com/ember-storage/ember/drivers"
)

var _ drivers.Lister = (*Driver)(nil)

// ListVolumes implements drivers.Lister: the images of the pool named
// volume-<id> exactly (`rbd ls -l`). Snapshots, images renamed
// volume-<id>.deleted for their clones, and images in the trash (which
// `rbd ls` does not show) are not volumes.
func (d *Driver) ListVolumes(ctx context.Context) ([]string, error) {
	l, err := d.list(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range l {
		if e.Snapshot == "" {
			names = append(names, e.Image)
		}
	}
	return drivers.VolumeIDs(names), nil
}
