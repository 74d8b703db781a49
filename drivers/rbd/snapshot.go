package rbd

import (
	"context"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// snapNames builds volume-<volume id> and snapshot-<snapshot id> for s.
func snapNames(s drivers.Snapshot) (image, snap string, err error) {
	if image, err = drivers.VolumeName(s.VolumeID); err != nil {
		return "", "", err
	}
	snap, err = drivers.SnapshotName(s.ID)
	return image, snap, err
}

// CreateSnapshot takes volume-<vid>@snapshot-<id>; a snapshot that exists
// is success. It is not protected here: CreateVolumeFromSnapshot protects it
// when it is first cloned.
func (d *Driver) CreateSnapshot(ctx context.Context, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	image, snap, err := snapNames(s)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	spec := image + "@" + snap
	snaps, exists, err := d.snapshots(ctx, image)
	switch {
	case err != nil:
		return drivers.ModelUpdate{}, err
	case !exists:
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindNotFound, "rbd snap create "+spec, "no volume image %s in pool %s", image, d.o.Pool)
	}
	if _, ok := findSnap(snaps, snap); ok {
		return d.model(), nil
	}
	_, err = d.run(ctx, "rbd snap create "+spec, d.rbdCmd("snap", "create", "--no-progress", spec))
	if errnoIs(err, errEEXIST) { // a concurrent delivery took it
		err = nil
	}
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.model(), nil
}

// DeleteSnapshot unprotects and removes volume-<vid>@snapshot-<id>; a
// snapshot (or volume) already gone is success. A snapshot that volumes
// were cloned from is busy (Cinder's SnapshotIsBusy) until they are deleted
// or flattened: with clone v2 librbd would otherwise move it to the trash
// and report success, hiding that its data is still in use.
func (d *Driver) DeleteSnapshot(ctx context.Context, s drivers.Snapshot) error {
	image, snap, err := snapNames(s)
	if err != nil {
		return err
	}
	snaps, exists, err := d.snapshots(ctx, image)
	if err != nil || !exists {
		return err
	}
	si, ok := findSnap(snaps, snap)
	if !ok {
		return nil
	}
	ch, err := d.children(ctx, image, snap)
	if err != nil && !drivers.IsKind(err, drivers.KindNotFound) {
		return err
	}
	if len(ch) > 0 {
		names := make([]string, len(ch))
		for i, c := range ch {
			names[i] = c.Pool + "/" + c.Image
		}
		return drivers.Errorf(drivers.KindBusy, "rbd snap rm "+image+"@"+snap,
			"snapshot has dependent volumes %s", strings.Join(names, ", "))
	}
	return d.removeSnap(ctx, image, si)
}

// CreateVolumeFromSnapshot clones volume-<sid's volume>@snapshot-<sid> into
// volume-<id>: copy-on-write, so it takes no time and no space until
// written. With flatten_volume_from_snapshot the clone is then made a full
// copy, and it grows to the requested size when that is larger.
func (d *Driver) CreateVolumeFromSnapshot(ctx context.Context, v drivers.Volume, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	srcImage, snap, err := snapNames(s)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.clone(ctx, v, srcImage, snap, s.VolumeSizeGB, false, d.o.FlattenVolumeFromSnapshot)
}

// CreateClonedVolume makes volume-<id> a copy of src as Cinder's
// create_cloned_volume does: it snapshots the source as
// <source>@volume-<id>.clone_snap and clones that snapshot. The snapshot is
// named after the new volume, so a redelivered request finds its own
// snapshot and concurrent clones of one source do not share one. It lives
// as long as the clone does (see DeleteVolume).
func (d *Driver) CreateClonedVolume(ctx context.Context, v drivers.Volume, src drivers.Volume) (drivers.ModelUpdate, error) {
	dst, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	srcImage, err := drivers.VolumeName(src.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.clone(ctx, v, srcImage, dst+cloneSnapSuffix, src.SizeGB, true, false)
}

// clone makes volume-<v.ID> a clone of srcImage@snap, taking the snapshot
// first when takeSnap is set. Every step checks before it acts, so a request
// redelivered after a crash at any point finishes the work: an image that is
// already a clone of the same snapshot is resumed (flattened, resized), any
// other image of that name is a conflict.
func (d *Driver) clone(ctx context.Context, v drivers.Volume, srcImage, snap string, srcSizeGB int, takeSnap, flatten bool) (drivers.ModelUpdate, error) {
	dst, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	size, err := drivers.Bytes(v.SizeGB)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	spec := srcImage + "@" + snap
	op := "rbd clone " + spec + " " + dst
	if srcSizeGB > v.SizeGB {
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindInvalid, op, "volume of %d GB is smaller than its source of %d GB", v.SizeGB, srcSizeGB)
	}
	ii, exists, err := d.info(ctx, dst)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if !exists {
		snaps, srcExists, err := d.snapshots(ctx, srcImage)
		if err != nil {
			return drivers.ModelUpdate{}, err
		}
		if !srcExists {
			return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindNotFound, op, "no source image %s in pool %s", srcImage, d.o.Pool)
		}
		si, ok := findSnap(snaps, snap)
		if !ok && !takeSnap {
			return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindNotFound, op, "no snapshot %s", spec)
		}
		if !ok {
			if _, err := d.run(ctx, "rbd snap create "+spec, d.rbdCmd("snap", "create", "--no-progress", spec)); err != nil && !errnoIs(err, errEEXIST) {
				return drivers.ModelUpdate{}, err
			}
			si = snapInfo{Name: snap, Protected: "false"}
		}
		if err := d.protect(ctx, srcImage, si); err != nil {
			return drivers.ModelUpdate{}, err
		}
		// Pools spelled out: rbd clone puts an unqualified destination in
		// the default pool "rbd", whatever --pool says.
		_, err = d.run(ctx, op, d.rbdCmd("clone", "--image-feature", "layering", d.o.Pool+"/"+spec, d.o.Pool+"/"+dst))
		if err != nil && !errnoIs(err, errEEXIST) {
			return drivers.ModelUpdate{}, err
		}
		if ii, exists, err = d.info(ctx, dst); err != nil {
			return drivers.ModelUpdate{}, err
		}
		if !exists {
			return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindBackend, op, "clone reported success but %s does not exist", dst)
		}
	}
	fromSnap := ii.Parent != nil && ii.Parent.Pool == d.o.Pool && ii.Parent.Image == srcImage && ii.Parent.Snapshot == snap
	switch {
	case fromSnap:
	case ii.Parent == nil && flatten && ii.Size <= size:
		// A flattened clone from an earlier delivery: only the resize may be left.
	default:
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindConflict, op, "%s exists and is not a clone of %s", dst, spec)
	}
	if flatten && ii.Parent != nil {
		if _, err := d.run(ctx, "rbd flatten "+dst, d.rbdCmd("flatten", "--no-progress", dst)); err != nil {
			return drivers.ModelUpdate{}, err
		}
	}
	switch {
	case ii.Size < size:
		if err := d.resize(ctx, dst, v.SizeGB); err != nil {
			return drivers.ModelUpdate{}, err
		}
	case ii.Size > size:
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindConflict, op, "%s exists with %d bytes, requested %d", dst, ii.Size, size)
	}
	return d.model(), nil
}
