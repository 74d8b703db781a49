// Package functions holds Ember's functions: one small file per input type.
// A function takes a decoded request, the registry record of its volume and
// the backends, and returns its results and the record to store. It does not
// know that Kafka or Redis exist: the router delivers, locks and stores.
package functions

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/backupstore"
	"github.com/ember-storage/ember/drivers/imagestore"
	"github.com/ember-storage/ember/events"
)

// Env is what functions share: the configured backends and how to pick one.
type Env struct {
	// Instance names this deployment in result sources before a backend is
	// chosen (/ember/<instance>). It is one name for all replicas, so that a
	// result re-published by another replica is the same event.
	Instance string
	Backends map[string]drivers.Driver
	// VolumeTypes maps a volume_type to a backend name (SPEC §6).
	VolumeTypes map[string]string
	// DefaultBackend serves creates that name no backend and no mapped
	// type; with a scheduler it is the only candidate it weighs for them.
	DefaultBackend string
	// Index finds the volume a snapshot or backup id belongs to (creates
	// from a snapshot name only the snapshot) and keeps those ids unique.
	Index Index
	// Backups is the backup store; nil refuses backups as not supported.
	Backups *backupstore.Store
	// Images stores uploaded images; Fetcher reads the images volumes are
	// created from. Nil refuses those operations as not supported.
	Images  *imagestore.Store
	Fetcher *imagestore.Fetcher
	// Scheduler, when set, places creates that name no backend (SPEC §4
	// scheduling); without one the default or only backend is used.
	Scheduler Scheduler
	Now       func() time.Time
}

// Resource kinds an Index knows.
const (
	KindSnapshot = "snapshot"
	KindBackup   = "backup"
)

// Index maps snapshot and backup ids to their volume, across volumes.
type Index interface {
	// Bind records that the resource id of kind belongs to volumeID, unless
	// it is bound already; it returns the volume it is bound to.
	Bind(ctx context.Context, kind, id, volumeID string) (string, error)
	// Lookup returns the volume id is bound to, "" if none.
	Lookup(ctx context.Context, kind, id string) (string, error)
}

// Scheduler chooses the backend of a new volume from capacity stats.
type Scheduler interface {
	// Pick returns one of p.Candidates that can hold p.SizeGB, or a
	// *Failure with CodeNoValidBackend. It is sticky: a second Pick for
	// the same volume id returns the first answer, so that a create re-run
	// after a crash goes where the first run went.
	Pick(ctx context.Context, p Placement) (string, error)
}

// Placement is what the scheduler is asked to place.
type Placement struct {
	VolumeID   string
	SizeGB     int
	VolumeType string
	// Candidates are the backends allowed: the volume type's, or all.
	Candidates []string
}

// Request is one input as a function sees it.
type Request struct {
	Input *events.Request
	// Volume is the registry record of the request's volume; nil if none.
	Volume *Volume
	// Sources are the registry records of the volumes named by Sources
	// (see Sourced), locked for this request; a missing record is nil.
	Sources map[string]*Volume
	// Progress, when set, reports the percent done of a long copy; the
	// router turns it into <op>.progress results at most once a second.
	Progress func(percent int)
	// Save, when set, stores the volume record before the request ends,
	// only while the request still holds its lock: the checkpoint of a
	// multi-step operation, so that a re-run after a crash resumes it.
	Save func(ctx context.Context, v *Volume) error

	// placed is the backend a create chose, for its failure outcome.
	placed string
}

// Sourced is a function whose requests also read other volumes (a create
// from a snapshot or a clone reads its source): the router locks those
// volumes too, for the whole request, and hands in their records.
type Sourced interface {
	// Sources lists them; an error (the index unreachable) is transient.
	Sources(ctx context.Context, in *events.Request) ([]string, error)
}

// progress reports done of total bytes through r.Progress.
func (r *Request) progress(done, total int64) {
	if r.Progress != nil && total > 0 {
		r.Progress(int(done * 100 / total))
	}
}

// reporting is ctx carrying r.Progress for a copy a driver makes inside
// its backend, which only the driver can measure (drivers.ReportProgress).
func (r *Request) reporting(ctx context.Context) context.Context {
	return drivers.WithProgress(ctx, r.Progress)
}

// Outcome is what a finished request leaves behind.
type Outcome struct {
	// Results are the terminal results (.end or .error), published after the
	// outcome is stored.
	Results []events.Result
	// Volume, when set, replaces the registry record.
	Volume *Volume
}

// Function serves one input type.
type Function interface {
	// Type is the input type it consumes.
	Type() string
	// Start is the .start result: derived from the request and the record
	// alone, so that a re-run publishes the same event.
	Start(r *Request) events.Result
	// Run does the work. A permanent failure comes back as an Outcome with an
	// .error result; an error return is transient (the router retries it,
	// then calls Fail).
	Run(ctx context.Context, r *Request) (Outcome, error)
	// Fail is the outcome when Run's error is not retried any more.
	Fail(r *Request, err error) Outcome
}

// All returns every function served so far, by input type.
func All(env *Env) map[string]Function {
	fs := []Function{&CreateVolume{env}, &DeleteVolume{env}, newExtendVolume(env),
		newAttachVolume(env), newDetachVolume(env), newCreateSnapshot(env), newDeleteSnapshot(env),
		newCreateBackup(env), newRestoreBackup(env), newUploadVolume(env), newMigrateVolume(env)}
	m := make(map[string]Function, len(fs))
	for _, f := range fs {
		m[f.Type()] = f
	}
	return m
}

// Types lists the input types in fs, sorted.
func Types(fs map[string]Function) []string {
	ts := make([]string, 0, len(fs))
	for t := range fs {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// Failure is a permanent error with the code an .error result carries.
type Failure struct {
	Code    string
	Message string
}

func (f *Failure) Error() string { return f.Code + ": " + f.Message }

func fail(code, format string, args ...any) *Failure {
	return &Failure{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error codes of .error results besides the driver kinds (drivers.Kind).
const (
	CodeInvalid        = "invalid"
	CodeForbidden      = "forbidden"
	CodeVolumeDeleted  = "volume_deleted"
	CodeNoValidBackend = "no_valid_backend"
	CodeInternal       = "internal"
)

// ErrorInfo classifies err for an .error result.
func ErrorInfo(err error) *events.ErrorInfo {
	var f *Failure
	if errors.As(err, &f) {
		return &events.ErrorInfo{Code: f.Code, Message: f.Message}
	}
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		return &events.ErrorInfo{Code: CodeInvalid, Message: ve.Error()}
	}
	// A driver's error may quote its storage host: what a requester gets is
	// sanitized (no URLs, no control characters, bounded).
	k := drivers.KindOf(err)
	return &events.ErrorInfo{Code: string(k), Message: drivers.Sanitize(err.Error()), Retryable: k.Retryable()}
}

// Retryable reports whether the router should try err again.
func Retryable(err error) bool {
	var f *Failure
	if errors.As(err, &f) {
		return false
	}
	return drivers.KindOf(err).Retryable()
}

// Rejected is the .error result of a request whose input is invalid: no
// function runs, nothing is touched.
func Rejected(env *Env, in *events.Request, err error) events.Result {
	return events.Result{
		Type:   events.ResultType(in.Type(), events.PhaseError),
		Source: "/ember/" + env.Instance,
		Data:   events.ResultData{Status: "error", Error: ErrorInfo(err)},
	}
}

// Reused is the .error result (conflict) of a request whose key, its
// (source, id) for this type and volume, was used before by a request with
// another payload: the earlier request's results stand, this one runs
// nothing. It says nothing of the earlier request, which may be another
// project's.
func Reused(env *Env, in *events.Request) events.Result {
	r := Rejected(env, in, fail(string(drivers.KindConflict),
		"event id %q from source %q was used before for another %s request on this volume; send a new id",
		events.Truncate(in.ID(), 128), events.Truncate(in.Source(), 128), in.Type()))
	// Its own event id: the earlier request may have had an .error too.
	r.Discriminator = "reused-key"
	return r
}

// Undoer is a function whose effect a stale owner removes when it finds,
// after its fenced complete failed, that the volume was deleted meanwhile
// (see router's undoIfDeleted): out is the outcome that was not stored.
type Undoer interface {
	Undo(ctx context.Context, r *Request, out Outcome) error
}

// backendSource is the result source of work on a backend.
func backendSource(backend string) string { return "/ember/" + backend }

func (env *Env) now() time.Time {
	if env.Now != nil {
		return env.Now()
	}
	return time.Now()
}

// driver returns the named backend's driver.
func (env *Env) driver(name string) (drivers.Driver, error) {
	d, ok := env.Backends[name]
	if !ok {
		return nil, fail(CodeNoValidBackend, "backend %q is not configured here", name)
	}
	return d, nil
}

// visible is a copy of the request's volume record as its requester may
// see it: the whole record when the requester's project owns it, else
// (no record, or another project's) only the ids the request itself named.
func visible(r *Request) *Volume {
	p := r.Input.Payload
	if v := r.Volume; v != nil && v.ProjectID == p.Project() {
		return v.Clone()
	}
	return &Volume{ID: p.Volume(), ProjectID: p.Project()}
}

// ownedBy refuses a request for another project's volume.
func ownedBy(v *Volume, project string) error {
	if v != nil && v.ProjectID != project {
		return fail(CodeForbidden, "volume %s belongs to another project", v.ID)
	}
	return nil
}
