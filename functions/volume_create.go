package functions

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/imagestore"
	"github.com/ember-storage/ember/events"
)

// CreateVolume serves volume.requested: a blank volume on the chosen backend.
type CreateVolume struct{ env *Env }

func (f *CreateVolume) Type() string { return events.VolumeRequested }

func (f *CreateVolume) Start(r *Request) events.Result {
	p := r.Input.Payload.(*events.VolumeRequest)
	backend := f.knownBackend(r, p)
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
	if v := r.Volume; v != nil && !(v.ProjectID != p.ProjectID && v.neverExisted()) {
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
	backend, err := f.place(ctx, r, p)
	if err != nil {
		if Retryable(err) {
			return Outcome{}, err
		}
		return f.Fail(r, err), nil
	}
	r.placed = backend
	d, err := f.env.driver(backend)
	if err != nil {
		return f.Fail(r, err), nil
	}
	mu, err := f.make(ctx, r, p, d)
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

// Undo deletes the volume this run made on its backend (Undoer): the
// stale owner's clean-up after a delete that ran before its create landed.
func (f *CreateVolume) Undo(ctx context.Context, r *Request, out Outcome) error {
	v := out.Volume
	if v == nil || v.Backend == "" || v.Status != StatusAvailable {
		return nil
	}
	d, err := f.env.driver(v.Backend)
	if err != nil {
		return err
	}
	return d.DeleteVolume(ctx, dv(v))
}

// make creates the volume on d: blank, or from its source.
func (f *CreateVolume) make(ctx context.Context, r *Request, p *events.VolumeRequest, d drivers.Driver) (drivers.ModelUpdate, error) {
	v := drivers.Volume{ID: p.VolumeID, SizeGB: p.SizeGB}
	if p.Source == nil {
		return d.CreateVolume(ctx, v)
	}
	switch p.Source.Kind {
	case SourceSnapshot:
		src, err := f.sourceVolume(r, p)
		if err != nil {
			return drivers.ModelUpdate{}, err
		}
		s, ok := src.Snapshots[p.Source.ID]
		if !ok || s.Status != StatusAvailable {
			return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindNotFound, "create from snapshot", "snapshot %s is not an available snapshot", p.Source.ID)
		}
		if p.SizeGB < s.VolumeSizeGB {
			return drivers.ModelUpdate{}, fail(CodeInvalid, "size %d GB is smaller than snapshot %s (%d GB)", p.SizeGB, s.ID, s.VolumeSizeGB)
		}
		return d.CreateVolumeFromSnapshot(r.reporting(ctx), v, drivers.Snapshot{ID: s.ID, VolumeID: src.ID, VolumeSizeGB: s.VolumeSizeGB,
			ProviderLocation: s.ProviderLocation})
	case SourceVolume:
		src, err := f.sourceVolume(r, p)
		if err != nil {
			return drivers.ModelUpdate{}, err
		}
		if err := inStatus(src, StatusAvailable); err != nil {
			return drivers.ModelUpdate{}, err
		}
		if p.SizeGB < src.SizeGB {
			return drivers.ModelUpdate{}, fail(CodeInvalid, "size %d GB is smaller than source volume %s (%d GB)", p.SizeGB, src.ID, src.SizeGB)
		}
		return d.CreateClonedVolume(r.reporting(ctx), v, dv(src))
	case SourceImage:
		return f.fromImage(ctx, r, p, d)
	case SourceBackup:
		return f.fromBackup(ctx, r, p, d)
	}
	return drivers.ModelUpdate{}, fail(CodeInvalid, "source kind %q: want snapshot, volume, image or backup", p.Source.Kind)
}

// Source kinds of volume.requested.
const (
	SourceSnapshot = "snapshot"
	SourceVolume   = "volume"
	SourceImage    = "image"
	SourceBackup   = "backup"
)

// Sources names the volume a create reads: the source volume of a clone,
// the parent volume of a snapshot (found through the index). The router
// locks it for the whole create (SPEC §4).
func (f *CreateVolume) Sources(ctx context.Context, in *events.Request) ([]string, error) {
	p := in.Payload.(*events.VolumeRequest)
	if p.Source == nil {
		return nil, nil
	}
	switch p.Source.Kind {
	case SourceVolume:
		return []string{p.Source.ID}, nil
	case SourceSnapshot:
		if f.env.Index == nil {
			return nil, nil
		}
		// An unknown snapshot has no volume to lock: Run answers not_found.
		id, err := f.env.Index.Lookup(ctx, KindSnapshot, p.Source.ID)
		if err != nil || id == "" {
			return nil, err
		}
		return []string{id}, nil
	}
	return nil, nil
}

// sourceVolume is the locked record of the create's source volume.
func (f *CreateVolume) sourceVolume(r *Request, p *events.VolumeRequest) (*Volume, error) {
	var src *Volume
	for _, v := range r.Sources {
		src = v
	}
	if src == nil || src.Tombstoned() {
		return nil, drivers.Errorf(drivers.KindNotFound, "create from "+p.Source.Kind, "source %s %s does not exist", p.Source.Kind, p.Source.ID)
	}
	if src.ProjectID != p.ProjectID {
		return nil, fail(CodeForbidden, "source %s %s belongs to another project", p.Source.Kind, p.Source.ID)
	}
	return src, nil
}

// fromImage creates a blank volume and writes the image into it: Fetcher
// allows only configured URL prefixes and turns qcow2 into raw. An image
// inside the image store is read only by its owner project, or by all when
// public; another project's is refused (forbidden) before anything is
// made, and the refusal says no more than that.
func (f *CreateVolume) fromImage(ctx context.Context, r *Request, p *events.VolumeRequest, d drivers.Driver) (drivers.ModelUpdate, error) {
	if f.env.Fetcher == nil {
		return drivers.ModelUpdate{}, fail(string(drivers.KindNotSupported), "no image source is configured (images.allowed_prefixes)")
	}
	size, err := drivers.Bytes(p.SizeGB)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	fetch := *f.env.Fetcher
	fetch.MaxSize = size
	fetch.Images, fetch.Project = f.env.Images, p.ProjectID
	img, length, err := fetch.Open(ctx, p.Source.URL)
	if errors.Is(err, imagestore.ErrForbidden) {
		return drivers.ModelUpdate{}, fail(CodeForbidden, "source image belongs to another project")
	}
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	defer img.Close()
	mu, err := d.CreateVolume(ctx, drivers.Volume{ID: p.VolumeID, SizeGB: p.SizeGB})
	if err != nil {
		return mu, err
	}
	err = d.WriteVolume(ctx, drivers.Volume{ID: p.VolumeID, SizeGB: p.SizeGB, ProviderLocation: mu.ProviderLocation},
		&counting{r: img, total: length, req: r})
	return mu, err
}

// fromBackup creates a blank volume and restores the backup into it.
func (f *CreateVolume) fromBackup(ctx context.Context, r *Request, p *events.VolumeRequest, d drivers.Driver) (drivers.ModelUpdate, error) {
	if f.env.Backups == nil {
		return drivers.ModelUpdate{}, fail(string(drivers.KindNotSupported), "no backup store is configured (backups.dir)")
	}
	meta, err := backupOf(f.env, p.Source.ID, p.ProjectID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if p.SizeGB < meta.SizeGB {
		return drivers.ModelUpdate{}, fail(CodeInvalid, "size %d GB is smaller than backup %s (%d GB)", p.SizeGB, meta.BackupID, meta.SizeGB)
	}
	mu, err := d.CreateVolume(ctx, drivers.Volume{ID: p.VolumeID, SizeGB: p.SizeGB})
	if err != nil {
		return mu, err
	}
	v := &Volume{ID: p.VolumeID, SizeGB: p.SizeGB, ProviderLocation: mu.ProviderLocation}
	return mu, restore(ctx, f.env, r, meta, d, v)
}

// place chooses the backend of a new volume. A copy of a snapshot or a
// volume goes where its source is (the drivers copy within a backend);
// otherwise the request's backend, its volume type's, the scheduler's
// choice among all, or the default.
func (f *CreateVolume) place(ctx context.Context, r *Request, p *events.VolumeRequest) (string, error) {
	typed, err := f.typeBackend(p)
	if err != nil {
		return "", err
	}
	if p.Source != nil && (p.Source.Kind == SourceSnapshot || p.Source.Kind == SourceVolume) {
		src, err := f.sourceVolume(r, p)
		if err != nil {
			return "", err
		}
		if p.Backend != "" && p.Backend != src.Backend {
			return "", fail(CodeInvalid, "a volume from a %s is made on its source's backend %s, not %s; migrate it afterwards", p.Source.Kind, src.Backend, p.Backend)
		}
		return src.Backend, nil
	}
	if p.Backend != "" || f.env.Scheduler == nil {
		return f.pickBackend(p)
	}
	// The volume type's backend, else the default backend, is the only
	// candidate: the scheduler still checks that it has room. Neither
	// configured: every backend.
	candidates := []string{}
	if typed != "" {
		candidates = append(candidates, typed)
	} else if f.env.DefaultBackend != "" {
		candidates = append(candidates, f.env.DefaultBackend)
	} else {
		for name := range f.env.Backends {
			candidates = append(candidates, name)
		}
		sort.Strings(candidates)
	}
	return f.env.Scheduler.Pick(ctx, Placement{VolumeID: p.VolumeID, SizeGB: p.SizeGB, VolumeType: p.VolumeType, Candidates: candidates})
}

// knownBackend is the backend a create goes to as far as the request (and
// the source record) tell, without asking the scheduler: what .start and
// a refusal report. "" means not known before scheduling.
func (f *CreateVolume) knownBackend(r *Request, p *events.VolumeRequest) string {
	if r.placed != "" {
		return r.placed
	}
	if p.Source != nil && (p.Source.Kind == SourceSnapshot || p.Source.Kind == SourceVolume) {
		if src, err := f.sourceVolume(r, p); err == nil {
			return src.Backend
		}
		return ""
	}
	if p.Backend == "" && f.env.Scheduler != nil {
		return ""
	}
	name, _ := f.pickBackend(p)
	return name
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
	backend := f.knownBackend(r, p)
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

// typeBackend is the backend volume_types maps the request's volume_type
// to. When volume_types is configured, a type it does not list is refused
// (Cinder: VolumeTypeNotFound) rather than placed as if untyped: a typo
// would otherwise put the volume on a backend its type was meant to keep it
// off. Without volume_types a type is only a label ("" here).
func (f *CreateVolume) typeBackend(p *events.VolumeRequest) (string, error) {
	if p.VolumeType == "" || len(f.env.VolumeTypes) == 0 {
		return "", nil
	}
	name, ok := f.env.VolumeTypes[p.VolumeType]
	if !ok {
		known := make([]string, 0, len(f.env.VolumeTypes))
		for t := range f.env.VolumeTypes {
			known = append(known, t)
		}
		sort.Strings(known)
		return "", fail(CodeInvalid, "volume_type %q is not configured (volume_types: %s)", p.VolumeType, strings.Join(known, ", "))
	}
	return name, nil
}

// pickBackend chooses where a new volume goes: the backend the request names,
// else its volume type's backend, else the default.
func (f *CreateVolume) pickBackend(p *events.VolumeRequest) (string, error) {
	typed, err := f.typeBackend(p)
	if err != nil {
		return "", err
	}
	name := p.Backend
	if name == "" {
		name = typed
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
