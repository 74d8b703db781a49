package functions

import (
	"context"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// CreateSnapshot serves snapshot.requested: a snapshot of an available
// volume, recorded in its volume's registry record.
type CreateSnapshot struct{ onVolume }

func newCreateSnapshot(env *Env) *CreateSnapshot {
	f := &CreateSnapshot{onVolume{env: env, typ: events.SnapshotRequested, active: StatusCreating, failed: StatusSnapshotError}}
	f.data = snapshotData
	return f
}

func (f *CreateSnapshot) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.SnapshotRequest)
	began := f.env.now()
	// An attached volume is being written: a qcow2 overlay or an LVM
	// snapshot taken under it would not be consistent (Cinder asks for
	// force; Ember asks for a detach).
	v, d, err := f.existing(r, StatusAvailable)
	if err != nil {
		return f.Fail(r, err), nil
	}
	if s, ok := v.Snapshots[p.SnapshotID]; ok && s.Status == StatusAvailable {
		return f.end(r, v, began, StatusAvailable, nil), nil // CSI: it exists; success
	}
	if f.env.Index != nil {
		owner, err := f.env.Index.Bind(ctx, KindSnapshot, p.SnapshotID, v.ID)
		if err != nil {
			return Outcome{}, err
		}
		if owner != v.ID {
			return f.Fail(r, fail(string(drivers.KindConflict), "snapshot id %s is taken by a snapshot of another volume", p.SnapshotID)), nil
		}
	}
	mu, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: p.SnapshotID, VolumeID: v.ID, VolumeSizeGB: v.SizeGB,
		ProviderLocation: v.ProviderLocation})
	if err != nil {
		return driverFailure(f, r, err)
	}
	if v.Snapshots == nil {
		v.Snapshots = map[string]Snapshot{}
	}
	v.Snapshots[p.SnapshotID] = Snapshot{ID: p.SnapshotID, Name: p.Name, Status: StatusAvailable, VolumeSizeGB: v.SizeGB,
		ProviderLocation: mu.ProviderLocation, CreatedAt: events.FormatTime(f.env.now())}
	return f.end(r, v, began, StatusAvailable, nil), nil
}

// Fail records a snapshot the driver failed to make in status error, so
// that its delete cleans up what may be half made; refusals change nothing.
func (f *CreateSnapshot) Fail(r *Request, err error) Outcome {
	out := f.onVolume.Fail(r, err)
	if out.Volume != nil {
		p := r.Input.Payload.(*events.SnapshotRequest)
		out.Volume.Status = r.Volume.Status
		if out.Volume.Snapshots == nil {
			out.Volume.Snapshots = map[string]Snapshot{}
		}
		if _, ok := out.Volume.Snapshots[p.SnapshotID]; !ok {
			out.Volume.Snapshots[p.SnapshotID] = Snapshot{ID: p.SnapshotID, Name: p.Name, Status: StatusSnapshotError,
				VolumeSizeGB: out.Volume.SizeGB, CreatedAt: events.FormatTime(f.env.now())}
		}
	}
	return out
}

// DeleteSnapshot serves snapshot.deleted. Deleting what is gone is success.
type DeleteSnapshot struct{ onVolume }

func newDeleteSnapshot(env *Env) *DeleteSnapshot {
	f := &DeleteSnapshot{onVolume{env: env, typ: events.SnapshotDeleted, active: StatusDeleting, failed: StatusErrorDeleting}}
	f.data = snapshotData
	return f
}

func (f *DeleteSnapshot) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.SnapshotDelete)
	began := f.env.now()
	v := r.Volume
	if v == nil || v.Tombstoned() {
		return f.gone(r, began, StatusSnapshotDeleted), nil
	}
	if err := ownedBy(v, p.ProjectID); err != nil {
		return f.Fail(r, err), nil
	}
	s, ok := v.Snapshots[p.SnapshotID]
	if !ok {
		return f.end(r, v.Clone(), began, StatusSnapshotDeleted, nil), nil
	}
	d, err := f.env.driver(v.Backend)
	if err != nil {
		return f.Fail(r, err), nil
	}
	err = d.DeleteSnapshot(ctx, drivers.Snapshot{ID: s.ID, VolumeID: v.ID, VolumeSizeGB: s.VolumeSizeGB, ProviderLocation: s.ProviderLocation})
	if err != nil && !drivers.IsKind(err, drivers.KindNotFound) {
		return driverFailure(f, r, err)
	}
	// The result describes the snapshot as it was; the record forgets it.
	out := f.end(r, v.Clone(), began, StatusSnapshotDeleted, nil)
	delete(out.Volume.Snapshots, p.SnapshotID)
	if len(out.Volume.Snapshots) == 0 {
		out.Volume.Snapshots = nil
	}
	return out, nil
}

// Fail marks a snapshot the driver failed to delete error_deleting.
func (f *DeleteSnapshot) Fail(r *Request, err error) Outcome {
	out := f.onVolume.Fail(r, err)
	if out.Volume != nil {
		p := r.Input.Payload.(*events.SnapshotDelete)
		out.Volume.Status = r.Volume.Status
		if s, ok := out.Volume.Snapshots[p.SnapshotID]; ok {
			s.Status = StatusErrorDeleting
			out.Volume.Snapshots[p.SnapshotID] = s
		} else {
			out.Volume = nil
		}
	}
	return out
}

// snapshotData is a snapshot result's data, Cinder's snapshot notification
// fields: volume_size is what Ceilometer's snapshot.size meter reads.
func snapshotData(r *Request, v *Volume, status string) events.ResultData {
	var id, name string
	switch p := r.Input.Payload.(type) {
	case *events.SnapshotRequest:
		id, name = p.SnapshotID, p.Name
	case *events.SnapshotDelete:
		id = p.SnapshotID
	}
	s := v.Snapshots[id]
	if s.Name != "" {
		name = s.Name
	}
	size := s.VolumeSizeGB
	if size == 0 {
		size = v.SizeGB
	}
	return events.ResultData{TenantID: v.ProjectID, UserID: v.UserID, VolumeID: v.ID, SnapshotID: id, VolumeSize: size,
		Status: status, DisplayName: name, CreatedAt: s.CreatedAt, Host: v.Backend, Backend: v.Backend,
		AvailabilityZone: v.AvailabilityZone, ProviderLocation: s.ProviderLocation}
}
