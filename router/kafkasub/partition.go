package kafkasub

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// UnmarshalErrorMetadata is the metadata key under which a message carries
// the error of an Unmarshaler that could not decode its record.
const UnmarshalErrorMetadata = "kafkasub_unmarshal_error"

type state uint8

const (
	queued   state = iota // behind an earlier record of its key
	ready                 // head of its key, waiting for the output channel
	emitted               // sent; waiting for its Ack or Nack
	parked                // Nacked; waiting for its redelivery time
	finished              // Acked
	dropped               // left unfinished by a drain, replayed by the next owner
)

// record is one Kafka record taken from a claim.
type record struct {
	offset int64
	key    string
	tmpl   *message.Message // the unmarshaled message, emitted first; redeliveries copy it
	msg    *message.Message // the current emission, while ready or emitted
	ctx    context.Context
	cancel context.CancelFunc
	state  state
	nacks  int       // consecutive Nacks
	due    time.Time // when parked: redelivery time
}

// outcome is the Ack or Nack of an emitted record.
type outcome struct {
	r     *record
	acked bool
}

// partition is the state of one claimed partition. One goroutine (the
// ConsumeClaim call) owns it; the watchers of emitted messages talk to it
// through outcomes.
type partition struct {
	h      *groupHandler
	cfg    *Config
	lim    *limiter
	sess   sarama.ConsumerGroupSession
	topic  string
	id     int32
	log    watermill.LoggerAdapter
	ctx    context.Context // parent of the record contexts
	cancel context.CancelFunc

	unfinished []*record            // offset order; finished records leave from the front only
	keys       map[string][]*record // per key: the head is ready, emitted or parked; the rest queued
	readyQ     []*record
	parkedH    parkHeap
	timer      *time.Timer
	emittedN   int
	tracked    int   // records holding a limiter slot
	highest    int64 // highest offset taken, -1 before the first
	marked     int64 // last offset given to MarkOffset, or the claim's initial offset
	draining   bool

	outcomes chan outcome
	done     chan struct{} // closed when the partition stops listening to outcomes
}

// newPartition starts the state of a claimed partition; initial is the
// claim's first offset (what the group had committed), so that only
// progress past it is marked.
func newPartition(h *groupHandler, sess sarama.ConsumerGroupSession, topic string, id int32, initial int64) *partition {
	ctx, cancel := context.WithCancel(h.base)
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &partition{
		h: h, cfg: &h.s.cfg, lim: h.s.lim, sess: sess, topic: topic, id: id,
		log:     h.log.With(watermill.LogFields{"kafka_partition": id}),
		ctx:     ctx,
		cancel:  cancel,
		keys:    map[string][]*record{},
		timer:   t,
		highest: -1, marked: initial,
		outcomes: make(chan outcome),
		done:     make(chan struct{}),
	}
}

// run serves the partition until the session ends or the claim closes,
// then drains it.
func (p *partition) run(msgs <-chan *sarama.ConsumerMessage) {
	defer p.drain()
	var held *sarama.ConsumerMessage // read from the claim, waiting for a slot
	for {
		var in <-chan *sarama.ConsumerMessage
		var wake <-chan struct{}
		if held != nil {
			if ok, w := p.lim.acquire(); ok {
				p.add(held)
				held = nil
			} else {
				wake = w
			}
		}
		if held == nil {
			// Read only while a slot is free: at the bound the claim's
			// buffer fills and sarama stops fetching.
			if ok, w := p.lim.room(); ok {
				in = msgs
			} else {
				wake = w
			}
		}
		var out chan<- *message.Message
		var next *message.Message
		if len(p.readyQ) > 0 {
			out, next = p.h.out, p.readyQ[0].msg
		}
		select {
		case km, ok := <-in:
			if !ok {
				return
			}
			held = km
		case <-wake:
		case out <- next:
			p.sent()
		case o := <-p.outcomes:
			p.settle(o)
		case <-p.timer.C:
			p.unpark(time.Now())
		case <-p.sess.Context().Done():
			return
		}
	}
}

// add tracks a record that holds a limiter slot.
func (p *partition) add(km *sarama.ConsumerMessage) {
	r := &record{offset: km.Offset, key: string(km.Key), tmpl: p.unmarshal(km)}
	r.ctx, r.cancel = context.WithCancel(recordContext(p.ctx, km))
	p.tracked++
	p.highest = km.Offset
	p.unfinished = append(p.unfinished, r)
	q := p.keys[r.key]
	p.keys[r.key] = append(q, r)
	if len(q) == 0 {
		p.makeReady(r)
	} else {
		r.state = queued
	}
}

// unmarshal never fails: a record the Unmarshaler refuses is emitted raw,
// with the error in its metadata, so that it cannot stop the partition.
func (p *partition) unmarshal(km *sarama.ConsumerMessage) (msg *message.Message) {
	var err error
	func() {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("unmarshaler panicked: %v", v)
			}
		}()
		msg, err = p.cfg.Unmarshaler.Unmarshal(km)
	}()
	if err == nil && msg == nil {
		err = fmt.Errorf("unmarshaler returned no message")
	}
	if err == nil {
		return msg
	}
	p.log.Error("Cannot unmarshal a record; emitting it raw", err, watermill.LogFields{"kafka_partition_offset": km.Offset})
	msg = message.NewMessage(fmt.Sprintf("%s/%d/%d", km.Topic, km.Partition, km.Offset), km.Value)
	for _, h := range km.Headers {
		if h != nil {
			msg.Metadata.Set(string(h.Key), string(h.Value))
		}
	}
	msg.Metadata.Set(UnmarshalErrorMetadata, err.Error())
	return msg
}

func (p *partition) makeReady(r *record) {
	if r.nacks == 0 {
		r.msg = r.tmpl // first emission
	} else {
		// A message is acked or nacked once: a redelivery is a copy with
		// fresh Ack/Nack channels (same UUID, metadata and payload).
		r.msg = r.tmpl.Copy()
	}
	r.msg.SetContext(r.ctx)
	r.state = ready
	p.readyQ = append(p.readyQ, r)
}

// sent records that readyQ[0] was handed to the output channel.
func (p *partition) sent() {
	r := p.readyQ[0]
	p.readyQ[0] = nil
	p.readyQ = p.readyQ[1:]
	r.state = emitted
	p.emittedN++
	go p.watch(r, r.msg)
}

// watch waits for the Ack or Nack of one emission: a blocked goroutine per
// message in a handler, none for parked or queued records.
func (p *partition) watch(r *record, m *message.Message) {
	var o outcome
	select {
	case <-m.Acked():
		o = outcome{r: r, acked: true}
	case <-m.Nacked():
		o = outcome{r: r}
	case <-p.done:
		return
	}
	select {
	case p.outcomes <- o:
	case <-p.done:
	}
}

func (p *partition) settle(o outcome) {
	r := o.r
	p.emittedN--
	r.msg = nil
	switch {
	case o.acked:
		p.finish(r)
	case p.draining:
		r.state = dropped
	default:
		r.nacks++
		r.due = time.Now().Add(p.nackDelay(r.nacks))
		r.state = parked
		heap.Push(&p.parkedH, r)
		p.armTimer()
	}
}

// nackDelay is uniform in (0, ceiling], the ceiling NackDelay doubling per
// consecutive Nack up to MaxNackDelay (exponential backoff, full jitter).
func (p *partition) nackDelay(nacks int) time.Duration {
	ceiling := p.cfg.NackDelay
	for i := 1; i < nacks && ceiling < p.cfg.MaxNackDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.cfg.MaxNackDelay)
	return time.Duration(rand.Int64N(int64(ceiling))) + 1
}

// finish retires an acked record: its key's next record becomes ready and
// the contiguous finished prefix is marked.
func (p *partition) finish(r *record) {
	r.state = finished
	r.cancel()
	p.tracked--
	p.lim.release(1)
	q := p.keys[r.key]
	if len(q) == 0 || q[0] != r {
		panic("kafkasub: a finished record was not the head of its key")
	}
	q[0] = nil
	q = q[1:]
	if len(q) == 0 {
		delete(p.keys, r.key)
	} else {
		p.keys[r.key] = q
		if !p.draining {
			p.makeReady(q[0])
		}
	}
	for len(p.unfinished) > 0 && p.unfinished[0].state == finished {
		p.unfinished[0] = nil
		p.unfinished = p.unfinished[1:]
	}
	p.mark()
}

// mark gives sarama the lowest unfinished offset (one past the highest
// record taken when every record is finished).
func (p *partition) mark() {
	next := p.highest + 1
	if len(p.unfinished) > 0 {
		next = p.unfinished[0].offset
	}
	if p.highest >= 0 && next > p.marked {
		p.sess.MarkOffset(p.topic, p.id, next, "")
		p.marked = next
	}
}

func (p *partition) unpark(now time.Time) {
	for len(p.parkedH) > 0 && !p.parkedH[0].due.After(now) {
		p.makeReady(heap.Pop(&p.parkedH).(*record))
	}
	p.armTimer()
}

func (p *partition) armTimer() {
	if len(p.parkedH) == 0 {
		p.timer.Stop()
		return
	}
	p.timer.Reset(time.Until(p.parkedH[0].due))
}

// drain ends the partition: records not in a handler are dropped at once;
// emitted ones get DrainTimeout to finish, then their contexts are
// cancelled and they get CancelGrace to Ack or Nack; the rest is abandoned.
// Every record left unfinished is replayed by the partition's next owner.
func (p *partition) drain() {
	p.draining = true
	p.timer.Stop()
	for _, r := range p.readyQ {
		r.state, r.msg = dropped, nil
	}
	p.readyQ = nil
	for _, r := range p.parkedH {
		r.state = dropped
	}
	p.parkedH = nil
	if p.emittedN > 0 {
		p.log.Info("Partition revoked; draining", watermill.LogFields{"in_handlers": p.emittedN})
		if !p.await(p.cfg.DrainTimeout) {
			p.log.Info("Drain timeout; cancelling the handlers' contexts", watermill.LogFields{"in_handlers": p.emittedN})
			p.cancel()
			if !p.await(p.cfg.CancelGrace) {
				p.log.Error("Handlers ignored their cancelled contexts; abandoning their records to the next owner",
					fmt.Errorf("%d messages neither acked nor nacked", p.emittedN), nil)
			}
		}
	}
	close(p.done)
	p.cancel()
	p.lim.release(p.tracked)
	p.tracked = 0
	p.mark()
}

// await settles outcomes until no message is in a handler or d passes.
func (p *partition) await(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for p.emittedN > 0 {
		select {
		case o := <-p.outcomes:
			p.settle(o)
		case <-t.C:
			return false
		}
	}
	return true
}

// parkHeap orders parked records by redelivery time.
type parkHeap []*record

func (h parkHeap) Len() int           { return len(h) }
func (h parkHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h parkHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *parkHeap) Push(x any)        { *h = append(*h, x.(*record)) }
func (h *parkHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}
