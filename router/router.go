// Package router owns delivery: Kafka pub/sub through watermill-kafka, one
// consumer group per function, and the protocol of DELIVERY.md (decode,
// claim, start, act under a kept lease, fenced complete, publish, ack) with
// its Redis guard, retries and dead letters.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/router/kafkasub"
)

// RetryPolicy bounds the retries of transient driver failures.
type RetryPolicy struct {
	Attempts int           // total tries, the first included
	Initial  time.Duration // first backoff ceiling; doubles each try
	Ceiling  time.Duration // backoff never exceeds this
}

// Config configures delivery.
type Config struct {
	Brokers     []string
	TopicPrefix string
	// GroupPrefix names consumer groups: <group_prefix>.<input type>.
	GroupPrefix string
	// GroupInstanceID, when set, makes this replica a static member of its
	// consumer groups (Kafka's group.instance.id); unique per replica.
	GroupInstanceID string
	OutputMode      events.Mode
	// Partitions and ReplicationFactor are used when Ember creates its topics.
	Partitions        int32
	ReplicationFactor int16
	// NackDelay is the first wait (with full jitter, doubling per further
	// nack up to 8x) before a busy or failed delivery is tried again. The
	// record is parked meanwhile: only later records of its volume wait.
	NackDelay time.Duration
	// MaxInFlight bounds the records each function holds at once (running,
	// queued behind their volume, parked); at the bound it stops fetching.
	MaxInFlight int
	Retry       RetryPolicy
	// CrashAt is fault injection for tests (see CrashAtEnv).
	CrashAt string
	// Sarama, when set, adjusts the Kafka client configuration (TLS, SASL).
	Sarama func(*sarama.Config)
}

// SetDefaults fills what is unset.
func (c *Config) SetDefaults() {
	if c.GroupPrefix == "" {
		c.GroupPrefix = "ember"
	}
	if c.OutputMode == "" {
		c.OutputMode = events.Binary
	}
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 1
	}
	if c.NackDelay == 0 {
		c.NackDelay = 500 * time.Millisecond
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.Retry.Attempts == 0 {
		c.Retry.Attempts = 5
	}
	if c.Retry.Initial == 0 {
		c.Retry.Initial = time.Second
	}
	if c.Retry.Ceiling == 0 {
		c.Retry.Ceiling = 30 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers")
	}
	if c.OutputMode != events.Binary && c.OutputMode != events.Structured {
		return fmt.Errorf("kafka: output mode %q: want binary or structured", c.OutputMode)
	}
	if c.Retry.Attempts < 1 || c.Retry.Initial <= 0 || c.Retry.Ceiling < c.Retry.Initial {
		return fmt.Errorf("retry policy %+v is not usable", c.Retry)
	}
	return nil
}

// SaramaConfig is the Kafka client configuration Ember runs with.
func (c *Config) SaramaConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = "ember"
	// Kafka 4 removed the oldest request versions (KIP-896); 2.8 makes
	// sarama speak versions that both 3.x and 4.x brokers accept.
	sc.Version = sarama.V2_8_0_0
	sc.Consumer.Return.Errors = true
	// A new group starts at the oldest record: requests published before
	// the first Ember instance started are still served.
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Without a retention sarama 1.38 sends OffsetCommit v1, which Kafka 4
	// rejects without an error surfacing: nothing would ever be committed
	// and every restart would replay the topic (TESTING.md).
	sc.Consumer.Offsets.Retention = 7 * 24 * time.Hour
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 250 * time.Millisecond
	sc.Metadata.Retry.Backoff = 500 * time.Millisecond
	if c.GroupInstanceID != "" {
		// Static membership: a restarted replica rejoins as itself and
		// takes its partitions back at once, instead of waiting out the
		// dead member's session timeout (docs/RELIABILITY.md, finding 3:
		// median 1.0 s against 10.3 s after a SIGKILL). A static member
		// does not leave its groups on shutdown: its partitions wait for
		// it for the session timeout.
		sc.Consumer.Group.InstanceId = c.GroupInstanceID
	}
	if c.Sarama != nil {
		c.Sarama(sc)
	}
	return sc
}

// Topic is the Kafka topic of an event type.
func (c *Config) Topic(eventType string) string { return c.TopicPrefix + eventType }

// Group is the consumer group of a function.
func (c *Config) Group(inputType string) string { return c.GroupPrefix + "." + inputType }

// Service runs a set of functions.
type Service struct {
	router  *message.Router
	pub     *kafka.Publisher
	Metrics *Metrics
}

// New wires the functions in fns to Kafka and the guard.
func New(cfg Config, guard *Guard, env *functions.Env, fns map[string]functions.Function, metrics *Metrics, log *slog.Logger) (*Service, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	guard.calls = func(step string) { metrics.redis.WithLabelValues(step).Inc() }
	if env.Index == nil {
		env.Index = guard // snapshot and backup ids live beside the registry
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	if err := cfg.EnsureTopics(fns); err != nil {
		return nil, err
	}
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers: cfg.Brokers, Marshaler: events.KafkaMarshaler{}, OverwriteSaramaConfig: cfg.SaramaConfig(),
	}, wlog)
	if err != nil {
		return nil, fmt.Errorf("kafka publisher: %w", err)
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return nil, err
	}
	owner := uuid.NewString()
	for _, typ := range functions.Types(fns) {
		// Ember's own subscriber: records of one volume in order, of
		// different volumes concurrently (watermill-kafka v2 runs one
		// record at a time per partition; docs/DESIGN.md).
		sub, err := kafkasub.NewSubscriber(kafkasub.Config{
			Brokers: cfg.Brokers, Unmarshaler: events.KafkaMarshaler{}, OverwriteSaramaConfig: cfg.SaramaConfig(),
			ConsumerGroup: cfg.Group(typ), MaxInFlight: cfg.MaxInFlight, NackDelay: cfg.NackDelay,
			ReconnectRetrySleep: time.Second, Logger: wlog,
		})
		if err != nil {
			return nil, fmt.Errorf("kafka subscriber for %s: %w", typ, err)
		}
		d := &delivery{fn: fns[typ], env: env, guard: guard, pub: pub, cfg: &cfg, owner: owner, metrics: metrics,
			log: log.With("function", typ)}
		metrics.watchInFlight(typ, sub.InFlight)
		h := r.AddConsumerHandler(typ, cfg.Topic(typ), sub, d.handle)
		// Outermost first: every delivery is counted, a panic included.
		h.AddMiddleware(metrics.Middleware(typ), d.recoverToDeadLetter)
	}
	return &Service{router: r, pub: pub, Metrics: metrics}, nil
}

// Run consumes until ctx ends or Close is called.
func (s *Service) Run(ctx context.Context) error { return s.router.Run(ctx) }

// Running is closed once every consumer is subscribed.
func (s *Service) Running() chan struct{} { return s.router.Running() }

// IsRunning reports whether the router is consuming.
func (s *Service) IsRunning() bool { return s.router.IsRunning() }

// Close stops consuming (in-flight requests finish or are redelivered
// later; marked offsets are committed) and closes the publisher.
func (s *Service) Close() error {
	err := s.router.Close()
	return errors.Join(err, s.pub.Close())
}

// EnsureTopics creates the topics Ember reads and writes (inputs, their
// dead-letter topics, every result type), so that a cluster without
// automatic topic creation works, and so that consumers and `ember emit
// --wait` find every partition from the start.
func (c *Config) EnsureTopics(fns map[string]functions.Function) error {
	var topics []string
	for typ := range fns {
		topics = append(topics, c.Topic(typ), c.Topic(typ+".dlq"))
		for _, rt := range events.ResultTypes(typ) {
			topics = append(topics, c.Topic(rt))
		}
	}
	return CreateTopics(c.Brokers, c.SaramaConfig(), c.Partitions, c.ReplicationFactor, topics)
}

// CreateTopics creates topics that do not exist yet.
func CreateTopics(brokers []string, sc *sarama.Config, partitions int32, rf int16, topics []string) error {
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		return fmt.Errorf("kafka %v: %w", brokers, err)
	}
	defer admin.Close()
	existing, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("kafka list topics: %w", err)
	}
	var created []string
	for _, t := range topics {
		if _, ok := existing[t]; ok {
			continue
		}
		err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: rf}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) && !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("kafka create topic %s: %w", t, err)
		}
		created = append(created, t)
	}
	return waitForLeaders(brokers, sc, created)
}

// waitForLeaders waits until every partition of topics has a leader: a
// topic is created asynchronously, and producing to it before then fails
// with NOT_LEADER_OR_FOLLOWER.
func waitForLeaders(brokers []string, sc *sarama.Config, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return err
	}
	defer client.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := ""
		if err := client.RefreshMetadata(topics...); err == nil {
		check:
			for _, t := range topics {
				parts, err := client.Partitions(t)
				if err != nil || len(parts) == 0 {
					missing = t
					break
				}
				for _, p := range parts {
					if _, err := client.Leader(t, p); err != nil {
						missing = fmt.Sprintf("%s[%d]", t, p)
						break check
					}
				}
			}
		} else {
			missing = err.Error()
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka: no leader for %s after 30s", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
