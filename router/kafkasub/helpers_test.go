package kafkasub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ember-storage/ember/internal/testenv"
)

// forEachBroker runs f against franz-go's in-process kfake broker (for
// speed; kfake accepts every request version, so it misses protocol traps)
// and against the real Kafka broker that `make test` starts.
func forEachBroker(t *testing.T, f func(t *testing.T, brokers []string)) {
	t.Run("kfake", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		f(t, c.ListenAddrs())
	})
	t.Run("kafka", func(t *testing.T) { f(t, testenv.Kafka(t)) })
}

// waitLimit bounds every wait of these tests: reaching it is a failure (a
// hang made visible), never a measurement.
const waitLimit = 60 * time.Second

func saramaConfig() *sarama.Config {
	sc := DefaultSaramaConfig()
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	return sc
}

// env is one test's topic and consumer group.
type env struct {
	t       testing.TB
	brokers []string
	topic   string
	group   string
	prod    sarama.SyncProducer
}

func newEnv(t testing.TB, brokers []string, partitions int32) *env {
	t.Helper()
	u := testenv.Unique()
	e := &env{t: t, brokers: brokers, topic: "kafkasub-" + u, group: "kafkasub-" + u}
	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(e.topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	// A new topic has no leader for a moment; the producer's retries
	// cover it.
	sc := saramaConfig()
	sc.Producer.Retry.Max = 20
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	e.prod, err = sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.prod.Close() })
	return e
}

// produce writes one record and returns its offset.
func (e *env) produce(partition int32, key, value string) int64 {
	e.t.Helper()
	pm := &sarama.ProducerMessage{Topic: e.topic, Partition: partition, Value: sarama.StringEncoder(value)}
	if key != "" {
		pm.Key = sarama.StringEncoder(key)
	}
	_, off, err := e.prod.SendMessage(pm)
	if err != nil {
		e.t.Fatal(err)
	}
	return off
}

func (e *env) subscriber(adjust func(*Config)) *Subscriber {
	e.t.Helper()
	cfg := Config{
		Brokers: e.brokers, ConsumerGroup: e.group, OverwriteSaramaConfig: saramaConfig(),
		Unmarshaler: kafka.DefaultMarshaler{}, NackDelay: 20 * time.Millisecond,
		DrainTimeout: 10 * time.Second, CancelGrace: 5 * time.Second,
	}
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := NewSubscriber(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// route runs sub under a watermill router with handler h, as Ember does;
// the returned function closes the router (and with it the subscriber).
func (e *env) route(sub message.Subscriber, h message.NoPublishHandlerFunc) (closeRouter func()) {
	e.t.Helper()
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Minute}, watermill.NopLogger{})
	if err != nil {
		e.t.Fatal(err)
	}
	r.AddNoPublisherHandler("h", e.topic, sub, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			e.t.Error(err)
		}
	}()
	select {
	case <-r.Running():
	case <-time.After(waitLimit):
		e.t.Fatal("router did not start")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := r.Close(); err != nil {
				e.t.Error(err)
			}
			cancel()
			<-done
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// committed reads the group's committed offset of a partition from the
// broker (-1: none).
func (e *env) committed(partition int32) int64 {
	e.t.Helper()
	admin, err := sarama.NewClusterAdmin(e.brokers, saramaConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(e.group, map[string][]int32{e.topic: {partition}})
	if err != nil {
		e.t.Fatal(err)
	}
	b := resp.GetBlock(e.topic, partition)
	if b == nil {
		return -1
	}
	if !errors.Is(b.Err, sarama.ErrNoError) {
		e.t.Fatal(b.Err)
	}
	return b.Offset
}

// eventually polls cond until it holds; waitLimit makes it fail.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func await(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("gave up waiting for %s", what)
	}
}

// journal records what handlers did, in order, and checks key order.
type journal struct {
	mu      sync.Mutex
	lines   []string
	busy    map[string]bool  // key -> a handler of it is running
	last    map[string]int64 // key -> offset of its last finished record
	acked   map[int64]bool   // offsets finished
	running int
	maxRun  int
	errs    []string
	// redelivery allows a finished record to start again (the records
	// after the oldest unfinished one of a revoked partition).
	redelivery bool
}

func newJournal() *journal {
	return &journal{busy: map[string]bool{}, last: map[string]int64{}, acked: map[int64]bool{}}
}

func keyOffset(msg *message.Message) (string, int64) {
	k, _ := kafka.MessageKeyFromCtx(msg.Context())
	o, ok := kafka.MessagePartitionOffsetFromCtx(msg.Context())
	if !ok {
		panic("no offset in the message context")
	}
	return string(k), o
}

// start notes that a handler began msg; a second running handler of one
// key, or a key's records out of offset order, is an error.
func (j *journal) start(msg *message.Message) {
	k, o := keyOffset(msg)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.busy[k] {
		j.errs = append(j.errs, fmt.Sprintf("key %q: offset %d started while an earlier record of the key was in a handler", k, o))
	}
	if last, ok := j.last[k]; ok && o <= last && !j.redelivery {
		j.errs = append(j.errs, fmt.Sprintf("key %q: offset %d started after offset %d had finished", k, o, last))
	}
	j.busy[k] = true
	j.running++
	j.maxRun = max(j.maxRun, j.running)
	j.lines = append(j.lines, fmt.Sprintf("start %s/%d", k, o))
}

// end notes that the handler of msg returns; finished says it acks.
func (j *journal) end(msg *message.Message, finished bool) {
	k, o := keyOffset(msg)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.busy[k] = false
	j.running--
	if finished {
		j.last[k] = o
		j.acked[o] = true
	}
	j.lines = append(j.lines, fmt.Sprintf("end %s/%d ack=%v", k, o, finished))
}

func (j *journal) ackedCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.acked)
}

func (j *journal) isAcked(o int64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.acked[o]
}

func (j *journal) check(t testing.TB) {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range j.errs {
		t.Error(e)
	}
	if t.Failed() {
		t.Logf("journal:\n%v", j.lines)
	}
}
