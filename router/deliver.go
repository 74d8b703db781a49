package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"
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

// delivery runs one function's requests through the protocol of
// DELIVERY.md: decode, claim, start, act, complete, publish, ack.
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

// handle is a watermill NoPublishHandlerFunc: nil acks (the offset is
// committed), an error nacks (the message is redelivered).
func (d *delivery) handle(msg *message.Message) (err error) {
	typ := d.fn.Type()
	began := time.Now()
	outcome := "error"
	defer func() {
		if r := recover(); r != nil {
			// A bug, not bad luck: redelivering would crash again. Park the
			// message where an operator will see it.
			d.log.Error("panic in delivery; dead-lettering", "type", typ, "panic", r)
			err = d.deadLetter(msg, fmt.Sprintf("panic: %v", r))
			outcome = "dead_letter"
		}
		d.metrics.observe(typ, outcome, time.Since(began))
	}()

	in, derr := events.Decode(events.Headers(msg), msg.Payload, typ)
	var envErr *events.EnvelopeError
	switch {
	case errors.As(derr, &envErr):
		outcome = "dead_letter"
		return d.deadLetter(msg, derr.Error())
	case derr != nil:
		// Readable but invalid: answer why, touch nothing. The answer is
		// derived from the request alone, so a redelivery repeats it exactly.
		outcome = "invalid"
		return d.answer(msg, in, functions.Rejected(d.env, in, derr))
	}

	volumeID := in.VolumeID()
	reqKey := RequestKey(in.Type(), volumeID, in.Source(), in.ID())
	claim, err := d.guard.Claim(msg.Context(), volumeID, reqKey, d.owner)
	if err != nil {
		return err
	}
	switch claim.State {
	case Done:
		if reusedKey(claim.Stored, in) {
			outcome = "invalid"
			return d.answer(msg, in, functions.Reused(d.env, in))
		}
		outcome = "duplicate"
		return d.publishStored(claim.Stored)
	case Busy:
		outcome = "busy"
		d.jitter(msg.Context())
		return ErrBusy
	}
	outcome, err = d.run(msg, in, volumeID, reqKey, claim)
	return err
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

// reusedKey reports whether the done request stored under in's key was
// another request: same type, volume, source and id, another payload.
func reusedKey(body []byte, in *events.Request) bool {
	var st stored
	if err := json.Unmarshal(body, &st); err != nil || st.Fingerprint == "" {
		return false // unreadable here, or stored before fingerprints: publishStored decides
	}
	return st.Fingerprint != in.Fingerprint()
}

// jitter waits a random part of the nack delay before a busy request is
// nacked, so that two requests contending for one volume do not retry in
// step (the subscriber then waits the nack delay itself).
func (d *delivery) jitter(ctx context.Context) {
	if d.cfg.NackDelay <= 0 {
		return
	}
	select {
	case <-time.After(time.Duration(rand.Int64N(int64(d.cfg.NackDelay)))):
	case <-ctx.Done():
	}
}

// run does a claimed request: start, act (with the lease kept), complete,
// publish. Any error return leaves the request to be redelivered.
func (d *delivery) run(msg *message.Message, in *events.Request, volumeID, reqKey string, claim Claim) (string, error) {
	ctx := msg.Context()
	req := &functions.Request{Input: in}
	if claim.Volume != nil {
		req.Volume = new(functions.Volume)
		if err := json.Unmarshal(claim.Volume, req.Volume); err != nil {
			_ = d.guard.Release(ctx, volumeID, claim.Lock)
			return "error", fmt.Errorf("registry record of %s: %w", volumeID, err)
		}
	}
	held, err := d.lockSources(ctx, in, volumeID, reqKey, req)
	if err != nil {
		_ = d.guard.Release(context.WithoutCancel(ctx), volumeID, claim.Lock)
		if errors.Is(err, ErrBusy) {
			return "busy", err
		}
		return "error", err
	}
	defer d.releaseSources(ctx, held)
	release := func(err error) (string, error) {
		_ = d.guard.Release(context.WithoutCancel(ctx), volumeID, claim.Lock)
		return "error", err
	}

	start, err := events.Build(in, d.fn.Start(req), d.cfg.OutputMode)
	if err != nil {
		_ = d.guard.Release(context.WithoutCancel(ctx), volumeID, claim.Lock)
		return "dead_letter", d.deadLetter(msg, "start result not built: "+err.Error())
	}
	if err := d.publish(start); err != nil {
		return release(err)
	}
	crashPoint(d.cfg.CrashAt, "after-start")

	actx, stop := d.guard.keepLease(ctx, volumeID, claim.Lock, claim.At)
	stops := []func() bool{stop}
	for _, h := range held {
		var s func() bool
		actx, s = d.guard.keepLease(actx, h.volumeID, h.lock, h.at)
		stops = append(stops, s)
	}
	req.Progress = d.progress(actx, in)
	req.Save = func(sctx context.Context, v *functions.Volume) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return d.guard.Save(sctx, volumeID, claim.Lock, b)
	}
	out, deadLetterReason := d.act(actx, req)
	lost := false
	for i := len(stops) - 1; i >= 0; i-- {
		lost = stops[i]() || lost
	}
	if lost {
		// Another owner may have taken over: its outcome stands.
		d.log.Warn("lease lost while the driver ran; not publishing", "type", in.Type(), "volume", volumeID, "token", claim.Token)
		d.undoIfDeleted(ctx, req, out, volumeID)
		return "lease_lost", ErrLeaseLost
	}
	if err := ctx.Err(); err != nil { // shutting down mid-request
		return release(err)
	}
	crashPoint(d.cfg.CrashAt, "after-act")

	st := stored{Fingerprint: in.Fingerprint()}
	for _, r := range out.Results {
		rec, err := events.Build(in, r, d.cfg.OutputMode)
		if err != nil {
			// A result that cannot be built never will be: park the
			// request rather than stop the partition.
			_ = d.guard.Release(context.WithoutCancel(ctx), volumeID, claim.Lock)
			return "dead_letter", d.deadLetter(msg, "result not built: "+err.Error())
		}
		st.Results = append(st.Results, rec)
	}
	if deadLetterReason != "" {
		dl := d.deadLetterRecord(msg, deadLetterReason)
		st.DeadLetter = &dl
	}
	body, err := json.Marshal(st)
	if err != nil {
		return release(err)
	}
	var vol []byte
	if out.Volume != nil {
		if vol, err = json.Marshal(out.Volume); err != nil {
			return release(err)
		}
	}
	if err := d.guard.Complete(ctx, volumeID, reqKey, claim.Lock, body, vol); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			d.log.Warn("fencing token stale at complete; not publishing", "type", in.Type(), "volume", volumeID, "token", claim.Token)
			d.undoIfDeleted(ctx, req, out, volumeID)
			return "lease_lost", err
		}
		return release(err)
	}
	crashPoint(d.cfg.CrashAt, "after-complete")
	if err := d.publishStored(body); err != nil {
		return "error", err // stored: the redelivery publishes it
	}
	crashPoint(d.cfg.CrashAt, "after-publish")
	if len(out.Results) > 0 && out.Results[0].Data.Error != nil {
		if deadLetterReason != "" {
			return "dead_letter", nil
		}
		return "failed", nil
	}
	return "done", nil
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

// heldLock is a source volume's lock held for one request.
type heldLock struct {
	volumeID, lock string
	at             time.Time
}

// lockSources locks the volumes a Sourced function reads besides its own,
// in id order, and puts their records in req.Sources. If one is busy, the
// ones taken are given back and ErrBusy returned: the request waits its
// turn like any other (two creates that each hold the other's source both
// back off, with jitter, instead of deadlocking).
func (d *delivery) lockSources(ctx context.Context, in *events.Request, volumeID, reqKey string, req *functions.Request) ([]heldLock, error) {
	sf, ok := d.fn.(functions.Sourced)
	if !ok {
		return nil, nil
	}
	ids, err := sf.Sources(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("sources of %s: %w", volumeID, err)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var held []heldLock
	req.Sources = map[string]*functions.Volume{}
	for _, id := range ids {
		if id == volumeID {
			req.Sources[id] = req.Volume
			continue
		}
		c, err := d.guard.Lock(ctx, id, reqKey, d.owner)
		if err == nil && c.State == Busy {
			err = ErrBusy
		}
		if err != nil {
			d.releaseSources(ctx, held)
			return nil, err
		}
		held = append(held, heldLock{id, c.Lock, c.At})
		var v *functions.Volume
		if c.Volume != nil {
			v = new(functions.Volume)
			if err := json.Unmarshal(c.Volume, v); err != nil {
				d.releaseSources(ctx, held)
				return nil, fmt.Errorf("registry record of %s: %w", id, err)
			}
		}
		req.Sources[id] = v
	}
	return held, nil
}

func (d *delivery) releaseSources(ctx context.Context, held []heldLock) {
	for _, h := range held {
		_ = d.guard.Release(context.WithoutCancel(ctx), h.volumeID, h.lock)
	}
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

// progress returns the callback that publishes <op>.progress at most once a
// second (and always for 100%). Progress results are not stored: a re-run
// reports its own, with the same id for the same percent.
func (d *delivery) progress(ctx context.Context, in *events.Request) func(int) {
	var mu sync.Mutex
	var last time.Time
	lastPct := -1
	clock := d.now
	if clock == nil {
		clock = time.Now
	}
	return func(pct int) {
		mu.Lock()
		defer mu.Unlock()
		now := clock()
		if pct <= lastPct || (pct < 100 && now.Sub(last) < time.Second) || ctx.Err() != nil {
			return
		}
		last, lastPct = now, pct
		p := pct
		rec, err := events.Build(in, events.Result{
			Type: events.ResultType(in.Type(), events.PhaseProgress), Source: "/ember/" + d.env.Instance,
			Discriminator: strconv.Itoa(pct), Data: events.ResultData{VolumeID: in.VolumeID(), Percent: &p},
		}, d.cfg.OutputMode)
		if err == nil {
			err = d.publish(rec)
		}
		if err != nil {
			d.log.Warn("progress not published", "err", err)
		}
	}
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

// deadLetter parks msg on <topic>.dlq with the reason, then acks it. A
// dead letter always fits what the producer sends (deadLetterRecord bounds
// it); should the broker still refuse it for its size, a dead letter with
// the coordinates and no body goes instead, so that the partition moves on.
// Only a failure to publish even that (Kafka away) nacks the message.
func (d *delivery) deadLetter(msg *message.Message, reason string) error {
	rec := d.deadLetterRecord(msg, reason)
	topic := d.cfg.TopicPrefix + rec.Type
	err := d.pub.Publish(topic, rec.Message())
	if err != nil && tooLarge(err) {
		d.log.Warn("dead letter refused for its size; sending its coordinates only", "topic", rec.Type, "err", err)
		rec.Value = nil
		rec.Headers = deadLetterHeaders(rec.Headers)
		rec.Headers[HeaderDLQTruncated] = "true"
		err = d.pub.Publish(topic, rec.Message())
	}
	if err != nil {
		return fmt.Errorf("dead letter to %s: %w", rec.Type, err)
	}
	d.log.Warn("dead-lettered", "topic", rec.Type, "reason", reason, "offset", rec.Headers[HeaderDLQOffset])
	return nil
}

// tooLarge reports a producer or broker refusal of a record for its size:
// sending it again can never work.
func tooLarge(err error) bool {
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) ||
		strings.Contains(err.Error(), sarama.ErrMessageSizeTooLarge.Error())
}

// Dead-letter headers (the reason and where the record came from).
const (
	HeaderDLQReason    = "ember_dlq_reason"
	HeaderDLQTopic     = "ember_dlq_topic"
	HeaderDLQPartition = "ember_dlq_partition"
	HeaderDLQOffset    = "ember_dlq_offset"
	// HeaderDLQSize is the original value's length in bytes; with
	// HeaderDLQTruncated "true" the dead letter carries only its first
	// MaxDeadLetterValue bytes (none when even that was refused).
	HeaderDLQSize      = "ember_dlq_size"
	HeaderDLQTruncated = "ember_dlq_truncated"
	// HeaderDLQHeadersDropped counts the original headers left out because
	// together they exceeded events.MaxHeaderBytes.
	HeaderDLQHeadersDropped = "ember_dlq_headers_dropped"
)

// Bounds of a dead letter: far below the producer's 1,000,000 bytes, so a
// dead letter always fits, whatever arrived.
const (
	MaxDeadLetterValue = 128 << 10
	maxDeadLetterKey   = 256
	maxDLQReason       = 1 << 10
)

func (d *delivery) deadLetterRecord(msg *message.Message, reason string) events.Record {
	orig := events.Headers(msg)
	size := 0
	for k, v := range orig {
		size += len(k) + len(v)
	}
	h := map[string]string{}
	if size <= events.MaxHeaderBytes {
		h = orig
	} else {
		h[HeaderDLQHeadersDropped] = strconv.Itoa(len(orig))
	}
	h = deadLetterHeaders(h)
	h[HeaderDLQReason] = events.Truncate(reason, maxDLQReason)
	h[HeaderDLQTopic] = d.cfg.TopicPrefix + d.fn.Type()
	if p, ok := kafka.MessagePartitionFromCtx(msg.Context()); ok {
		h[HeaderDLQPartition] = strconv.Itoa(int(p))
	}
	if o, ok := kafka.MessagePartitionOffsetFromCtx(msg.Context()); ok {
		h[HeaderDLQOffset] = strconv.FormatInt(o, 10)
	}
	h[HeaderDLQSize] = strconv.Itoa(len(msg.Payload))
	value := msg.Payload
	if len(value) > MaxDeadLetterValue {
		value = value[:MaxDeadLetterValue]
		h[HeaderDLQTruncated] = "true"
	}
	key := events.Key(msg)
	if len(key) > maxDeadLetterKey {
		key = key[:maxDeadLetterKey]
	}
	return events.Record{ID: msg.UUID, Type: d.fn.Type() + ".dlq", Key: key, Headers: h, Value: value}
}

// deadLetterHeaders keeps of h what a dead letter with no body may carry:
// Ember's own dead-letter headers (the original ones may be what was too
// large).
func deadLetterHeaders(h map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if strings.HasPrefix(k, "ember_dlq_") {
			out[k] = v
		}
	}
	return out
}
