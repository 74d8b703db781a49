package lvm

import (
	"context"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// MigrateVolume is the copy step of Cinder's migrate_volume for LVM: when
// the destination backend (given by its stats' location_info,
// "LVMVolumeDriver:<host>:<vg>:<lvm_type>:<mirrors>") is another volume
// group on the same storage host, the volume is copied there with dd,
// without going through iSCSI or Ember.
//
// Unlike Cinder it leaves the source alone. The caller moves the registry
// record to the destination (a fenced checkpoint) and only then deletes
// the source through this driver's DeleteVolume, the two steps of the
// streaming migration, so that the record never points at a copy that is
// not whole: before the checkpoint it names the untouched source, after it
// a finished copy.
//
// The caller asks only while the record says the volume lives here, so
// whatever the destination VG holds under the volume's name is left by an
// earlier try that stopped before its checkpoint. It is removed (scrubbed
// as volume_clear says) and the copy made again from the start: the record
// stayed available in between, so the volume may have been written since,
// and a thin destination is filled with sparse writes that would keep old
// blocks where the source now has zeros. A permanent copy failure removes
// the partial copy (as Cinder does); a transient one leaves it for the
// re-run, since after a lost lease a newer owner may be filling it.
//
// moved=false with a nil error means "not mine to optimise" (another host,
// another driver, a VG that does not exist): the caller falls back to a
// generic copy through ReadVolume/WriteVolume. The returned ModelUpdate's
// ProviderLocation is the destination VG. It is not part of drivers.Driver:
// callers that hold a driver test for it with a type assertion on
// interface{ MigrateVolume(context.Context, drivers.Volume, string) (bool, drivers.ModelUpdate, error) }.
func (d *Driver) MigrateVolume(ctx context.Context, v drivers.Volume, locationInfo string) (moved bool, mu drivers.ModelUpdate, err error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return false, mu, err
	}
	f := strings.Split(locationInfo, ":")
	if len(f) != 5 || f[0] != "LVMVolumeDriver" {
		return false, mu, nil
	}
	destVG, destType := f[2], f[3]
	mirrors, err := strconv.Atoi(f[4])
	if err != nil || mirrors < 0 || (destType != "default" && destType != "thin") || !lvmNameRE.MatchString(destVG) {
		return false, mu, nil
	}
	host, err := d.storageHostname(ctx)
	if err != nil {
		return false, mu, err
	}
	if f[1] != host {
		return false, mu, nil
	}
	op := "migrate " + name + " from " + d.vg.name + " to " + destVG
	if destVG == d.vg.name {
		return false, mu, drivers.Errorf(drivers.KindInvalid, op, "source and destination are the same volume group")
	}
	dest := &volumeGroup{name: destVG, thin: destType == "thin", ex: d.ex}
	if _, err := dest.info(ctx); err != nil {
		if drivers.IsKind(err, drivers.KindUnavailable) {
			return false, mu, err
		}
		return false, mu, nil // Cinder: destination VG does not exist here
	}
	done := drivers.ModelUpdate{ProviderLocation: destVG}
	all, err := d.vg.list(ctx)
	if err != nil {
		return false, mu, err
	}
	src, ok := find(all, name)
	if !ok {
		// Gone here while the record still names this VG: only an earlier
		// Ember, which deleted the source before its checkpoint, leaves
		// that. A finished copy in the destination is then the volume.
		if l, ok, err := dest.lookup(ctx, name); err != nil {
			return false, mu, err
		} else if ok && !hasTag(l.Tags, copyPendingTag) {
			return true, done, nil
		}
		return false, mu, drivers.Errorf(drivers.KindNotFound, op, "no such logical volume")
	}
	if snaps := snapshotsOf(all, name); len(snaps) > 0 || src.isOrigin() {
		return false, mu, drivers.Errorf(drivers.KindBusy, op, "volume has snapshot(s) %s; they cannot move with it", strings.Join(snaps, ", "))
	}
	if err := d.deleteVolume(ctx, dest, name); err != nil { // an earlier try's copy
		return false, mu, err
	}
	sizeGB := int((src.Size + drivers.GiB - 1) / drivers.GiB)
	if _, err := d.ensureLV(ctx, dest, name, sizeGB, mirrors, true); err != nil {
		return false, mu, err
	}
	if err := d.fill(ctx, op, d.vg, src, dest, name); err != nil {
		if !drivers.KindOf(err).Retryable() && ctx.Err() == nil {
			_ = d.deleteVolume(ctx, dest, name)
		}
		return false, mu, err
	}
	return true, done, nil
}
