package testenv

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/sarama"

	"github.com/ember-storage/ember/events"
)

// Results reads Ember's result topics from the start, as a downstream
// consumer would, and keeps every record.
type Results struct {
	mu     sync.Mutex
	events []Result
}

// Result is one record read back.
type Result struct {
	Type, ID, Causation string
	Data                events.ResultData
	Headers             map[string]string
	// Key is the Kafka record key.
	Key   string
	Value []byte
	// Time is the record's timestamp: when the producer published it.
	Time time.Time
}

// Collect follows topics (already created) under prefix until the test ends.
func Collect(t testing.TB, brokers []string, sc *sarama.Config, prefix string, topics []string) *Results {
	t.Helper()
	r := &Results{}
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	var pcs []sarama.PartitionConsumer
	for _, topic := range topics {
		parts, err := client.Partitions(prefix + topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range parts {
			pc, err := consumeFresh(client, consumer, prefix+topic, part)
			if err != nil {
				t.Fatalf("consume %s[%d]: %v", prefix+topic, part, err)
			}
			pcs = append(pcs, pc)
			go func() {
				for km := range pc.Messages() {
					msg, _ := events.KafkaMarshaler{}.Unmarshal(km)
					h := events.Headers(msg)
					res := Result{Type: strings.TrimPrefix(km.Topic, prefix), Headers: h, Value: km.Value,
						ID: h["ce_id"], Causation: h["ce_causationid"], Time: km.Timestamp, Key: events.Key(msg)}
					_ = json.Unmarshal(km.Value, &res.Data)
					r.mu.Lock()
					r.events = append(r.events, res)
					r.mu.Unlock()
				}
			}()
		}
	}
	t.Cleanup(func() {
		for _, pc := range pcs {
			pc.AsyncClose() // Close would wait out a fetch per partition
		}
		consumer.Close()
		client.Close()
	})
	return r
}

// consumeFresh consumes a partition from its oldest offset. A topic just
// created can have a leader in the metadata before the broker serves the
// partition; sarama asks for the offset twice, and on a busy machine both
// failed with NOT_LEADER_OR_FOLLOWER (router/timers, 3 of 5 runs on a
// broker started minutes before): ask again for a while.
func consumeFresh(client sarama.Client, consumer sarama.Consumer, topic string, part int32) (sarama.PartitionConsumer, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pc, err := consumer.ConsumePartition(topic, part, sarama.OffsetOldest)
		if !errors.Is(err, sarama.ErrNotLeaderForPartition) || time.Now().After(deadline) {
			return pc, err
		}
		_ = client.RefreshMetadata(topic)
		time.Sleep(100 * time.Millisecond)
	}
}

// Of returns the results of type typ caused by request id ("" for any).
func (r *Results) Of(typ, id string) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for _, e := range r.events {
		if e.Type == typ && (id == "" || e.Causation == id) {
			out = append(out, e)
		}
	}
	return out
}

// Wait waits up to 60 s for n results of typ caused by id, and returns them.
func (r *Results) Wait(t testing.TB, typ, id string, n int) []Result {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if got := r.Of(typ, id); len(got) >= n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.mu.Lock()
	var seen []string
	for _, e := range r.events {
		seen = append(seen, e.Type+"←"+e.Causation)
	}
	r.mu.Unlock()
	t.Fatalf("want %d %s for request %s within 60s; seen: %v", n, typ, id, seen)
	return nil
}

// DistinctIDs counts the distinct event ids among rs.
func DistinctIDs(rs []Result) int {
	ids := map[string]bool{}
	for _, r := range rs {
		ids[r.ID] = true
	}
	return len(ids)
}
