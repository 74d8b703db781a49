package kafkasub

import (
	"errors"
	"fmt"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Unmarshaler turns a Kafka record into a watermill message. It is the
// interface of watermill-kafka's kafka.Unmarshaler, so any of its
// unmarshalers (and Ember's events.KafkaMarshaler) plug in.
type Unmarshaler interface {
	Unmarshal(*sarama.ConsumerMessage) (*message.Message, error)
}

// Config configures a Subscriber.
type Config struct {
	// Brokers lists the Kafka bootstrap brokers.
	Brokers []string
	// ConsumerGroup is the Kafka consumer group; required (offsets are
	// committed to it).
	ConsumerGroup string
	// OverwriteSaramaConfig is the sarama configuration, used as given
	// (version, TLS, SASL, static membership, offset retention...). Nil
	// selects DefaultSaramaConfig. Auto-commit must stay enabled: it sends
	// the offsets the subscriber marks.
	OverwriteSaramaConfig *sarama.Config
	// Unmarshaler turns records into messages; required.
	Unmarshaler Unmarshaler
	// MaxInFlight bounds the records the Subscriber holds (emitted, queued
	// behind their key, parked) across all its partitions. Default 256.
	MaxInFlight int
	// NackDelay is the delay ceiling of a record's first redelivery after a
	// Nack; it doubles with each further consecutive Nack of that record up
	// to MaxNackDelay. The actual delay is uniform in (0, ceiling] (full
	// jitter). Default 100ms.
	NackDelay time.Duration
	// MaxNackDelay caps the redelivery delay ceiling. Default 8*NackDelay.
	MaxNackDelay time.Duration
	// DrainTimeout is how long a revoked partition (or Close) lets emitted
	// messages finish before their contexts are cancelled. Default 20s.
	// DrainTimeout+CancelGrace must stay below sarama's
	// Consumer.Group.Rebalance.Timeout, or the member is dropped from the
	// group while it drains.
	DrainTimeout time.Duration
	// CancelGrace is how long, after cancelling their contexts, a draining
	// partition still waits for the Ack or Nack of its emitted messages
	// before it abandons them (they stay unfinished). Default 5s.
	CancelGrace time.Duration
	// ReconnectRetrySleep is the pause before a failed consumer group is
	// created again. Default 1s.
	ReconnectRetrySleep time.Duration
	// Logger receives the subscriber's logs. Default watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// DefaultSaramaConfig is the sarama configuration used when
// OverwriteSaramaConfig is nil.
func DefaultSaramaConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = "kafkasub"
	// Kafka 4 refuses the oldest request versions; 2.8 speaks versions
	// 3.x and 4.x brokers accept.
	sc.Version = sarama.V2_8_0_0
	sc.Consumer.Return.Errors = true
	// Without a retention sarama 1.38 sends OffsetCommit v1, which Kafka 4
	// rejects: nothing would be committed.
	sc.Consumer.Offsets.Retention = 7 * 24 * time.Hour
	return sc
}

// SetDefaults fills what is unset.
func (c *Config) SetDefaults() {
	if c.OverwriteSaramaConfig == nil {
		c.OverwriteSaramaConfig = DefaultSaramaConfig()
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.NackDelay == 0 {
		c.NackDelay = 100 * time.Millisecond
	}
	if c.MaxNackDelay == 0 {
		c.MaxNackDelay = 8 * c.NackDelay
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.CancelGrace == 0 {
		c.CancelGrace = 5 * time.Second
	}
	if c.ReconnectRetrySleep == 0 {
		c.ReconnectRetrySleep = time.Second
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafkasub: no brokers")
	case c.ConsumerGroup == "":
		return errors.New("kafkasub: no consumer group")
	case c.Unmarshaler == nil:
		return errors.New("kafkasub: no unmarshaler")
	case c.OverwriteSaramaConfig == nil:
		return errors.New("kafkasub: no sarama config (call SetDefaults)")
	case c.MaxInFlight < 1:
		return fmt.Errorf("kafkasub: MaxInFlight %d: want at least 1", c.MaxInFlight)
	case c.NackDelay <= 0 || c.MaxNackDelay < c.NackDelay:
		return fmt.Errorf("kafkasub: NackDelay %v, MaxNackDelay %v: want 0 < NackDelay <= MaxNackDelay", c.NackDelay, c.MaxNackDelay)
	case c.DrainTimeout <= 0 || c.CancelGrace <= 0 || c.ReconnectRetrySleep <= 0:
		return fmt.Errorf("kafkasub: DrainTimeout %v, CancelGrace %v, ReconnectRetrySleep %v: want positive durations",
			c.DrainTimeout, c.CancelGrace, c.ReconnectRetrySleep)
	case !c.OverwriteSaramaConfig.Consumer.Offsets.AutoCommit.Enable:
		return errors.New("kafkasub: sarama Consumer.Offsets.AutoCommit.Enable is off: marked offsets would never be committed")
	}
	if rt := c.OverwriteSaramaConfig.Consumer.Group.Rebalance.Timeout; c.DrainTimeout+c.CancelGrace >= rt {
		return fmt.Errorf("kafkasub: DrainTimeout %v + CancelGrace %v must be below sarama's Rebalance.Timeout %v", c.DrainTimeout, c.CancelGrace, rt)
	}
	if err := c.OverwriteSaramaConfig.Validate(); err != nil {
		return fmt.Errorf("kafkasub: sarama config: %w", err)
	}
	return nil
}
