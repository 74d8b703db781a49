package remotefs

import (
	"context"

	"github.com/ember-storage/ember/drivers"
)

// snapshotFile is the overlay made when snapshot sid is taken:
// volume-<id>.<snapshot_id>, as Cinder names it.
func (v volume) snapshotFile(sid string) string { return v.name + "." + sid }

// CreateSnapshot freezes the active file: a new qcow2 overlay on top of it
// becomes active, and the old active file is now the snapshot's image.
// Offline only: nothing may write to the volume meanwhile (an attached
// volume needs Nova-assisted snapshots, which Ember does not do).
func (d *Driver) CreateSnapshot(ctx context.Context, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	if err := drivers.CheckID(s.ID); err != nil {
		return drivers.ModelUpdate{}, err
	}
	v, err := d.mustLocate(ctx, "create snapshot "+s.ID, s.VolumeID, s.ProviderLocation)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	info, c, err := d.activeChain(ctx, "create snapshot "+s.ID, v)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if _, ok := info[s.ID]; ok {
		return drivers.ModelUpdate{ProviderLocation: v.share}, nil // a redelivery
	}
	// A file of that name not in .info is a leftover of a create that died
	// before it wrote .info: nothing reads through it, and qemu-img create
	// overwrites it.
	file := v.snapshotFile(s.ID)
	active := c.active()
	if err := d.createOverlay(ctx, v.path(file), active.file(), active.Format); err != nil {
		return drivers.ModelUpdate{}, err
	}
	info[s.ID] = file
	info[activeKey] = file
	if err := d.writeInfo(ctx, v, info); err != nil {
		return drivers.ModelUpdate{}, err
	}
	return drivers.ModelUpdate{ProviderLocation: v.share}, nil
}

// DeleteSnapshot merges the snapshot's overlay into its backing file and
// drops it from the chain, offline, as Cinder's _delete_snapshot:
//
//   - the overlay is the active file (the newest snapshot): commit it into
//     its backing file, which becomes active again;
//   - otherwise (a middle or the oldest snapshot): commit it into its backing
//     file, then rebase the overlay above it (the next snapshot's overlay, or
//     the active file) onto that backing file, without copying (-u).
//
// The steps are ordered so that a retry after a crash at any point finishes
// the job: commit (repeatable: it writes the same data again), rebase
// (detected as done when the overlay has left the active chain), .info
// written, and only then the overlay file removed. A snapshot not in .info
// is success; its file, if a crash left it, is removed.
func (d *Driver) DeleteSnapshot(ctx context.Context, s drivers.Snapshot) error {
	if err := drivers.CheckID(s.ID); err != nil {
		return err
	}
	v, found, err := d.locate(ctx, s.VolumeID, s.ProviderLocation)
	if err != nil || !found {
		return err // the volume is gone, and its snapshots with it
	}
	op := "delete snapshot " + s.ID
	info, c, err := d.activeChain(ctx, op, v)
	if err != nil {
		return err
	}
	file, ok := info[s.ID]
	if !ok {
		leftover := v.snapshotFile(s.ID)
		if c.index(leftover) >= 0 {
			return drivers.Errorf(drivers.KindBackend, op, "%s is not in %s.info but is in the volume's backing chain", leftover, v.name)
		}
		return d.remove(ctx, v.path(leftover))
	}
	i := c.index(file)
	switch {
	case i == 0:
		// The newest snapshot: its overlay is active. Its backing file
		// holds the snapshot's data, which nobody needs any more.
		if err := d.commit(ctx, v.path(file)); err != nil {
			return err
		}
		info[activeKey] = c[1].file()
	case i > 0:
		// c[i-1] is the higher file: the overlay that has this one as its
		// backing file (the next snapshot's, or the active one).
		base := c[i+1]
		if err := d.commit(ctx, v.path(file)); err != nil {
			return err
		}
		if err := d.rebase(ctx, v.path(c[i-1].file()), base.file(), base.Format); err != nil {
			return err
		}
	default:
		// Not in the active chain: a previous attempt committed and rebased
		// and died before .info was written; or the file is stale. Either
		// way nothing reads through it.
	}
	delete(info, s.ID)
	if err := d.writeInfo(ctx, v, info); err != nil {
		return err
	}
	return d.remove(ctx, v.path(file))
}
