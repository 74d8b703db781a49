package functions

import (
	"context"
	"errors"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// CreateVolume serves volume.requested: a blank volume on the chosen backend.
type CreateVolume struct{ env *Env }

func (f *CreateVolume) Type() string { return events.VolumeRequested }

func (f *CreateVolume) Start(r *Request) events.Result {
	p := r.Input.Payload.(*events.VolumeRequest)
	backend, _ := f.pickBackend(p)
	return events.Result{
		Type:   events.ResultType(events.VolumeRequested, events.PhaseStart),
		Source: f.source(backend),
		Time:   r.Input.Event.Time(),
		Data:   requested(p, backend, StatusCreating).data(),
	}
}

func (f *CreateVolume) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.VolumeRequest)
	began := f.env.now()
	if v := r.Volume; v != nil {
		switch {
		case v.ProjectID != p.ProjectID:
			return f.Fail(r, ownedBy(v, p.ProjectID)), nil
		case v.Tombstoned():
			return f.Fail(r, fail(CodeVolumeDeleted, "volume %s was deleted at %s; a deleted id is never reused", v.ID, v.DeletedAt)), nil
		case v.SizeGB != p.SizeGB || (p.Backend != "" && p.Backend != v.Backend):
			return f.Fail(r, fail(string(drivers.KindConflict), "volume %s exists with size %d GB on %s; requested %d GB", v.ID, v.SizeGB, v.Backend, p.SizeGB)), nil
		case v.Status == StatusAvailable || v.Status == StatusInUse:
			// CSI: a create of what exists with the same parameters is success.
			return f.done(r, v, began), nil
		}
		// A create that failed before (status error) may be tried again.
	}
	if p.Source != nil {
		return f.Fail(r, fail(string(drivers.KindNotSupported), "creating a volume from a %s is not supported yet", p.Source.Kind)), nil
	}
	backend, err := f.pickBackend(p)
	if err != nil {
		return f.Fail(r, err), nil
	}
	d, err := f.env.driver(backend)
	if err != nil {
		return f.Fail(r, err), nil
	}
	mu, err := d.CreateVolume(ctx, drivers.Volume{ID: p.VolumeID, SizeGB: p.SizeGB})
	if err != nil {
		if Retryable(err) {
			return Outcome{}, err
		}
		return f.Fail(r, err), nil
	}
	v := requested(p, backend, StatusAvailable)
	now := events.FormatTime(f.env.now())
	v.CreatedAt, v.LaunchedAt, v.ProviderLocation = now, now, mu.ProviderLocation
	return f.done(r, v, began), nil
}

func (f *CreateVolume) done(r *Request, v *Volume, began time.Time) Outcome {
	data := v.data()
	data.DurationMS = f.env.now().Sub(began).Milliseconds()
	return Outcome{
		Volume: v,
		Results: []events.Result{{
			Type: events.ResultType(events.VolumeRequested, events.PhaseEnd), Source: backendSource(v.Backend),
			Time: f.env.now(), Data: data,
		}},
	}
}

// Fail answers volume.create.error. A driver failure leaves a record in
// status error (the volume may be half made; a delete cleans it up, a
// repeated create tries again); a refusal leaves the registry as it was.
func (f *CreateVolume) Fail(r *Request, err error) Outcome {
	p := r.Input.Payload.(*events.VolumeRequest)
	backend, _ := f.pickBackend(p)
	data := requested(p, backend, StatusError).data()
	data.Error = ErrorInfo(err)
	out := Outcome{Results: []events.Result{{
		Type: events.ResultType(events.VolumeRequested, events.PhaseError), Source: f.source(backend),
		Time: f.env.now(), Data: data,
	}}}
	var refusal *Failure
	if !errors.As(err, &refusal) && !drivers.IsKind(err, drivers.KindInvalid) && !drivers.IsKind(err, drivers.KindNotSupported) {
		v := requested(p, backend, StatusError)
		if r.Volume != nil && r.Volume.Status == StatusError {
			v.CreatedAt = r.Volume.CreatedAt
		}
		if v.CreatedAt == "" {
			v.CreatedAt = events.FormatTime(f.env.now())
		}
		out.Volume = v
	}
	return out
}

// pickBackend chooses where a new volume goes: the backend the request names,
// else its volume type's backend, else the default.
func (f *CreateVolume) pickBackend(p *events.VolumeRequest) (string, error) {
	name := p.Backend
	if name == "" && p.VolumeType != "" {
		name = f.env.VolumeTypes[p.VolumeType]
	}
	if name == "" {
		name = f.env.DefaultBackend
	}
	if name == "" && len(f.env.Backends) == 1 {
		for n := range f.env.Backends {
			name = n
		}
	}
	if name == "" {
		return "", fail(CodeNoValidBackend, "no backend named, no backend for volume type %q and no default backend", p.VolumeType)
	}
	if _, ok := f.env.Backends[name]; !ok {
		return "", fail(CodeNoValidBackend, "backend %q is not configured here", name)
	}
	return name, nil
}

func (f *CreateVolume) source(backend string) string {
	if backend == "" {
		return "/ember/" + f.env.Instance
	}
	return backendSource(backend)
}

// requested is the record a volume.requested describes.
func requested(p *events.VolumeRequest, backend, status string) *Volume {
	return &Volume{
		ID: p.VolumeID, ProjectID: p.ProjectID, UserID: p.UserID, Backend: backend, SizeGB: p.SizeGB,
		Status: status, Name: p.Name, VolumeType: p.VolumeType, AvailabilityZone: p.AvailabilityZone,
		Metadata: p.Metadata,
	}
}
