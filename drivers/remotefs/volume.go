package remotefs

import (
	"context"
	"path"

	"github.com/ember-storage/ember/drivers"
)

// activeChain reads v's .info and the backing chain of its active file.
func (d *Driver) activeChain(ctx context.Context, op string, v volume) (snapInfo, chain, error) {
	info, err := d.readInfo(ctx, v)
	if err != nil {
		return nil, nil, err
	}
	c, err := d.mustReadChain(ctx, op, v, info[activeKey])
	if err != nil {
		return nil, nil, err
	}
	return info, c, nil
}

// existing checks a volume that is already there (a redelivered create):
// the same size is success, another a conflict. Its format is the
// backend's by construction: readChain opens the base as no other.
func (d *Driver) existing(ctx context.Context, op string, v volume, size int64) (drivers.ModelUpdate, error) {
	_, c, err := d.activeChain(ctx, op, v)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if got := c.active().VirtualSize; got != size {
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindConflict, op+" "+v.name,
			"exists on %s with %d bytes, requested %d", v.share, got, size)
	}
	return drivers.ModelUpdate{ProviderLocation: v.share}, nil
}

// place finds where a new volume goes: found is true when it exists already
// (on any share: a create retried after a crash must not make a second
// copy elsewhere).
func (d *Driver) place(ctx context.Context, id string, size int64) (v volume, found bool, err error) {
	v, found, err = d.locate(ctx, id, "")
	if err != nil || found {
		return v, found, err
	}
	share, err := d.chooseShare(ctx, size)
	if err != nil {
		return volume{}, false, err
	}
	v.share = share
	if v.dir, err = d.dir(ctx, share); err != nil {
		return volume{}, false, err
	}
	return v, false, nil
}

// CreateVolume makes an empty volume-<id> on the share with the most free
// space. The image is made under a temporary name and renamed, so a crash
// never leaves a half-written qcow2 header for a retry to trip over.
func (d *Driver) CreateVolume(ctx context.Context, vol drivers.Volume) (drivers.ModelUpdate, error) {
	if err := drivers.CheckID(vol.ID); err != nil {
		return drivers.ModelUpdate{}, err
	}
	size, err := drivers.Bytes(vol.SizeGB)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	v, found, err := d.place(ctx, vol.ID, size)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if found {
		return d.existing(ctx, "create", v, size)
	}
	tmp := v.tmp("create")
	if err := d.createImage(ctx, tmp, d.cfg.Format, size); err != nil {
		return drivers.ModelUpdate{}, err
	}
	if err := d.rename(ctx, tmp, v.base()); err != nil {
		return drivers.ModelUpdate{}, err
	}
	d.placed(v.share, size)
	return drivers.ModelUpdate{ProviderLocation: v.share}, nil
}

// DeleteVolume removes volume-<id>, its .info and leftovers. A volume that
// still has snapshots is refused (KindBusy), as Cinder refuses it: deleting
// it would silently destroy them. A volume already gone is success.
func (d *Driver) DeleteVolume(ctx context.Context, vol drivers.Volume) error {
	v, found, err := d.locate(ctx, vol.ID, vol.ProviderLocation)
	if err != nil || !found {
		return err
	}
	info, err := d.readInfo(ctx, v)
	if err != nil {
		return err
	}
	if info.snapshots() {
		return drivers.Errorf(drivers.KindBusy, "delete "+v.name, "the volume has snapshots; delete them first")
	}
	return d.removeAll(ctx, v)
}

// PurgeVolume removes volume-<id> with its snapshot overlays, .info and
// leftovers (drivers.Purger: reconcile's removal of an orphan). Gone is
// success.
func (d *Driver) PurgeVolume(ctx context.Context, vol drivers.Volume) error {
	v, found, err := d.locate(ctx, vol.ID, vol.ProviderLocation)
	if err != nil || !found {
		return err
	}
	return d.removeAll(ctx, v)
}

// removeAll deletes every file of v. The base goes last: while it exists, a
// retry finds the volume and sweeps again.
func (d *Driver) removeAll(ctx context.Context, v volume) error {
	_, err := d.cmd(ctx, "delete "+v.name, "find", v.dir, "-maxdepth", "1", "-name", v.name+".*", "-delete")
	if err != nil {
		return err
	}
	return d.remove(ctx, v.base())
}

// ExtendVolume grows the volume to newSizeGB. With snapshots, the active
// overlay is resized (Cinder refuses this): qcow2 reads past the end of a
// shorter backing file as zeros, and a later commit of the overlay grows
// its backing file, so the snapshots keep their own size and content.
// Already that large is success; larger is a conflict (no shrinking).
func (d *Driver) ExtendVolume(ctx context.Context, vol drivers.Volume, newSizeGB int) error {
	size, err := drivers.Bytes(newSizeGB)
	if err != nil {
		return err
	}
	v, err := d.mustLocate(ctx, "extend", vol.ID, vol.ProviderLocation)
	if err != nil {
		return err
	}
	_, c, err := d.activeChain(ctx, "extend", v)
	if err != nil {
		return err
	}
	a := c.active()
	switch {
	case a.VirtualSize == size:
		return nil
	case a.VirtualSize > size:
		return drivers.Errorf(drivers.KindConflict, "extend "+v.name, "volume is %d bytes, larger than %d", a.VirtualSize, size)
	}
	return d.resize(ctx, v.path(a.file()), a.Format, size)
}

// CreateVolumeFromSnapshot copies the snapshot's point-in-time image (the
// backing file of the overlay made when it was taken) into a new volume.
func (d *Driver) CreateVolumeFromSnapshot(ctx context.Context, vol drivers.Volume, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	if err := drivers.CheckID(vol.ID); err != nil {
		return drivers.ModelUpdate{}, err
	}
	if err := drivers.CheckID(s.ID); err != nil {
		return drivers.ModelUpdate{}, err
	}
	src, err := d.mustLocate(ctx, "create from snapshot "+s.ID, s.VolumeID, s.ProviderLocation)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	info, c, err := d.activeChain(ctx, "create from snapshot", src)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	overlay, ok := info[s.ID]
	if !ok {
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindNotFound, "create from snapshot "+s.ID, "%s has no such snapshot", src.name)
	}
	i := c.index(overlay)
	if i < 0 || i+1 >= len(c) {
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindBackend, "create from snapshot "+s.ID,
			"overlay %s is not in the backing chain of %s", overlay, info[activeKey])
	}
	return d.copyVolume(ctx, vol, src, c[i+1])
}

// CreateClonedVolume copies the source volume's current content (its active
// image with the chain below it) into a new volume. The source must not be
// attached: the copy is taken offline, as all of this driver's work is.
func (d *Driver) CreateClonedVolume(ctx context.Context, vol drivers.Volume, srcVol drivers.Volume) (drivers.ModelUpdate, error) {
	if err := drivers.CheckID(vol.ID); err != nil {
		return drivers.ModelUpdate{}, err
	}
	src, err := d.mustLocate(ctx, "clone", srcVol.ID, srcVol.ProviderLocation)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	_, c, err := d.activeChain(ctx, "clone", src)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.copyVolume(ctx, vol, src, c.active())
}

// copyVolume makes vol a standalone copy of the image from (in src's
// directory), grown to vol's size. qemu-img's progress goes to ctx's
// reporter (drivers.WithProgress).
func (d *Driver) copyVolume(ctx context.Context, vol drivers.Volume, src volume, from image) (drivers.ModelUpdate, error) {
	size, err := drivers.Bytes(vol.SizeGB)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if from.VirtualSize > size {
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindInvalid, "copy "+from.file(),
			"source is %d bytes, larger than the requested %d", from.VirtualSize, size)
	}
	v, found, err := d.place(ctx, vol.ID, size)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if found {
		return d.existing(ctx, "create", v, size)
	}
	tmp := v.tmp("create")
	if err := d.copyImage(ctx, path.Join(src.dir, from.file()), from.Format, tmp, d.cfg.Format); err != nil {
		_ = d.remove(context.WithoutCancel(ctx), tmp)
		return drivers.ModelUpdate{}, err
	}
	if from.VirtualSize < size {
		if err := d.resize(ctx, tmp, d.cfg.Format, size); err != nil {
			return drivers.ModelUpdate{}, err
		}
	}
	if err := d.rename(ctx, tmp, v.base()); err != nil {
		return drivers.ModelUpdate{}, err
	}
	d.placed(v.share, size)
	return drivers.ModelUpdate{ProviderLocation: v.share}, nil
}
