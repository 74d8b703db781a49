package lvm

import (
	"context"
	"sort"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// copyPendingTag marks an LV whose content is still being copied in (from a
// snapshot, a clone source, another VG). A redelivered request that finds
// the LV with this tag copies again instead of reporting a half-filled
// volume as done; the tag goes once dd has finished.
const copyPendingTag = "ember-copy-pending"

type lvState int

const (
	lvCreated    lvState = iota // made now
	lvComplete                  // was there, same size, nothing pending
	lvUnfinished                // was there, same size, its copy never finished
)

// ensureLV creates name with sizeGB unless it exists. An existing LV of the
// same size is the same request delivered again; of another size a
// conflict. Thick creates first check the VG's free space, so a volume that
// cannot fit is refused without touching LVM's metadata.
func (d *Driver) ensureLV(ctx context.Context, vg *volumeGroup, name string, sizeGB, mirrors int, copyIn bool) (lvState, error) {
	op := "lvcreate " + name + " on " + vg.name
	size, err := drivers.Bytes(sizeGB)
	if err != nil {
		return 0, err
	}
	if vg.thin {
		if err := vg.ensureThinPool(ctx); err != nil {
			return 0, err
		}
	}
	state := func(l lv) (lvState, error) {
		switch {
		case l.Size != size:
			return 0, drivers.Errorf(drivers.KindConflict, op, "%s exists with %s, requested %s", name, gib(l.Size), gib(size))
		case hasTag(l.Tags, copyPendingTag) && copyIn:
			return lvUnfinished, nil
		case hasTag(l.Tags, copyPendingTag):
			return 0, drivers.Errorf(drivers.KindConflict, op, "%s exists with an unfinished copy (tag %s)", name, copyPendingTag)
		}
		return lvComplete, nil
	}
	if l, ok, err := vg.lookup(ctx, name); err != nil {
		return 0, err
	} else if ok {
		return state(l)
	}
	if vg.thin {
		mirrors = 0
	} else {
		free, err := vg.freeBytes(ctx)
		if err != nil {
			return 0, err
		}
		// A mirrored LV takes its size once per copy, plus a small log.
		if need := size * int64(mirrors+1); need > free {
			return 0, drivers.Errorf(drivers.KindNoCapacity, op, "%s requested (%d copies), %s free", gib(size), mirrors+1, gib(free))
		}
	}
	var tags []string
	if copyIn {
		tags = append(tags, copyPendingTag)
	}
	if err := vg.create(ctx, name, sizeGB, mirrors, tags...); err != nil {
		if drivers.IsKind(err, drivers.KindConflict) { // lost a race with a twin request
			if l, ok, lerr := vg.lookup(ctx, name); lerr == nil && ok {
				return state(l)
			}
		}
		return 0, err
	}
	return lvCreated, nil
}

// CreateVolume makes volume-<id> (Cinder's create_volume).
func (d *Driver) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if _, err := d.ensureLV(ctx, d.vg, name, v.SizeGB, d.opts.LVMMirrors, false); err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.providerLocation(d.vg), nil
}

// snapshotsOf names the snapshots that keep name from being deleted: thick
// snapshots (the origin's lv_attr starts with 'o', Cinder's lv_has_snapshot)
// and, for thin, the _snapshot-/clone-snap- LVs whose origin it is. Thin
// clones are thin snapshots too, but independent volumes: they do not count.
func snapshotsOf(all []lv, name string) []string {
	var snaps []string
	for _, l := range all {
		if l.Origin == name && (strings.HasPrefix(l.Name, "_snapshot-") || strings.HasPrefix(l.Name, "clone-snap-") || !isThinLV(l)) {
			snaps = append(snaps, l.Name)
		}
	}
	sort.Strings(snaps)
	return snaps
}

// isThinLV: lv_attr's first letter is 'V' for a thin volume.
func isThinLV(l lv) bool { return len(l.Attr) > 0 && l.Attr[0] == 'V' }

func find(all []lv, name string) (lv, bool) {
	for _, l := range all {
		if l.Name == name {
			return l, true
		}
	}
	return lv{}, false
}

// DeleteVolume scrubs (volume_clear) and removes volume-<id>. A volume that
// is gone is success; one with snapshots is busy, as in Cinder, because
// lvremove -f of an origin would take its snapshots with it.
func (d *Driver) DeleteVolume(ctx context.Context, v drivers.Volume) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	return d.deleteVolume(ctx, d.vg, name)
}

func (d *Driver) deleteVolume(ctx context.Context, vg *volumeGroup, name string) error {
	all, err := vg.list(ctx)
	if err != nil {
		return err
	}
	l, ok := find(all, name)
	if !ok {
		return nil
	}
	snaps := snapshotsOf(all, name)
	if l.isOrigin() && len(snaps) == 0 {
		snaps = []string{"(unnamed)"}
	}
	if len(snaps) > 0 {
		return drivers.Errorf(drivers.KindBusy, "delete "+name+" on "+vg.name,
			"volume has %d snapshot(s): %s; delete them first", len(snaps), strings.Join(snaps, ", "))
	}
	if err := d.clearDevice(ctx, vg, l, false); err != nil {
		return err
	}
	return vg.remove(ctx, name)
}

// ExtendVolume grows volume-<id> to newSizeGB with lvextend. A volume that
// is already that size is success (a redelivery); a larger one is a
// conflict, since volumes never shrink.
func (d *Driver) ExtendVolume(ctx context.Context, v drivers.Volume, newSizeGB int) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	size, err := drivers.Bytes(newSizeGB)
	if err != nil {
		return err
	}
	op := "lvextend " + name + " on " + d.vg.name
	l, ok, err := d.vg.lookup(ctx, name)
	switch {
	case err != nil:
		return err
	case !ok:
		return drivers.Errorf(drivers.KindNotFound, op, "no such logical volume")
	case l.Size == size:
		return nil
	case l.Size > size:
		return drivers.Errorf(drivers.KindConflict, op, "volume is %s, larger than the requested %s", gib(l.Size), gib(size))
	}
	if !d.thin() {
		free, err := d.vg.freeBytes(ctx)
		if err != nil {
			return err
		}
		if need := (size - l.Size) * int64(d.opts.LVMMirrors+1); need > free {
			return drivers.Errorf(drivers.KindNoCapacity, op, "%s more requested, %s free", gib(need), gib(free))
		}
	}
	return d.vg.extend(ctx, name, newSizeGB)
}
