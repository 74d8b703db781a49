package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
)

// Publisher is the one thing delivery needs of Kafka.
type Publisher interface {
	Publish(topic string, msgs ...*message.Message) error
}

// stored is what Complete keeps of a finished request: its terminal results
// (built once, published from here every time) and, when retries ran out,
// the dead letter to publish with them.
type stored struct {
	Results    []events.Record `json:"results"`
	DeadLetter *events.Record  `json:"dead_letter,omitempty"`
	// Fingerprint is the request's (events.Request.Fingerprint): a later
	// request with the same key and another fingerprint reused the key.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// ErrBusy is returned (and the message nacked, to be redelivered after the
// nack delay) while another live owner holds the volume.
var ErrBusy = errors.New("volume busy: another request holds its lock")

// delivery runs one function's requests through the delivery protocol
// (docs/DESIGN.md): decode, claim, start, act, complete, publish, ack.
// Panic recovery and metrics are middleware around it (middleware_*.go).
type delivery struct {
	fn      functions.Function
	env     *functions.Env
	guard   *Guard
	pub     Publisher
	cfg     *Config
	owner   string
	metrics *Metrics
	log     *slog.Logger
	// now is the clock of the progress throttle; nil is time.Now.
	now func() time.Time
}

// handle is a watermill NoPublishHandlerFunc: nil acks (the offset may be
// committed), an error nacks (the message is delivered again). The steps
// read top to bottom; each is a method of job below, in this order.
func (d *delivery) handle(msg *message.Message) error {
	in, answered, err := d.decode(msg)
	if answered {
		return err
	}
	j := &job{d: d, msg: msg, ctx: msg.Context(), in: in, volumeID: in.VolumeID()}
	j.reqKey = RequestKey(in.Type(), j.volumeID, in.Source(), in.ID())
	if answered, err := j.claim(); answered {
		return err
	}
	defer j.release()
	if err := j.start(); err != nil {
		return err
	}
	out, deadLetterReason, err := j.act()
	if err != nil {
		return err
	}
	body, err := j.complete(out, deadLetterReason)
	if err != nil {
		return err
	}
	return j.publish(body, out, deadLetterReason)
}

// decode reads the record. A record that is no CloudEvent is
// dead-lettered; a readable but invalid one is answered with an .error
// derived from it alone (touch nothing). answered means the record is
// dealt with and err is the handler's return.
func (d *delivery) decode(msg *message.Message) (in *events.Request, answered bool, err error) {
	in, derr := events.Decode(events.Headers(msg), msg.Payload, d.fn.Type())
	var envErr *events.EnvelopeError
	switch {
	case errors.As(derr, &envErr):
		setOutcome(msg, "dead_letter")
		return nil, true, d.deadLetter(msg, derr.Error())
	case derr != nil:
		setOutcome(msg, "invalid")
		return nil, true, d.answer(msg, in, functions.Rejected(d.env, in, derr))
	}
	return in, false, nil
}

// answer publishes a result derived from the request alone (a refusal of
// its input, a reused key): nothing was claimed, nothing stored, and a
// redelivery publishes the same event again.
func (d *delivery) answer(msg *message.Message, in *events.Request, r events.Result) error {
	rec, err := events.Build(in, r, d.cfg.OutputMode)
	if err != nil {
		// Every field of such an answer is bounded: this is a bug, and
		// retrying would stop the partition.
		return d.deadLetter(msg, "result not built: "+err.Error())
	}
	return d.publish(rec)
}

// job is one claimed request on its way through the steps.
type job struct {
	d        *delivery
	msg      *message.Message
	ctx      context.Context
	in       *events.Request
	volumeID string
	reqKey   string
	lease    Claim // what the claim returned: lock, token, record
	// locked: the volume's lock (claim.Lock) is ours to give back.
	locked bool
	req    *functions.Request
	// sources are the other volumes' locks the request holds.
	sources []heldLock
}

// claim takes the volume's lock and the request's idempotency record in
// one script. A request done before is answered from storage (or, when its
// key was reused by another request, refused); a busy volume nacks.
func (j *job) claim() (answered bool, err error) {
	d := j.d
	j.lease, err = d.guard.Claim(j.ctx, j.volumeID, j.reqKey, d.owner)
	if err != nil {
		return true, err
	}
	switch j.lease.State {
	case Done:
		if reusedKey(j.lease.Stored, j.in) {
			setOutcome(j.msg, "invalid")
			return true, d.answer(j.msg, j.in, functions.Reused(d.env, j.in))
		}
		setOutcome(j.msg, "duplicate")
		return true, d.publishStored(j.lease.Stored)
	case Busy:
		// The subscriber parks the record (jittered, growing delay): only
		// later records of this volume wait, never the partition.
		setOutcome(j.msg, "busy")
		return true, ErrBusy
	}
	j.locked = true
	j.req = &functions.Request{Input: j.in}
	if j.lease.Volume != nil {
		j.req.Volume = new(functions.Volume)
		if err := json.Unmarshal(j.lease.Volume, j.req.Volume); err != nil {
			j.release()
			return true, fmt.Errorf("registry record of %s: %w", j.volumeID, err)
		}
	}
	if j.sources, err = d.lockSources(j.ctx, j.in, j.volumeID, j.reqKey, j.req); err != nil {
		j.release()
		if errors.Is(err, ErrBusy) {
			setOutcome(j.msg, "busy")
		}
		return true, err
	}
	return false, nil
}

// release gives back the locks still held: the volume's unless complete
// released it or the lease was lost (then it is not ours), and the
// sources'.
func (j *job) release() {
	ctx := context.WithoutCancel(j.ctx)
	if j.locked {
		_ = j.d.guard.Release(ctx, j.volumeID, j.lease.Lock)
		j.locked = false
	}
	j.d.releaseSources(ctx, j.sources)
	j.sources = nil
}

// start publishes .start, built from the request and the record alone, so
// that a re-run publishes the same event.
func (j *job) start() error {
	d := j.d
	rec, err := events.Build(j.in, d.fn.Start(j.req), d.cfg.OutputMode)
	if err != nil {
		j.release()
		setOutcome(j.msg, "dead_letter")
		return d.deadLetter(j.msg, "start result not built: "+err.Error())
	}
	if err := d.publish(rec); err != nil {
		return err
	}
	crashPoint(d.cfg.CrashAt, "after-start")
	return nil
}

// act runs the function while the leases of every lock it holds are kept.
// A lost lease means another owner may have taken over: its outcome stands,
// and this one is not stored or published.
func (j *job) act() (functions.Outcome, string, error) {
	d := j.d
	actx, stop := d.guard.keepLease(j.ctx, j.volumeID, j.lease.Lock, j.lease.At)
	stops := []func() bool{stop}
	for _, h := range j.sources {
		var s func() bool
		actx, s = d.guard.keepLease(actx, h.volumeID, h.lock, h.at)
		stops = append(stops, s)
	}
	j.req.Progress = d.progress(actx, j.in)
	j.req.Save = func(sctx context.Context, v *functions.Volume) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return d.guard.Save(sctx, j.volumeID, j.lease.Lock, b)
	}
	out, deadLetterReason := d.act(actx, j.req)
	lost := false
	for i := len(stops) - 1; i >= 0; i-- {
		lost = stops[i]() || lost
	}
	if lost {
		d.log.Warn("lease lost while the driver ran; not publishing", "type", j.in.Type(), "volume", j.volumeID, "token", j.lease.Token)
		j.locked = false
		setOutcome(j.msg, "lease_lost")
		d.undoIfDeleted(j.ctx, j.req, out, j.volumeID)
		return out, "", ErrLeaseLost
	}
	if err := j.ctx.Err(); err != nil { // shutting down mid-request
		return out, "", err
	}
	crashPoint(d.cfg.CrashAt, "after-act")
	return out, deadLetterReason, nil
}

// complete is the commit point: the results (built once, with the request's
// fingerprint) and the registry record are stored and the lock released in
// one fenced script. A stale token stores nothing.
func (j *job) complete(out functions.Outcome, deadLetterReason string) ([]byte, error) {
	d := j.d
	st := stored{Fingerprint: j.in.Fingerprint()}
	for _, r := range out.Results {
		rec, err := events.Build(j.in, r, d.cfg.OutputMode)
		if err != nil {
			// A result that cannot be built never will be: park the
			// request rather than stop the partition.
			j.release()
			setOutcome(j.msg, "dead_letter")
			return nil, d.deadLetter(j.msg, "result not built: "+err.Error())
		}
		st.Results = append(st.Results, rec)
	}
	if deadLetterReason != "" {
		dl := d.deadLetterRecord(j.msg, deadLetterReason)
		st.DeadLetter = &dl
	}
	body, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	var vol []byte
	if out.Volume != nil {
		if vol, err = json.Marshal(out.Volume); err != nil {
			return nil, err
		}
	}
	if err := d.guard.Complete(j.ctx, j.volumeID, j.reqKey, j.lease.Lock, body, vol); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			d.log.Warn("fencing token stale at complete; not publishing", "type", j.in.Type(), "volume", j.volumeID, "token", j.lease.Token)
			j.locked = false
			setOutcome(j.msg, "lease_lost")
			d.undoIfDeleted(j.ctx, j.req, out, j.volumeID)
		}
		return nil, err
	}
	j.locked = false
	crashPoint(d.cfg.CrashAt, "after-complete")
	return body, nil
}

// publish sends the stored results (and the dead letter, when retries ran
// out); then the message is acked. A failure here nacks: the redelivery
// finds the request done and publishes the same bytes.
func (j *job) publish(body []byte, out functions.Outcome, deadLetterReason string) error {
	if err := j.d.publishStored(body); err != nil {
		return err
	}
	crashPoint(j.d.cfg.CrashAt, "after-publish")
	switch {
	case len(out.Results) > 0 && out.Results[0].Data.Error != nil && deadLetterReason != "":
		setOutcome(j.msg, "dead_letter")
	case len(out.Results) > 0 && out.Results[0].Data.Error != nil:
		setOutcome(j.msg, "failed")
	default:
		setOutcome(j.msg, "done")
	}
	return nil
}

// reusedKey reports whether the done request stored under in's key was
// another request: same type, volume, source and id, another payload.
func reusedKey(body []byte, in *events.Request) bool {
	var st stored
	if err := json.Unmarshal(body, &st); err != nil || st.Fingerprint == "" {
		return false // unreadable here, or stored before fingerprints: publishStored decides
	}
	return st.Fingerprint != in.Fingerprint()
}

// undoIfDeleted is the stale owner's clean-up: its outcome was not stored
// (another owner took the volume over), yet a storage command it launched
// may have landed after the volume was deleted, leaving an object nobody
// will ever delete. When the registry now holds the volume's tombstone,
// the function undoes what this run made (functions.Undoer). A deleted id
// is never created again, so nothing can race the undo. Failures are
// logged: reconcile reports what is left.
func (d *delivery) undoIfDeleted(ctx context.Context, req *functions.Request, out functions.Outcome, volumeID string) {
	u, ok := d.fn.(functions.Undoer)
	if !ok || out.Volume == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	b, err := d.guard.Volume(ctx, volumeID)
	if err != nil || b == nil {
		return
	}
	var now functions.Volume
	if err := json.Unmarshal(b, &now); err != nil || !now.Tombstoned() {
		return
	}
	if err := u.Undo(ctx, req, out); err != nil {
		d.log.Warn("stale owner could not remove what it made after the volume was deleted", "volume", volumeID, "err", err)
		return
	}
	d.log.Info("stale owner removed what it made after the volume was deleted", "volume", volumeID)
}

// act runs the function, retrying transient errors with exponential backoff
// while the lease is kept. When retries run out the function's failure
// outcome is returned with the reason to dead-letter the input.
func (d *delivery) act(ctx context.Context, req *functions.Request) (functions.Outcome, string) {
	backoff := d.cfg.Retry.Initial
	for attempt := 1; ; attempt++ {
		out, err := d.runOnce(ctx, req)
		if err == nil {
			return out, ""
		}
		if !functions.Retryable(err) {
			return d.fn.Fail(req, err), ""
		}
		if attempt >= d.cfg.Retry.Attempts || ctx.Err() != nil {
			return d.fn.Fail(req, err), fmt.Sprintf("retries exhausted after %d attempts: %v", attempt, err)
		}
		d.log.Warn("transient failure; retrying", "type", req.Input.Type(), "attempt", attempt, "backoff", backoff, "err", err)
		d.metrics.retries.WithLabelValues(req.Input.Type()).Inc()
		// Full jitter keeps retries of many requests from marching in step.
		wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, d.cfg.Retry.Ceiling)
	}
}

// runOnce calls the function, turning a panic into a permanent failure so
// that the request still gets its .error result.
func (d *delivery) runOnce(ctx context.Context, req *functions.Request) (out functions.Outcome, err error) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("panic in function", "type", req.Input.Type(), "panic", r)
			out = d.fn.Fail(req, &functions.Failure{Code: functions.CodeInternal, Message: fmt.Sprintf("internal error: %v", r)})
			err = nil
		}
	}()
	return d.fn.Run(ctx, req)
}

func (d *delivery) publishStored(body []byte) error {
	var st stored
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("stored results: %w", err)
	}
	if st.DeadLetter != nil {
		if err := d.pub.Publish(d.cfg.TopicPrefix+st.DeadLetter.Type, st.DeadLetter.Message()); err != nil {
			return err
		}
	}
	return d.publish(st.Results...)
}

// publish sends records to their topics, in order, waiting for the broker.
func (d *delivery) publish(recs ...events.Record) error {
	for _, r := range recs {
		if err := d.pub.Publish(d.cfg.TopicPrefix+r.Type, r.Message()); err != nil {
			return fmt.Errorf("publish %s: %w", r.Type, err)
		}
	}
	return nil
}
