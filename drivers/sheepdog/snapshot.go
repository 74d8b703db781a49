package sheepdog

import (
	"context"
	"errors"
	"strconv"

	"github.com/ember-storage/ember/drivers"
)

// tempSnapPrefix names the snapshot CreateClonedVolume takes of its source:
// Cinder's "temp-snapshot-" prefix, but followed by the new volume's name
// instead of the source's, so that a redelivered request finds its own
// snapshot and two clones of one source do not collide on one tag.
const tempSnapPrefix = "temp-snapshot-"

func snapNames(s drivers.Snapshot) (vdiName, tag string, err error) {
	if vdiName, err = drivers.VolumeName(s.VolumeID); err != nil {
		return "", "", err
	}
	tag, err = drivers.SnapshotName(s.ID)
	return vdiName, tag, err
}

// CreateSnapshot tags a snapshot snapshot-<id> of volume-<vid> (`dog vdi
// snapshot -s <tag> <name>`). A snapshot with that tag is success.
func (d *Driver) CreateSnapshot(ctx context.Context, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	name, tag, err := snapNames(s)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if err := d.checkCluster(ctx); err != nil {
		return drivers.ModelUpdate{}, err
	}
	if err := d.snapshot(ctx, name, tag); err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.model(), nil
}

func (d *Driver) snapshot(ctx context.Context, name, tag string) error {
	_, err := d.run(ctx, "dog vdi snapshot "+name+" -s "+tag, d.dogCmd("vdi", "snapshot", "-s", tag, name))
	// "Failed to create snapshot for <name>, maybe snapshot id (0) or tag
	// (<tag>) is existed": the snapshot a redelivered request took before.
	if drivers.IsKind(err, drivers.KindConflict) {
		return nil
	}
	return err
}

// DeleteSnapshot deletes the snapshot tagged snapshot-<id> of volume-<vid>;
// a snapshot or volume already gone is success. dog reports both on stderr
// only, exiting 0 (runDelete).
func (d *Driver) DeleteSnapshot(ctx context.Context, s drivers.Snapshot) error {
	name, tag, err := snapNames(s)
	if err != nil {
		return err
	}
	return d.deleteSnapshot(ctx, name, tag)
}

func (d *Driver) deleteSnapshot(ctx context.Context, name, tag string) error {
	err := d.runDelete(ctx, "dog vdi delete "+name+" -s "+tag, d.dogCmd("vdi", "delete", "-s", tag, name))
	if drivers.IsKind(err, drivers.KindNotFound) {
		return nil
	}
	return err
}

// CreateVolumeFromSnapshot clones the snapshot into volume-<id> (`dog vdi
// clone -s <tag> <source> <name>`: copy-on-write) and grows it to the
// requested size when that is larger than the snapshot.
func (d *Driver) CreateVolumeFromSnapshot(ctx context.Context, v drivers.Volume, s drivers.Snapshot) (drivers.ModelUpdate, error) {
	src, tag, err := snapNames(s)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if err := d.checkCluster(ctx); err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.clone(ctx, v, src, tag, s.VolumeSizeGB)
}

// CreateClonedVolume copies src into volume-<id> as Cinder's
// create_cloned_volume does: a temporary snapshot of the source, a clone of
// it, and the temporary snapshot deleted whether or not the clone worked.
// The clone keeps the data it shares with the snapshot after the delete.
func (d *Driver) CreateClonedVolume(ctx context.Context, v drivers.Volume, src drivers.Volume) (drivers.ModelUpdate, error) {
	dst, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	srcName, err := drivers.VolumeName(src.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if err := d.checkCluster(ctx); err != nil {
		return drivers.ModelUpdate{}, err
	}
	tag := tempSnapPrefix + dst
	if err := d.snapshot(ctx, srcName, tag); err != nil {
		return drivers.ModelUpdate{}, err
	}
	mu, err := d.clone(ctx, v, srcName, tag, src.SizeGB)
	if derr := d.deleteSnapshot(ctx, srcName, tag); derr != nil {
		// The clone stands; a leftover snapshot is named after it and is
		// deleted by the retry that this error causes.
		return drivers.ModelUpdate{}, errors.Join(err, derr)
	}
	return mu, err
}

// clone makes volume-<id> a clone of src tagged tag, resized to v.SizeGB.
// An existing volume of that name is resumed when it is a clone ("c") no
// larger than requested (a redelivery after the clone, before the resize),
// success when it has the requested size, and a conflict otherwise.
func (d *Driver) clone(ctx context.Context, v drivers.Volume, src, tag string, srcSizeGB int) (drivers.ModelUpdate, error) {
	dst, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	size, err := drivers.Bytes(v.SizeGB)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	op := "dog vdi clone " + src + " -s " + tag + " " + dst
	if srcSizeGB > v.SizeGB {
		return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindInvalid, op, "volume of %d GB is smaller than its source of %d GB", v.SizeGB, srcSizeGB)
	}
	cur, exists, err := d.current(ctx, dst)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if !exists {
		_, err = d.run(ctx, op, d.dogCmd("vdi", "clone", "-s", tag, src, dst))
		if err == nil {
			cur, exists = vdi{Type: "c", Name: dst, Size: int64(srcSizeGB) * drivers.GiB}, true
		} else if !drivers.IsKind(err, drivers.KindConflict) { // not "VDI exists already"
			return drivers.ModelUpdate{}, err
		} else if cur, exists, err = d.current(ctx, dst); err != nil || !exists {
			return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindBackend, op, "dog reported %s exists, but it is not listed (%v)", dst, err)
		}
	}
	switch {
	case cur.Size == size:
		return d.model(), nil
	case cur.Type == "c" && cur.Size < size:
		if err := d.resize(ctx, dst, size); err != nil {
			return drivers.ModelUpdate{}, err
		}
		return d.model(), nil
	}
	return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindConflict, op, "%s exists with %d bytes (type %q), requested a clone of %s bytes", dst, cur.Size, cur.Type, strconv.FormatInt(size, 10))
}
