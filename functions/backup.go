package functions

import (
	"context"
	"io"
	"sort"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/backupstore"
	"github.com/ember-storage/ember/events"
)

// CreateBackup serves backup.requested: the volume's bytes streamed into the
// backup store (chunked, sha256 per chunk, incremental on the volume's
// latest backup when asked), recorded in the volume's record.
type CreateBackup struct{ onVolume }

func newCreateBackup(env *Env) *CreateBackup {
	f := &CreateBackup{onVolume{env: env, typ: events.BackupRequested, active: StatusCreating}}
	f.data = backupData
	return f
}

func (f *CreateBackup) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.BackupRequest)
	began := f.env.now()
	if f.env.Backups == nil {
		return f.Fail(r, fail(string(drivers.KindNotSupported), "no backup store is configured (backups.dir)")), nil
	}
	// Reading an attached volume would copy a disk being written; Cinder
	// asks for force, Ember for a detach (or a snapshot, then a clone).
	v, d, err := f.existing(r, StatusAvailable)
	if err != nil {
		return f.Fail(r, err), nil
	}
	if b, ok := v.Backups[p.BackupID]; ok && b.Status == StatusAvailable {
		return f.end(r, v, began, StatusAvailable, nil), nil
	}
	parent := ""
	if p.Incremental {
		if parent = latestBackup(v, p.BackupID); parent == "" {
			return f.Fail(r, fail(CodeInvalid, "volume %s has no backup to base an incremental backup on; make a full one first", v.ID)), nil
		}
	}
	if f.env.Index != nil {
		owner, err := f.env.Index.Bind(ctx, KindBackup, p.BackupID, v.ID)
		if err != nil {
			return Outcome{}, err
		}
		if owner != v.ID {
			return f.Fail(r, fail(string(drivers.KindConflict), "backup id %s is taken by a backup of another volume", p.BackupID)), nil
		}
	}
	size, err := drivers.Bytes(v.SizeGB)
	if err != nil {
		return f.Fail(r, err), nil
	}
	var meta backupstore.Meta
	err = stream(ctx, r, size,
		func(ctx context.Context, w io.Writer) error { return d.ReadVolume(ctx, dv(v), w) },
		func(ctx context.Context, rd io.Reader) error {
			var err error
			meta, err = f.env.Backups.Backup(ctx, backupstore.BackupRequest{BackupID: p.BackupID, VolumeID: v.ID,
				SizeGB: v.SizeGB, ProjectID: v.ProjectID, ParentID: parent}, rd, nil)
			return err
		})
	if err != nil {
		return driverFailure(f, r, err)
	}
	if v.Backups == nil {
		v.Backups = map[string]Backup{}
	}
	v.Backups[p.BackupID] = Backup{ID: p.BackupID, Status: StatusAvailable, SizeGB: meta.SizeGB, ParentID: meta.ParentID,
		ObjectCount: meta.ObjectCount, CreatedAt: events.FormatTime(f.env.now())}
	return f.end(r, v, began, StatusAvailable, nil), nil
}

// latestBackup is the newest available backup of v other than except.
func latestBackup(v *Volume, except string) string {
	var bs []Backup
	for _, b := range v.Backups {
		if b.Status == StatusAvailable && b.ID != except {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		return ""
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].CreatedAt < bs[j].CreatedAt })
	return bs[len(bs)-1].ID
}

// RestoreBackup serves backup.restore.requested: the backup's bytes,
// verified chunk by chunk, written over an existing volume at least as
// large. A corrupt backup is refused before its bad chunk is written.
type RestoreBackup struct{ onVolume }

func newRestoreBackup(env *Env) *RestoreBackup {
	f := &RestoreBackup{onVolume{env: env, typ: events.BackupRestoreRequested, active: StatusRestoring, failed: StatusErrorRestoring}}
	f.data = backupData
	return f
}

func (f *RestoreBackup) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.BackupRestore)
	began := f.env.now()
	if f.env.Backups == nil {
		return f.Fail(r, fail(string(drivers.KindNotSupported), "no backup store is configured (backups.dir)")), nil
	}
	v, d, err := f.existing(r, StatusAvailable, StatusErrorRestoring)
	if err != nil {
		return f.Fail(r, err), nil
	}
	meta, err := backupOf(f.env, p.BackupID, p.ProjectID)
	if err != nil {
		return f.Fail(r, err), nil
	}
	if meta.SizeGB > v.SizeGB {
		return f.Fail(r, fail(CodeInvalid, "backup %s is %d GB, larger than volume %s (%d GB)", p.BackupID, meta.SizeGB, v.ID, v.SizeGB)), nil
	}
	if err := restore(ctx, f.env, r, meta, d, v); err != nil {
		return driverFailure(f, r, err)
	}
	v.Status = StatusAvailable
	return f.end(r, v, began, StatusAvailable, nil), nil
}

// backupOf reads a complete backup's metadata, refusing other projects'.
func backupOf(env *Env, backupID, project string) (backupstore.Meta, error) {
	meta, err := env.Backups.Get(backupID)
	if err != nil {
		return meta, err
	}
	if meta.ProjectID != "" && meta.ProjectID != project {
		return meta, fail(CodeForbidden, "backup %s belongs to another project", backupID)
	}
	return meta, nil
}

// restore streams a backup into the volume v on driver d.
func restore(ctx context.Context, env *Env, r *Request, meta backupstore.Meta, d drivers.Driver, v *Volume) error {
	return stream(ctx, r, meta.Length,
		func(ctx context.Context, w io.Writer) error { return env.Backups.Restore(ctx, meta.BackupID, w, nil) },
		func(ctx context.Context, rd io.Reader) error { return d.WriteVolume(ctx, dv(v), rd) })
}

// backupData is a backup result's data (Cinder's backup notification).
func backupData(r *Request, v *Volume, status string) events.ResultData {
	d := events.ResultData{TenantID: v.ProjectID, UserID: v.UserID, VolumeID: v.ID, Status: status, Host: v.Backend,
		Backend: v.Backend, AvailabilityZone: v.AvailabilityZone, Size: v.SizeGB}
	switch p := r.Input.Payload.(type) {
	case *events.BackupRequest:
		d.BackupID, d.Incremental = p.BackupID, p.Incremental
		if b, ok := v.Backups[p.BackupID]; ok {
			d.Size, d.ParentID, d.ObjectCount, d.CreatedAt = b.SizeGB, b.ParentID, b.ObjectCount, b.CreatedAt
		}
	case *events.BackupRestore:
		d.BackupID = p.BackupID
	}
	return d
}
