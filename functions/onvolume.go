package functions

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// onVolume is the shape the functions that act on an existing volume share
// (extend, attach, detach, snapshots, backups, upload, migrate): the same
// checks before the driver runs, the same .start/.end/.error results, the
// same rule for what a failure leaves in the registry.
type onVolume struct {
	env *Env
	typ string
	// active is the status .start reports while the work runs (extending…).
	active string
	// failed is the record status a driver failure leaves ("": unchanged).
	failed string
	// data describes the request's subject in a result; nil means the
	// volume's own fields.
	data func(r *Request, v *Volume, status string) events.ResultData
}

func (o *onVolume) Type() string { return o.typ }

func (o *onVolume) Start(r *Request) events.Result {
	v := o.subject(r)
	return events.Result{Type: events.ResultType(o.typ, events.PhaseStart), Source: o.source(v),
		Time: r.Input.Event.Time(), Data: o.describe(r, v, o.active)}
}

// end is the .end outcome that stores v.
func (o *onVolume) end(r *Request, v *Volume, began time.Time, status string, extra func(*events.ResultData)) Outcome {
	d := o.describe(r, v, status)
	d.DurationMS = o.env.now().Sub(began).Milliseconds()
	if extra != nil {
		extra(&d)
	}
	return Outcome{Volume: v, Results: []events.Result{{Type: events.ResultType(o.typ, events.PhaseEnd),
		Source: o.source(v), Time: o.env.now(), Data: d}}}
}

// gone answers <op>.end for a request on a volume that is not there (no
// record, or a tombstone): undoing what does not exist is success. The
// registry stays as it was: a record written here would be a volume that
// never existed, with no backend and no status.
func (o *onVolume) gone(r *Request, began time.Time, status string) Outcome {
	out := o.end(r, o.subject(r), began, status, nil)
	out.Volume = nil
	return out
}

// Fail answers <op>.error. A refusal (a *Failure, invalid input, nothing
// there) leaves the registry as it was; a driver failure records o.failed
// when the operation has a failure status (Cinder's error_extending…). A
// request for another project's volume learns nothing about it.
func (o *onVolume) Fail(r *Request, err error) Outcome {
	v := o.subject(r)
	status := StatusError
	if o.failed != "" {
		status = o.failed
	}
	d := o.describe(r, v, status)
	d.Error = ErrorInfo(err)
	res := events.Result{Type: events.ResultType(o.typ, events.PhaseError), Source: o.source(v), Time: o.env.now(), Data: d}
	var refusal *Failure
	if errors.As(err, &refusal) && refusal.Code == CodeForbidden {
		p := r.Input.Payload
		res.Data = events.ResultData{TenantID: p.Project(), VolumeID: p.Volume(), Status: status, Error: d.Error}
		res.Source = "/ember/" + o.env.Instance
	}
	out := Outcome{Results: []events.Result{res}}
	if o.failed != "" && r.Volume != nil && r.Volume.ProjectID == r.Input.Payload.Project() && !r.Volume.Tombstoned() && !isRefusal(err) {
		v.Status = o.failed
		out.Volume = v
	}
	return out
}

// isRefusal reports whether err refused the request before anything was
// done: the registry should not change.
func isRefusal(err error) bool {
	var f *Failure
	return errors.As(err, &f) || drivers.IsKind(err, drivers.KindInvalid) ||
		drivers.IsKind(err, drivers.KindNotSupported) || drivers.IsKind(err, drivers.KindNotFound) ||
		drivers.IsKind(err, drivers.KindConflict) || drivers.IsKind(err, drivers.KindBusy)
}

func (o *onVolume) describe(r *Request, v *Volume, status string) events.ResultData {
	if o.data != nil {
		return o.data(r, v, status)
	}
	d := v.data()
	d.Status = status
	return d
}

// subject is a copy of the record, or a minimal one for an unknown volume
// or for another project's: every result of a request (.start included,
// which is built before any check runs) describes what the requester may
// see, and a stranger may see nothing of a volume but its id.
func (o *onVolume) subject(r *Request) *Volume { return visible(r) }

func (o *onVolume) source(v *Volume) string {
	if v.Backend == "" {
		return "/ember/" + o.env.Instance
	}
	return backendSource(v.Backend)
}

// existing checks that the request's volume is there, the requester's, and
// in one of the statuses the operation accepts; it returns the volume's
// record (a copy) and driver.
func (o *onVolume) existing(r *Request, statuses ...string) (*Volume, drivers.Driver, error) {
	v := r.Volume
	if v == nil || v.Tombstoned() {
		return nil, nil, drivers.Errorf(drivers.KindNotFound, o.typ, "volume %s does not exist", r.Input.Payload.Volume())
	}
	if err := ownedBy(v, r.Input.Payload.Project()); err != nil {
		return nil, nil, err
	}
	if err := inStatus(v, statuses...); err != nil {
		return nil, nil, err
	}
	d, err := o.env.driver(v.Backend)
	if err != nil {
		return nil, nil, err
	}
	return v.Clone(), d, nil
}

// inStatus refuses a volume whose status is not one of statuses.
func inStatus(v *Volume, statuses ...string) error {
	for _, s := range statuses {
		if v.Status == s {
			return nil
		}
	}
	if v.Status == StatusInUse {
		return fail(string(drivers.KindBusy), "volume %s is attached (in-use); detach it first", v.ID)
	}
	return fail(CodeInvalid, "volume %s is %s; this operation needs it %v", v.ID, v.Status, statuses)
}

// driverFailure sorts a driver error: transient ones go back to the router
// to retry, permanent ones become the function's failure outcome.
func driverFailure(f interface {
	Fail(*Request, error) Outcome
}, r *Request, err error) (Outcome, error) {
	if Retryable(err) {
		return Outcome{}, err
	}
	return f.Fail(r, err), nil
}

// dv is what a driver needs to know of a volume record.
func dv(v *Volume) drivers.Volume {
	return drivers.Volume{ID: v.ID, SizeGB: v.SizeGB, ProviderLocation: v.ProviderLocation}
}

// stream copies from read to write through a pipe, reporting progress as
// bytes pass of total. Either side may stop early: a writer that finds its
// work done already (a redelivered upload) returns without reading, and
// the reader is then told to stop.
func stream(ctx context.Context, r *Request, total int64,
	read func(ctx context.Context, w io.Writer) error, write func(ctx context.Context, rd io.Reader) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	readErr := make(chan error, 1)
	go func() {
		err := read(ctx, pw)
		pw.CloseWithError(err)
		readErr <- err
	}()
	c := &counting{r: pr, total: total, req: r}
	werr := write(ctx, c)
	pr.CloseWithError(errStreamDone)
	cancel()
	<-readErr
	switch {
	case werr != nil:
		return werr
	case c.err != nil:
		// The writer swallowed a read failure: the copy is not whole.
		return c.err
	}
	// The writer read to EOF, which comes only after read succeeded, or
	// stopped early because its work was done: either way read's own
	// error (cut off by us) does not matter.
	return nil
}

var errStreamDone = errors.New("stream: the writer is done")

// counting reports a long copy's progress as its bytes pass.
type counting struct {
	r     io.Reader
	done  int64
	total int64
	req   *Request
	err   error // the first read error other than EOF
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	if n > 0 {
		c.req.progress(min(c.done, c.total), c.total)
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
