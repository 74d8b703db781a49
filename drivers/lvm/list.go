package lvm

import (
	"context"

	"github.com/ember-storage/ember/drivers"
)

var _ drivers.Lister = (*Driver)(nil)

// ListVolumes implements drivers.Lister: the LVs of the volume group named
// volume-<id> exactly (not _snapshot-<id>, clone-snap-<id>, the thin pool
// or foreign LVs).
func (d *Driver) ListVolumes(ctx context.Context) ([]string, error) {
	all, err := d.vg.list(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(all))
	for i, l := range all {
		names[i] = l.Name
	}
	return drivers.VolumeIDs(names), nil
}
