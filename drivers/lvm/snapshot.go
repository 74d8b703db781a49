package lvm

import (
	"context"

	"github.com/ember-storage/ember/drivers"
)

// snapshotLV is the LV name of a snapshot: Cinder's snapshot-<id> with the
// leading underscore Cinder's _escape_snapshot adds, because LVM refuses
// names starting with "snapshot" ("Names starting "snapshot" are reserved").
func snapshotLV(id string) (string, error) {
	name, err := drivers.SnapshotName(id)
	if err != nil {
		return "", err
	}
	return "_" + name, nil
}

// CreateSnapshot makes an LVM snapshot of the volume (Cinder's
// create_snapshot). A snapshot that exists of the same volume is success;
// of another volume a conflict.
func (d *Driver) CreateSnapshot(ctx context.Context, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	name, err := snapshotLV(s.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	origin, err := drivers.VolumeName(s.VolumeID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if _, err := d.ensureSnapshot(ctx, name, origin); err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.providerLocation(d.vg), nil
}

// ensureSnapshot returns the snapshot name of origin, creating it unless it
// exists.
func (d *Driver) ensureSnapshot(ctx context.Context, name, origin string) (lv, error) {
	op := "lvcreate " + name + " on " + d.vg.name
	if l, ok, err := d.vg.lookup(ctx, name); err != nil {
		return lv{}, err
	} else if ok {
		if l.Origin != origin {
			return lv{}, drivers.Errorf(drivers.KindConflict, op, "%s exists as a snapshot of %q, requested of %s", name, l.Origin, origin)
		}
		return l, nil
	}
	src, ok, err := d.vg.lookup(ctx, origin)
	if err != nil {
		return lv{}, err
	}
	if !ok {
		return lv{}, drivers.Errorf(drivers.KindNotFound, op, "origin %s does not exist", origin)
	}
	// A snapshot reads as large as its origin.
	return lv{Name: name, Size: src.Size, Origin: origin}, d.vg.snapshot(ctx, name, src)
}

// DeleteSnapshot scrubs (volume_clear, thick only) and removes the snapshot;
// one that is gone is success.
func (d *Driver) DeleteSnapshot(ctx context.Context, s drivers.Snapshot) error {
	name, err := snapshotLV(s.ID)
	if err != nil {
		return err
	}
	return d.deleteSnapshot(ctx, name)
}

func (d *Driver) deleteSnapshot(ctx context.Context, name string) error {
	l, ok, err := d.vg.lookup(ctx, name)
	if err != nil || !ok {
		return err
	}
	// Zeroing the whole copy-on-write store is slow (Cinder's TODO says so),
	// but it is the only place a snapshot's data lives.
	if err := d.clearDevice(ctx, d.vg, l, true); err != nil {
		return err
	}
	return d.vg.remove(ctx, name)
}

// CreateVolumeFromSnapshot is Cinder's create_volume_from_snapshot. Thin:
// a thin snapshot of the snapshot, grown to the requested size. Thick: a new
// LV filled by dd from the (activated) snapshot.
func (d *Driver) CreateVolumeFromSnapshot(ctx context.Context, v drivers.Volume, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	snap, err := snapshotLV(s.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if _, err := drivers.Bytes(v.SizeGB); err != nil {
		return drivers.ModelUpdate{}, err
	}
	op := "create " + name + " from " + snap + " on " + d.vg.name
	src, ok, err := d.vg.lookup(ctx, snap)
	switch {
	case err != nil:
		return drivers.ModelUpdate{}, err
	case !ok:
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindNotFound, op, "snapshot %s does not exist", snap)
	case src.Size > int64(v.SizeGB)*drivers.GiB:
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindInvalid, op, "volume of %d GiB is smaller than the snapshot's %s", v.SizeGB, gib(src.Size))
	}
	if d.thin() {
		return d.providerLocation(d.vg), d.thinCopy(ctx, op, name, src, v.SizeGB, true)
	}
	state, err := d.ensureLV(ctx, d.vg, name, v.SizeGB, d.opts.LVMMirrors, true)
	if err != nil || state == lvComplete {
		return d.providerLocation(d.vg), err
	}
	// Some LVM configurations do not activate snapshots by themselves.
	if err := d.vg.activate(ctx, snap, false); err != nil {
		return drivers.ModelUpdate{}, err
	}
	if err := d.fill(ctx, op, d.vg, src, d.vg, name); err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.providerLocation(d.vg), nil
}

// fill copies src into the pending LV dst and then marks it complete.
func (d *Driver) fill(ctx context.Context, op string, srcVG *volumeGroup, src lv, dstVG *volumeGroup, dst string) error {
	if err := copyVolume(ctx, d.ex, op, src.path(srcVG.name), "/dev/"+dstVG.name+"/"+dst, src.Size, false, dstVG.thin); err != nil {
		return err
	}
	return dstVG.deleteTag(ctx, dst, copyPendingTag)
}

// thinCopy makes name a thin snapshot of src (a snapshot or a volume),
// extends it to sizeGB and activates it for good, as Cinder does for thin
// clones: no data is copied, the pool shares the blocks.
func (d *Driver) thinCopy(ctx context.Context, op, name string, src lv, sizeGB int, srcIsSnapshot bool) error {
	want := int64(sizeGB) * drivers.GiB
	l, ok, err := d.vg.lookup(ctx, name)
	if err != nil {
		return err
	}
	if ok && l.Size == want {
		return nil
	}
	if ok && (l.Origin != src.Name || l.Size != src.Size) {
		return drivers.Errorf(drivers.KindConflict, op, "%s exists with %s (origin %q)", name, gib(l.Size), l.Origin)
	}
	if !ok {
		if err := d.vg.snapshot(ctx, name, src); err != nil {
			return err
		}
	}
	if want > src.Size {
		if err := d.vg.extend(ctx, name, sizeGB); err != nil {
			return err
		}
	}
	if srcIsSnapshot {
		if err := d.vg.activate(ctx, src.Name, false); err != nil {
			return err
		}
	}
	return d.vg.activate(ctx, name, true)
}

// CreateClonedVolume is Cinder's create_cloned_volume. Thin: a thin snapshot
// of the source. Thick: through a temporary snapshot clone-snap-<id>, so the
// copy is of one point in time while the source stays usable; the temporary
// snapshot is removed whether the copy succeeded or not.
func (d *Driver) CreateClonedVolume(ctx context.Context, v drivers.Volume, srcVol drivers.Volume) (drivers.ModelUpdate, error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	srcName, err := drivers.VolumeName(srcVol.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if _, err := drivers.Bytes(v.SizeGB); err != nil {
		return drivers.ModelUpdate{}, err
	}
	op := "clone " + srcName + " to " + name + " on " + d.vg.name
	src, ok, err := d.vg.lookup(ctx, srcName)
	switch {
	case err != nil:
		return drivers.ModelUpdate{}, err
	case !ok:
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindNotFound, op, "source volume %s does not exist", srcName)
	case src.Size > int64(v.SizeGB)*drivers.GiB:
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindInvalid, op, "volume of %d GiB is smaller than the source's %s", v.SizeGB, gib(src.Size))
	}
	if d.thin() {
		return d.providerLocation(d.vg), d.thinCopy(ctx, op, name, src, v.SizeGB, false)
	}
	if l, ok, err := d.vg.lookup(ctx, name); err != nil {
		return drivers.ModelUpdate{}, err
	} else if ok && !hasTag(l.Tags, copyPendingTag) {
		if l.Size != int64(v.SizeGB)*drivers.GiB {
			return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindConflict, op, "%s exists with %s", name, gib(l.Size))
		}
		return d.providerLocation(d.vg), nil
	}
	temp := "clone-snap-" + v.ID
	snap, err := d.ensureSnapshot(ctx, temp, srcName)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	err = d.cloneThroughSnapshot(ctx, op, name, snap, v.SizeGB)
	// Cleanup uses its own context: a cancelled copy must still not leave
	// the source with a snapshot (which would make it undeletable).
	if derr := d.deleteSnapshot(context.WithoutCancel(ctx), temp); err == nil {
		err = derr
	}
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.providerLocation(d.vg), nil
}

func (d *Driver) cloneThroughSnapshot(ctx context.Context, op, name string, snap lv, sizeGB int) error {
	state, err := d.ensureLV(ctx, d.vg, name, sizeGB, d.opts.LVMMirrors, true)
	if err != nil || state == lvComplete {
		return err
	}
	if err := d.vg.activate(ctx, snap.Name, false); err != nil {
		return err
	}
	return d.fill(ctx, op, d.vg, snap, d.vg, name)
}
