package rbd

import (
	"context"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// cloneSnapSuffix names the snapshot that CreateClonedVolume takes of its
// source: <source image>@volume-<new id>.clone_snap, as Cinder names it. It
// belongs to the clone, not to the user, so it never makes its volume busy.
const cloneSnapSuffix = ".clone_snap"

// deletedSuffix marks a deleted volume whose data its clones still need.
const deletedSuffix = ".deleted"

// CreateVolume makes the image volume-<id> with only the layering feature,
// which every librbd client (qemu, krbd) can open. An image of the same size
// is success (a redelivered create); another size is a conflict.
func (d *Driver) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	size, err := drivers.Bytes(v.SizeGB)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	for attempt := 0; ; attempt++ {
		ii, exists, err := d.info(ctx, name)
		if err != nil {
			return drivers.ModelUpdate{}, err
		}
		if exists {
			if ii.Size != size {
				return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindConflict, "rbd create "+name,
					"exists with %d bytes, requested %d", ii.Size, size)
			}
			return d.model(), nil
		}
		_, err = d.run(ctx, "rbd create "+name, d.rbdCmd("create", "--no-progress", "--size", mib(v.SizeGB), "--image-feature", "layering", name))
		// EEXIST: another delivery created it between info and create; look again.
		if errnoIs(err, errEEXIST) && attempt == 0 {
			continue
		}
		if err != nil {
			return drivers.ModelUpdate{}, err
		}
		return d.model(), nil
	}
}

func (d *Driver) model() drivers.ModelUpdate { return drivers.ModelUpdate{ProviderLocation: d.o.Pool} }

// DeleteVolume removes volume-<id>; an image already gone is success.
//
// Decisions, as Cinder's rbd.py makes them:
//   - A volume with user snapshots is busy (Cinder's VolumeIsBusy): the
//     snapshots must be deleted first. Nothing is removed.
//   - The ".clone_snap" snapshots that CreateClonedVolume took of this volume
//     are removed when no clone uses them any more. If a clone still does,
//     the image is renamed volume-<id>.deleted and the delete succeeds: the
//     user's volume is gone, its data stays for the clones, and the renamed
//     image is removed when its last clone is (see deleteParentRefs).
//   - An image that a client still has open (watchers) is busy.
func (d *Driver) DeleteVolume(ctx context.Context, v drivers.Volume) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	op := "rbd rm " + name
	snaps, exists, err := d.snapshots(ctx, name)
	if err != nil || !exists {
		return err
	}
	var user []string
	for _, s := range snaps {
		if !strings.HasSuffix(s.Name, cloneSnapSuffix) {
			user = append(user, s.Name)
		}
	}
	if len(user) > 0 {
		return drivers.Errorf(drivers.KindBusy, op, "volume has snapshots %s: delete them first", strings.Join(user, ", "))
	}
	ii, exists, err := d.info(ctx, name)
	if err != nil || !exists {
		return err
	}
	keep := false
	for _, s := range snaps {
		ch, err := d.children(ctx, name, s.Name)
		if err != nil && !drivers.IsKind(err, drivers.KindNotFound) {
			return err
		}
		if len(ch) > 0 {
			keep = true
			continue
		}
		if err := d.removeSnap(ctx, name, s); err != nil {
			return err
		}
	}
	if keep {
		_, err := d.run(ctx, "rbd rename "+name, d.rbdCmd("rename", name, name+deletedSuffix))
		return err
	}
	_, err = d.run(ctx, op, d.rbdCmd("rm", "--no-progress", name))
	if drivers.IsKind(err, drivers.KindNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if ii.Parent != nil && ii.Parent.Pool == d.o.Pool {
		return d.deleteParentRefs(ctx, *ii.Parent)
	}
	return nil
}

// deleteParentRefs removes what a deleted clone leaves behind (Cinder's
// _delete_clone_parent_refs): when its parent is a volume renamed
// .deleted, the snapshot the clone was made from goes once it has no other
// child, and the parent itself once it has no snapshot left, then the same
// for the parent's parent.
func (d *Driver) deleteParentRefs(ctx context.Context, p parentSpec) error {
	for strings.HasSuffix(p.Image, deletedSuffix) {
		ch, err := d.children(ctx, p.Image, p.Snapshot)
		if drivers.IsKind(err, drivers.KindNotFound) {
			return nil
		}
		if err != nil || len(ch) > 0 {
			return err
		}
		snaps, exists, err := d.snapshots(ctx, p.Image)
		if err != nil || !exists {
			return err
		}
		left := len(snaps)
		if s, ok := findSnap(snaps, p.Snapshot); ok {
			if err := d.removeSnap(ctx, p.Image, s); err != nil {
				return err
			}
			left--
		}
		if left > 0 { // other clones still hang on other snapshots
			return nil
		}
		ii, exists, err := d.info(ctx, p.Image)
		if err != nil || !exists {
			return err
		}
		_, err = d.run(ctx, "rbd rm "+p.Image, d.rbdCmd("rm", "--no-progress", p.Image))
		if err != nil && !drivers.IsKind(err, drivers.KindNotFound) {
			return err
		}
		if ii.Parent == nil || ii.Parent.Pool != d.o.Pool {
			return nil
		}
		p = *ii.Parent
	}
	return nil
}

// ExtendVolume grows volume-<id> to newSizeGB. A volume already that large
// is success; a larger one is a conflict (rbd could shrink, Cinder never does).
func (d *Driver) ExtendVolume(ctx context.Context, v drivers.Volume, newSizeGB int) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	size, err := drivers.Bytes(newSizeGB)
	if err != nil {
		return err
	}
	ii, exists, err := d.info(ctx, name)
	switch {
	case err != nil:
		return err
	case !exists:
		return drivers.Errorf(drivers.KindNotFound, "rbd resize "+name, "no such image in pool %s", d.o.Pool)
	case ii.Size == size:
		return nil
	case ii.Size > size:
		return drivers.Errorf(drivers.KindConflict, "rbd resize "+name, "image is %d bytes, larger than %d", ii.Size, size)
	}
	return d.resize(ctx, name, newSizeGB)
}

func (d *Driver) resize(ctx context.Context, name string, sizeGB int) error {
	_, err := d.run(ctx, "rbd resize "+name, d.rbdCmd("resize", "--no-progress", "--size", mib(sizeGB), name))
	return err
}
