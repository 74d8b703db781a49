package functions

import (
	"context"
	"errors"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// DeleteVolume serves volume.deleted. Deleting what is gone is success; the
// record stays as a tombstone.
type DeleteVolume struct{ env *Env }

func (f *DeleteVolume) Type() string { return events.VolumeDeleted }

func (f *DeleteVolume) Start(r *Request) events.Result {
	v := f.subject(r)
	v.Status = StatusDeleting
	return events.Result{
		Type: events.ResultType(events.VolumeDeleted, events.PhaseStart), Source: f.source(v),
		Time: r.Input.Event.Time(), Data: v.data(),
	}
}

func (f *DeleteVolume) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.VolumeDelete)
	began := f.env.now()
	v := r.Volume
	switch {
	case v != nil && v.ProjectID != p.ProjectID:
		return f.Fail(r, ownedBy(v, p.ProjectID)), nil
	case v.Tombstoned():
		return f.done(v.Clone(), began), nil
	case v != nil && len(v.Attachments) > 0:
		return f.Fail(r, fail(string(drivers.KindBusy), "volume %s is attached (%d attachments); detach it first", v.ID, len(v.Attachments))), nil
	case v != nil && len(v.Snapshots) > 0:
		return f.Fail(r, fail(string(drivers.KindBusy), "volume %s has %d snapshots; delete them first", v.ID, len(v.Snapshots))), nil
	}
	if v != nil && v.Backend != "" {
		d, err := f.env.driver(v.Backend)
		if err != nil {
			return f.Fail(r, err), nil
		}
		if err := d.DeleteVolume(ctx, drivers.Volume{ID: v.ID, SizeGB: v.SizeGB, ProviderLocation: v.ProviderLocation}); err != nil {
			if Retryable(err) {
				return Outcome{}, err
			}
			return f.Fail(r, err), nil
		}
	}
	// A volume never seen is gone already: the tombstone refuses a create
	// that arrives after this delete (ordering across topics, SPEC §4).
	gone := f.subject(r)
	gone.Status = StatusDeleted
	gone.DeletedAt = events.FormatTime(f.env.now())
	return f.done(gone, began), nil
}

func (f *DeleteVolume) done(v *Volume, began time.Time) Outcome {
	data := v.data()
	data.DurationMS = f.env.now().Sub(began).Milliseconds()
	return Outcome{Volume: v, Results: []events.Result{{
		Type: events.ResultType(events.VolumeDeleted, events.PhaseEnd), Source: f.source(v),
		Time: f.env.now(), Data: data,
	}}}
}

// Fail answers volume.delete.error; a driver failure marks the volume
// error_deleting (Cinder's status), a refusal changes nothing.
func (f *DeleteVolume) Fail(r *Request, err error) Outcome {
	v := f.subject(r)
	v.Status = StatusErrorDeleting
	data := v.data()
	data.Error = ErrorInfo(err)
	out := Outcome{Results: []events.Result{{
		Type: events.ResultType(events.VolumeDeleted, events.PhaseError), Source: f.source(v),
		Time: f.env.now(), Data: data,
	}}}
	var refusal *Failure
	if r.Volume != nil && r.Volume.ProjectID == r.Input.Payload.Project() && !errors.As(err, &refusal) {
		out.Volume = v
	}
	if errors.As(err, &refusal) && refusal.Code == CodeForbidden {
		// Say nothing of another project's volume beyond the refusal.
		out.Results[0].Data = events.ResultData{TenantID: r.Input.Payload.Project(), VolumeID: r.Input.Payload.Volume(), Status: StatusErrorDeleting, Error: data.Error}
		out.Results[0].Source = "/ember/" + f.env.Instance
	}
	return out
}

// subject is the record as the requester may see it (visible).
func (f *DeleteVolume) subject(r *Request) *Volume { return visible(r) }

func (f *DeleteVolume) source(v *Volume) string {
	if v.Backend == "" {
		return "/ember/" + f.env.Instance
	}
	return backendSource(v.Backend)
}
