package kafkasub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Subscriber is a watermill message.Subscriber with key-ordered concurrency
// inside each partition (see the package documentation).
type Subscriber struct {
	cfg Config
	log watermill.LoggerAdapter
	lim *limiter

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber validates cfg (after SetDefaults) and returns a Subscriber.
func NewSubscriber(cfg Config) (*Subscriber, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Subscriber{
		cfg:     cfg,
		log:     cfg.Logger.With(watermill.LogFields{"subscriber_uuid": watermill.NewShortUUID()}),
		lim:     newLimiter(cfg.MaxInFlight),
		closing: make(chan struct{}),
	}, nil
}

// InFlight is the number of records the Subscriber holds now: emitted and
// not yet acked, queued behind their key, or parked after a Nack. It never
// exceeds MaxInFlight.
func (s *Subscriber) InFlight() int { return s.lim.count() }

// Subscribe consumes topic in the configured consumer group. The returned
// channel is closed when ctx ends or Close is called, after the partitions
// drained. An error is returned when the first consumer group cannot be
// created (brokers unreachable); later failures are retried every
// ReconnectRetrySleep.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("kafkasub: subscriber closed")
	}
	s.wg.Add(1)
	s.mu.Unlock()

	log := s.log.With(watermill.LogFields{"topic": topic, "consumer_group": s.cfg.ConsumerGroup})
	group, err := sarama.NewConsumerGroup(s.cfg.Brokers, s.cfg.ConsumerGroup, s.cfg.OverwriteSaramaConfig)
	if err != nil {
		s.wg.Done()
		return nil, fmt.Errorf("kafkasub: consumer group %s: %w", s.cfg.ConsumerGroup, err)
	}
	// Record contexts keep ctx's values but not its cancellation: they are
	// cancelled only after the drain of their partition.
	base := context.WithoutCancel(ctx)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.closing:
		case <-ctx.Done():
		}
		cancel()
	}()
	out := make(chan *message.Message)
	h := &groupHandler{s: s, topic: topic, out: out, base: base, log: log}
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		s.consume(ctx, group, topic, h, log)
	}()
	log.Info("Subscribed", nil)
	return out, nil
}

// consume runs consumer group sessions until ctx ends, creating the group
// again after a failure.
func (s *Subscriber) consume(ctx context.Context, group sarama.ConsumerGroup, topic string, h *groupHandler, log watermill.LoggerAdapter) {
	for {
		errsDone := make(chan struct{})
		go func() {
			defer close(errsDone)
			for err := range group.Errors() {
				log.Error("Kafka consumer group error", err, nil)
			}
		}()
		var err error
		for ctx.Err() == nil {
			// Consume returns at the end of each session (a rebalance), after
			// every ConsumeClaim returned and the marked offsets were
			// committed.
			if err = group.Consume(ctx, []string{topic}, h); err != nil {
				break
			}
		}
		if cerr := group.Close(); cerr != nil {
			log.Info("Closing the consumer group", watermill.LogFields{"err": cerr.Error()})
		}
		<-errsDone
		if ctx.Err() != nil {
			log.Info("Consuming stopped", nil)
			return
		}
		log.Error("Consumer group failed; reconnecting", err, nil)
		for {
			if !sleep(ctx, s.cfg.ReconnectRetrySleep) {
				return
			}
			group, err = sarama.NewConsumerGroup(s.cfg.Brokers, s.cfg.ConsumerGroup, s.cfg.OverwriteSaramaConfig)
			if err == nil {
				break
			}
			log.Error("Cannot create the consumer group", err, nil)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close stops every subscription: each partition drains (see the package
// documentation), commits, and the channels returned by Subscribe close.
// Close returns when they are closed.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// groupHandler is the sarama.ConsumerGroupHandler of one subscription.
type groupHandler struct {
	s     *Subscriber
	topic string
	out   chan<- *message.Message
	base  context.Context
	log   watermill.LoggerAdapter
}

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim serves one partition until the session ends, then drains it.
func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := newPartition(h, sess, claim.Topic(), claim.Partition(), claim.InitialOffset())
	p.run(claim.Messages())
	return nil
}
