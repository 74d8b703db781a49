package sheepdog

import (
	"context"

	"github.com/ember-storage/ember/drivers"
)

var _ drivers.Lister = (*Driver)(nil)

// ListVolumes implements drivers.Lister: the working VDIs (and clones)
// named volume-<id> exactly; snapshots ("s" lines) are not volumes. The
// cluster must be running: a cluster still waiting for its nodes would
// answer an empty or partial list.
func (d *Driver) ListVolumes(ctx context.Context) ([]string, error) {
	if err := d.checkCluster(ctx); err != nil {
		return nil, err
	}
	l, err := d.list(ctx, "")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, v := range l {
		if v.Type != "s" {
			names = append(names, v.Name)
		}
	}
	return drivers.VolumeIDs(names), nil
}
