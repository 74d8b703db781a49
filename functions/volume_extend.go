package functions

import (
	"context"

	"github.com/ember-storage/ember/events"
)

// Statuses of volume operations besides create and delete (Cinder's words).
const (
	StatusExtending       = "extending"
	StatusErrorExtending  = "error_extending"
	StatusAttaching       = "attaching"
	StatusDetaching       = "detaching"
	StatusBackingUp       = "backing-up"
	StatusRestoring       = "restoring-backup"
	StatusErrorRestoring  = "error_restoring"
	StatusUploading       = "uploading"
	StatusMigrating       = "migrating"
	StatusSnapshotError   = "error"
	StatusSnapshotDeleted = "deleted"
)

// ExtendVolume serves volume.extend.requested (results volume.resize.*).
type ExtendVolume struct{ onVolume }

func newExtendVolume(env *Env) *ExtendVolume {
	return &ExtendVolume{onVolume{env: env, typ: events.VolumeExtendRequested, active: StatusExtending, failed: StatusErrorExtending}}
}

func (f *ExtendVolume) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.VolumeExtend)
	began := f.env.now()
	v, d, err := f.existing(r, StatusAvailable, StatusErrorExtending)
	if err != nil {
		return f.Fail(r, err), nil
	}
	switch {
	case p.NewSizeGB == v.SizeGB && v.Status == StatusAvailable:
		return f.end(r, v, began, StatusAvailable, nil), nil // done already
	case p.NewSizeGB < v.SizeGB:
		return f.Fail(r, fail(CodeInvalid, "new size %d GB is smaller than the volume's %d GB; volumes only grow", p.NewSizeGB, v.SizeGB)), nil
	}
	if err := d.ExtendVolume(ctx, dv(v), p.NewSizeGB); err != nil {
		return driverFailure(f, r, err)
	}
	v.SizeGB, v.Status = p.NewSizeGB, StatusAvailable
	return f.end(r, v, began, StatusAvailable, nil), nil
}
