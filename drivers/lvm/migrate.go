package lvm

import (
	"context"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// MigrateVolume is Cinder's migrate_volume for LVM: when the destination
// backend (given by its stats' location_info,
// "LVMVolumeDriver:<host>:<vg>:<lvm_type>:<mirrors>") is another volume
// group on the same storage host, the volume is copied there with dd and
// removed here (scrubbed per volume_clear), without going through iSCSI.
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
	all, err := d.vg.list(ctx)
	if err != nil {
		return false, mu, err
	}
	src, ok := find(all, name)
	if !ok {
		// Gone here: done already if the destination holds a finished copy.
		if l, ok, err := dest.lookup(ctx, name); err != nil {
			return false, mu, err
		} else if ok && !hasTag(l.Tags, copyPendingTag) {
			return true, drivers.ModelUpdate{ProviderLocation: destVG}, nil
		}
		return false, mu, drivers.Errorf(drivers.KindNotFound, op, "no such logical volume")
	}
	if snaps := snapshotsOf(all, name); len(snaps) > 0 || src.isOrigin() {
		return false, mu, drivers.Errorf(drivers.KindBusy, op, "volume has snapshot(s) %s; they cannot move with it", strings.Join(snaps, ", "))
	}
	sizeGB := int((src.Size + drivers.GiB - 1) / drivers.GiB)
	state, err := d.ensureLV(ctx, dest, name, sizeGB, mirrors, true)
	if err != nil {
		return false, mu, err
	}
	if state != lvComplete {
		if err := d.fill(ctx, op, d.vg, src, dest, name); err != nil {
			// As Cinder: a failed copy leaves nothing in the destination.
			_ = dest.remove(context.WithoutCancel(ctx), name)
			return false, mu, err
		}
	}
	if err := d.deleteVolume(ctx, d.vg, name); err != nil {
		return true, drivers.ModelUpdate{ProviderLocation: destVG}, err
	}
	return true, drivers.ModelUpdate{ProviderLocation: destVG}, nil
}
