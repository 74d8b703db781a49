package functions

import (
	"context"
	"io"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// MigrateVolume serves volume.migrate.requested: the volume is copied to
// another configured backend, by the source driver itself when it can
// (Migrator: LVM between volume groups of one host), else by a streaming
// copy through Ember (Cinder's generic migration); then the old copy is
// deleted.
//
// Either way it has two steps with a checkpoint between them, so that a
// crash at any moment neither loses the data nor leaves the record on a
// copy that is not whole: (1) copy the volume to the destination; the
// record then switches to the destination, remembering the source
// (Request.Save, fenced); (2) delete the source copy and forget it. A
// re-run after a crash in (1) copies again (the destination create is
// idempotent; the LVM copy starts over); after the checkpoint it does (2)
// only.
//
// Two backend entries may name one storage (two `file` backends on one
// directory, two names for one VG or pool). A copy there is the volume
// itself, and step (2) would delete the only copy. So before copying, the
// backends' location_info (GetVolumeStats) is compared (sameStorage), and
// the destination is asked whether it already holds the volume (Lister).
// When both say "the same storage" and the two entries make volumes alike,
// the migration moves the record only: nothing is copied or deleted, and
// the volume is on the destination, which is what the request asked for.
// One storage with different settings (thick and thin LVM over one VG,
// raw and qcow2 file backends over one directory) is refused: a record
// move would leave the volume as the source made it. A destination that
// holds a volume of this id which this migration did not begin to make
// (Volume.MigratingTo) is refused too, whatever location_info says: it is
// the same storage under names that do not show it (a symlinked directory),
// or someone else's leftover, and it is never written over nor is the
// source deleted after it.
type MigrateVolume struct{ onVolume }

func newMigrateVolume(env *Env) *MigrateVolume {
	return &MigrateVolume{onVolume{env: env, typ: events.VolumeMigrateRequested, active: StatusMigrating}}
}

func (f *MigrateVolume) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.VolumeMigrate)
	began := f.env.now()
	v, src, err := f.existing(r, StatusAvailable)
	if err != nil {
		return f.Fail(r, err), nil
	}
	if v.Migration == nil {
		if v.Backend == p.DestBackend {
			v.MigratingTo = ""
			return f.end(r, v, began, StatusAvailable, nil), nil // there already
		}
		if len(v.Snapshots) > 0 {
			return f.Fail(r, fail(string(drivers.KindBusy), "volume %s has %d snapshots; a migration would leave them behind", v.ID, len(v.Snapshots))), nil
		}
		dst, err := f.env.driver(p.DestBackend)
		if err != nil {
			return f.Fail(r, fail(CodeInvalid, "dest_backend %q is not configured here", p.DestBackend)), nil
		}
		// A driver that migrates itself (LVM) compares location_info on
		// its own path and knows what it left at the destination.
		var same storage
		held := false
		_, assisted := src.(Migrator)
		if !assisted {
			if same, err = sameStorage(ctx, src, dst, v); err != nil {
				return driverFailure(f, r, err)
			}
			if held, err = holds(ctx, dst, v.ID); err != nil {
				return driverFailure(f, r, err)
			}
		}
		switch ours := v.MigratingTo == p.DestBackend; {
		case held && !ours && same.same && same.alike:
			// One storage under two names: the volume is there already.
			v.Backend, v.MigratingTo = p.DestBackend, ""
			return f.end(r, v, began, StatusAvailable, nil), nil
		case held && !ours && same.same:
			return f.Fail(r, fail(CodeInvalid, "backends %s and %s are one storage (%s) with different settings: "+
				"nothing to copy, and moving the record would leave the volume as %s made it; nothing was done",
				v.Backend, p.DestBackend, same.why, v.Backend)), nil
		case held && !ours:
			return f.Fail(r, fail(string(drivers.KindConflict), "backend %s already holds a volume %s that this migration did not make "+
				"(the same storage under another name, or a leftover: see ember reconcile); nothing was copied or deleted",
				p.DestBackend, v.ID)), nil
		}
		// From here the destination's copy is this migration's: a re-run
		// after a crash may write over what an earlier try left there.
		if r.Save != nil && !assisted && v.MigratingTo != p.DestBackend {
			marked := v.Clone()
			marked.MigratingTo = p.DestBackend
			if err := r.Save(ctx, marked); err != nil {
				return Outcome{}, drivers.Wrap(drivers.KindUnavailable, "migration start", err)
			}
			v = marked
		}
		near, mu, err := f.assisted(ctx, src, dst, v)
		if err != nil {
			return driverFailure(f, r, err)
		}
		var moved *Volume
		if near {
			moved = movedTo(v, p.DestBackend, mu.ProviderLocation)
		} else if moved, err = f.copy(ctx, r, v, src, dst, p.DestBackend); err != nil {
			return f.failCopy(ctx, r, v, dst, err)
		}
		if r.Save != nil {
			if err := r.Save(ctx, moved); err != nil {
				// Lease lost or Redis away: transient, so that the request
				// is tried again (the re-run copies again), not answered
				// .error with a whole copy left behind.
				return Outcome{}, drivers.Wrap(drivers.KindUnavailable, "migration checkpoint", err)
			}
		}
		v = moved.Clone() // what was saved stays as saved
	} else if v.Migration.FromBackend == p.DestBackend {
		return f.Fail(r, fail(string(drivers.KindConflict), "volume %s is finishing a migration from %s; migrate again after it", v.ID, p.DestBackend)), nil
	}
	old, ok := f.env.Backends[v.Migration.FromBackend]
	if !ok {
		// Retried, then dead-lettered with the record still remembering
		// the old copy: once the backend is configured again, `ember dlq
		// replay` finishes the delete. The volume is whole on Backend.
		return Outcome{}, drivers.Errorf(drivers.KindUnavailable, "delete the old copy of "+v.ID,
			"backend %q, which holds it, is not configured here", v.Migration.FromBackend)
	}
	if err := f.deleteOld(ctx, old, v); err != nil {
		return Outcome{}, err // the data is safe on the destination: retry the delete
	}
	v.Migration = nil
	return f.end(r, v, began, StatusAvailable, nil), nil
}

// deleteOld deletes the source copy of a migration past its checkpoint,
// unless the old and new backends are one storage where the volume lives
// (a record moved by an Ember without the check above): there the old
// copy is the volume.
func (f *MigrateVolume) deleteOld(ctx context.Context, old drivers.Driver, v *Volume) error {
	from := v.Clone()
	from.ProviderLocation = v.Migration.FromProviderLocation
	cur, err := f.env.driver(v.Backend)
	if err != nil {
		return err
	}
	if _, assisted := old.(Migrator); !assisted {
		same, err := sameStorage(ctx, old, cur, from)
		if err != nil {
			return err
		}
		if same.same {
			return nil
		}
	}
	err = old.DeleteVolume(ctx, drivers.Volume{ID: v.ID, SizeGB: v.SizeGB, ProviderLocation: v.Migration.FromProviderLocation})
	if err != nil && !drivers.IsKind(err, drivers.KindNotFound) {
		return err
	}
	return nil
}

// copy makes v on dst and streams its bytes there; it returns the record
// as it will be once the volume lives on dst.
func (f *MigrateVolume) copy(ctx context.Context, r *Request, v *Volume, src, dst drivers.Driver, dest string) (*Volume, error) {
	size, err := drivers.Bytes(v.SizeGB)
	if err != nil {
		return nil, err
	}
	mu, err := dst.CreateVolume(ctx, drivers.Volume{ID: v.ID, SizeGB: v.SizeGB})
	if err != nil {
		return nil, err
	}
	to := drivers.Volume{ID: v.ID, SizeGB: v.SizeGB, ProviderLocation: mu.ProviderLocation}
	err = stream(ctx, r, size,
		func(ctx context.Context, w io.Writer) error { return src.ReadVolume(ctx, dv(v), w) },
		func(ctx context.Context, rd io.Reader) error { return dst.WriteVolume(ctx, to, rd) })
	if err != nil {
		return nil, err
	}
	return movedTo(v, dest, mu.ProviderLocation), nil
}

// movedTo is the checkpoint's record: v on dest at location, remembering
// where it was so that the second step can delete the old copy.
func movedTo(v *Volume, dest, location string) *Volume {
	moved := v.Clone()
	moved.Migration = &Migration{FromBackend: v.Backend, FromProviderLocation: v.ProviderLocation}
	moved.Backend, moved.ProviderLocation, moved.MigratingTo = dest, location, ""
	return moved
}

// failCopy handles a failed first step: transient errors are retried; a
// permanent one removes the partial destination copy (as Cinder does) and
// answers .error with the volume where it was.
func (f *MigrateVolume) failCopy(ctx context.Context, r *Request, v *Volume, dst drivers.Driver, err error) (Outcome, error) {
	if Retryable(err) {
		return Outcome{}, err
	}
	_ = dst.DeleteVolume(ctx, drivers.Volume{ID: v.ID, SizeGB: v.SizeGB})
	out := f.Fail(r, err)
	if v.MigratingTo != "" {
		// The record as it was before the migration began.
		v.MigratingTo = ""
		out.Volume = v
	}
	return out, nil
}

// Migrator is a driver that can copy a volume itself when the destination
// is near (Cinder's driver-assisted migrate_volume: LVM between volume
// groups of one host, by dd, without streaming through Ember). It only
// copies: the source stays until the checkpoint has moved the record, and
// is then deleted by the second step like a streamed one. It is called
// only while the record is on the source, so a re-run after a crash may
// find an earlier copy and must not trust it. moved=false means "not
// mine": the generic copy runs.
type Migrator interface {
	MigrateVolume(ctx context.Context, v drivers.Volume, destLocationInfo string) (moved bool, mu drivers.ModelUpdate, err error)
}

// assisted lets the source driver move the volume when it can; the
// destination is described by its stats' location_info.
func (f *MigrateVolume) assisted(ctx context.Context, src, dst drivers.Driver, v *Volume) (bool, drivers.ModelUpdate, error) {
	m, ok := src.(Migrator)
	if !ok {
		return false, drivers.ModelUpdate{}, nil
	}
	stats, err := dst.GetVolumeStats(ctx)
	if err != nil && Retryable(err) {
		return false, drivers.ModelUpdate{}, err // the host is away: a streaming copy would not get far
	}
	if err != nil || stats.LocationInfo == "" {
		return false, drivers.ModelUpdate{}, nil // the generic copy needs no stats
	}
	return m.MigrateVolume(ctx, dv(v), stats.LocationInfo)
}
