package kafkasub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Two records of one key, sent back to back, run in order while the
// records of 50 other keys of the same partition run beside them.
func TestKeyOrderBesideConcurrentKeys(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 1)
		e.produce(0, "A", "A0")
		e.produce(0, "A", "A1")
		total := 2
		for round := range 2 {
			for k := range 50 {
				e.produce(0, fmt.Sprintf("k%02d", k), fmt.Sprintf("k%02d-%d", k, round))
				total++
			}
		}
		j := newJournal()
		othersDone := make(chan struct{})
		var others atomic.Int32
		done := make(chan struct{})
		var finished atomic.Int32
		e.route(e.subscriber(nil), func(msg *message.Message) error {
			j.start(msg)
			switch string(msg.Payload) {
			case "A0":
				// A0 stays in its handler until ten records of other keys
				// finished: they run beside it, and A1 waits.
				await(t, "other keys beside A0", othersDone)
			default:
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			}
			j.end(msg, true)
			if msg.Payload[0] == 'k' && others.Add(1) == 10 {
				close(othersDone)
			}
			if int(finished.Add(1)) == total {
				close(done)
			}
			return nil
		})
		await(t, "every record", done)
		j.check(t)
		if j.maxRun < 2 {
			t.Errorf("at most %d handler ran at once: no concurrency", j.maxRun)
		}
		if !j.isAcked(0) || !j.isAcked(1) {
			t.Error("A0 or A1 was not handled")
		}
	})
}

// A slow record does not delay the later records of other keys in its
// partition; the later record of its own key waits for it.
func TestSlowRecordDoesNotDelayOtherKeys(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 1)
		e.produce(0, "slow", "slow0")
		for k := range 20 {
			e.produce(0, fmt.Sprintf("k%02d", k), "fast")
		}
		e.produce(0, "slow", "slow1")
		j := newJournal()
		fastDone := make(chan struct{})
		var fast atomic.Int32
		done := make(chan struct{})
		e.route(e.subscriber(nil), func(msg *message.Message) error {
			j.start(msg)
			defer j.end(msg, true)
			switch string(msg.Payload) {
			case "slow0":
				// Were the partition served one record at a time, the
				// fast records (offsets 1..20) could never finish first.
				await(t, "the 20 fast records while slow0 runs", fastDone)
			case "slow1":
				if !j.isAcked(0) {
					t.Error("slow1 started before slow0 finished")
				}
				close(done)
			default:
				if fast.Add(1) == 20 {
					close(fastDone)
				}
			}
			return nil
		})
		await(t, "slow1", done)
		j.check(t)
	})
}

// The committed offset is the lowest unfinished one: with records 0..9 and
// record 3 never acked, it stays at 3, also after Close (which cancels
// record 3's context once the drain timeout passes).
func TestCommittedOffsetStopsAtUnfinished(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 1)
		for i := range 10 {
			e.produce(0, fmt.Sprintf("k%d", i), fmt.Sprint(i))
		}
		j := newJournal()
		cancelled := make(chan struct{})
		sub := e.subscriber(func(c *Config) { c.DrainTimeout = 200 * time.Millisecond })
		closeRouter := e.route(sub, func(msg *message.Message) error {
			j.start(msg)
			_, o := keyOffset(msg)
			if o == 3 {
				<-msg.Context().Done()
				close(cancelled)
				j.end(msg, false)
				return msg.Context().Err()
			}
			j.end(msg, true)
			return nil
		})
		eventually(t, "the nine other records", func() bool { return j.ackedCount() == 9 })
		eventually(t, "committed offset 3", func() bool { return e.committed(0) == 3 })
		closeRouter()
		await(t, "record 3's context cancelled by Close", cancelled)
		if got := e.committed(0); got != 3 {
			t.Errorf("committed offset after Close = %d, want 3", got)
		}
		if n := sub.InFlight(); n != 0 {
			t.Errorf("InFlight after Close = %d, want 0", n)
		}
		j.check(t)
	})
}

// A nacked record is emitted again later (same UUID, same offset); its
// key's next record waits for it; other keys go on meanwhile.
func TestNackParksRecordNotPartition(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 1)
		e.produce(0, "A", "A0")
		e.produce(0, "A", "A1")
		for k := range 10 {
			e.produce(0, fmt.Sprintf("b%d", k), "B")
		}
		j := newJournal()
		var attempts atomic.Int32
		var uuids sync.Map
		bDone := make(chan struct{})
		var bs atomic.Int32
		done := make(chan struct{})
		e.route(e.subscriber(nil), func(msg *message.Message) error {
			j.start(msg)
			switch string(msg.Payload) {
			case "A0":
				if prev, loaded := uuids.LoadOrStore("A0", msg.UUID); loaded && prev != msg.UUID {
					t.Errorf("redelivered A0 has UUID %s, first %s", msg.UUID, prev)
				}
				if n := attempts.Add(1); n < 3 {
					j.end(msg, false)
					return errors.New("not yet")
				}
				// Third attempt: the B records, behind A0 and A1 in the
				// partition, finish while A0 was parked or running.
				await(t, "the B records while A0 is parked", bDone)
			case "A1":
				if attempts.Load() != 3 || !j.isAcked(0) {
					t.Errorf("A1 started after %d attempts of A0 (acked %v)", attempts.Load(), j.isAcked(0))
				}
				close(done)
			default:
				if bs.Add(1) == 10 {
					close(bDone)
				}
			}
			j.end(msg, true)
			return nil
		})
		await(t, "A1", done)
		j.check(t)
	})
}

// With MaxInFlight=4 and handlers that block, at most 4 messages are out,
// across two partitions; all records pass once the handlers return.
func TestBackpressureBoundsInFlight(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 2)
		for i := range 20 {
			e.produce(int32(i%2), fmt.Sprintf("k%d", i), "x")
		}
		sub := e.subscriber(func(c *Config) { c.MaxInFlight = 4 })
		var running, maxRunning, total atomic.Int32
		release := make(chan struct{})
		done := make(chan struct{})
		e.route(sub, func(msg *message.Message) error {
			n := running.Add(1)
			for {
				m := maxRunning.Load()
				if n <= m || maxRunning.CompareAndSwap(m, n) {
					break
				}
			}
			if in := sub.InFlight(); in > 4 {
				t.Errorf("InFlight = %d > MaxInFlight 4", in)
			}
			<-release
			running.Add(-1)
			if total.Add(1) == 20 {
				close(done)
			}
			return nil
		})
		eventually(t, "four blocked handlers", func() bool { return running.Load() == 4 })
		// Give a fifth message every chance to slip out before releasing.
		time.Sleep(300 * time.Millisecond)
		if n := sub.InFlight(); n != 4 {
			t.Errorf("InFlight = %d with four blocked handlers, want 4", n)
		}
		close(release)
		await(t, "all 20 records", done)
		if m := maxRunning.Load(); m > 4 {
			t.Errorf("%d handlers ran at once with MaxInFlight 4", m)
		}
	})
}

// Close while messages are in flight: one finishes during the drain (and
// counts as finished), two ignore the drain and see their contexts
// cancelled; Close returns; a new subscriber of the group resumes at the
// oldest unfinished offset, and nothing is lost.
func TestCloseDrainsThenResumesFromOldestUnfinished(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 1)
		for i := range 10 {
			e.produce(0, fmt.Sprintf("k%d", i), fmt.Sprint(i))
		}
		j := newJournal()
		closing := make(chan struct{})
		var cancelled atomic.Int32
		sub := e.subscriber(func(c *Config) { c.DrainTimeout = time.Second })
		closeRouter := e.route(sub, func(msg *message.Message) error {
			j.start(msg)
			_, o := keyOffset(msg)
			switch o {
			case 1:
				// Finishes once Close has begun, within the drain timeout.
				<-closing
				time.Sleep(100 * time.Millisecond)
				if msg.Context().Err() != nil {
					t.Error("offset 1's context was cancelled before the drain timeout")
				}
			case 2, 5:
				<-msg.Context().Done()
				cancelled.Add(1)
				j.end(msg, false)
				return msg.Context().Err()
			}
			j.end(msg, true)
			return nil
		})
		eventually(t, "offsets 0, 3, 4, 6..9 finished", func() bool { return j.ackedCount() == 7 })
		close(closing)
		closeRouter()
		if n := cancelled.Load(); n != 2 {
			t.Errorf("%d handler contexts cancelled by Close, want 2", n)
		}
		if !j.isAcked(1) {
			t.Error("offset 1 did not finish during the drain")
		}
		if got := e.committed(0); got != 2 {
			t.Errorf("committed offset after Close = %d, want 2", got)
		}
		j.check(t)

		// The next member of the group starts at offset 2.
		var mu sync.Mutex
		seen := map[int64]bool{}
		all := make(chan struct{})
		e.route(e.subscriber(nil), func(msg *message.Message) error {
			_, o := keyOffset(msg)
			mu.Lock()
			defer mu.Unlock()
			if o < 2 {
				t.Errorf("offset %d delivered again below the oldest unfinished offset 2", o)
			}
			seen[o] = true
			if len(seen) == 8 {
				close(all)
			}
			return nil
		})
		await(t, "offsets 2..9 from the new subscriber", all)
		eventually(t, "committed offset 10", func() bool { return e.committed(0) == 10 })
	})
}

// A rebalance revokes the partitions of a member: its message in a handler
// is cancelled after the drain timeout, and only then is the record
// delivered again, to the partition's next owner: never two handlers of it
// at once.
func TestRebalanceDrainsBeforeHandOver(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 2)
		e.produce(0, "slow", "slow")
		for i := range 4 {
			e.produce(int32(i%2), fmt.Sprintf("k%d", i), "x")
		}
		j := newJournal()
		j.redelivery = true // partition 0 replays from the slow record
		var attempts atomic.Int32
		running, again := make(chan struct{}), make(chan struct{})
		handler := func(msg *message.Message) error {
			j.start(msg)
			if string(msg.Payload) == "slow" {
				switch attempts.Add(1) {
				case 1:
					close(running)
					<-msg.Context().Done() // the revocation's drain cancels it
					j.end(msg, false)
					return msg.Context().Err()
				case 2:
					close(again)
				}
			}
			j.end(msg, true)
			return nil
		}
		adjust := func(c *Config) { c.DrainTimeout = 500 * time.Millisecond }
		e.route(e.subscriber(adjust), handler)
		await(t, "the slow record in a handler", running)
		e.route(e.subscriber(adjust), handler) // a second member joins: rebalance
		await(t, "the slow record delivered again after the rebalance", again)
		j.check(t)
	})
}

// A handler that ignores its cancelled context does not hold Close up past
// DrainTimeout+CancelGrace: its record is abandoned unfinished (the
// committed offset stays at it) and its late Ack goes nowhere.
func TestCloseAbandonsHandlerIgnoringContext(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 1)
		e.produce(0, "a", "stuck")
		e.produce(0, "b", "fine")
		sub := e.subscriber(func(c *Config) { c.DrainTimeout, c.CancelGrace = 100*time.Millisecond, 100*time.Millisecond })
		msgs, err := sub.Subscribe(context.Background(), e.topic)
		if err != nil {
			t.Fatal(err)
		}
		var stuck *message.Message
		for range 2 {
			select {
			case m := <-msgs:
				if string(m.Payload) == "stuck" {
					stuck = m
				} else {
					m.Ack()
				}
			case <-time.After(waitLimit):
				t.Fatal("gave up waiting for the two records")
			}
		}
		eventually(t, "the fine record finished", func() bool { return sub.InFlight() == 1 })
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		if _, open := <-msgs; open {
			t.Error("Subscribe's channel still open after Close")
		}
		if stuck.Context().Err() == nil {
			t.Error("the abandoned message's context is not cancelled")
		}
		if n := sub.InFlight(); n != 0 {
			t.Errorf("InFlight after Close = %d, want 0", n)
		}
		stuck.Ack() // late: must neither block nor panic
		if got := e.committed(0); got != 0 {
			t.Errorf("committed offset = %d, want 0 (the abandoned record)", got)
		}
	})
}

// Emitted messages carry the partition, offset, timestamp and key where
// watermill-kafka's accessors read them; a record the Unmarshaler refuses is
// emitted raw with the error, and the partition goes on.
func TestContextCarriesWatermillKafkaValues(t *testing.T) {
	forEachBroker(t, func(t *testing.T, brokers []string) {
		e := newEnv(t, brokers, 2)
		want := map[string]int64{}
		for _, v := range []string{"good0", "bad", "good1"} {
			want[v] = e.produce(1, "vol-"+v, v)
		}
		var mu sync.Mutex
		got := map[string]*message.Message{}
		done := make(chan struct{})
		e.route(e.subscriber(func(c *Config) { c.Unmarshaler = refuseBad{} }), func(msg *message.Message) error {
			ctx := msg.Context()
			v := string(msg.Payload)
			if p, ok := kafka.MessagePartitionFromCtx(ctx); !ok || p != 1 {
				t.Errorf("%s: partition %d, %v; want 1", v, p, ok)
			}
			if o, ok := kafka.MessagePartitionOffsetFromCtx(ctx); !ok || o != want[v] {
				t.Errorf("%s: offset %d, %v; want %d", v, o, ok, want[v])
			}
			if k, ok := kafka.MessageKeyFromCtx(ctx); !ok || string(k) != "vol-"+v {
				t.Errorf("%s: key %q, %v", v, k, ok)
			}
			if ts, ok := kafka.MessageTimestampFromCtx(ctx); !ok || ts.IsZero() {
				t.Errorf("%s: timestamp %v, %v", v, ts, ok)
			}
			if p, _ := MessagePartitionFromCtx(ctx); p != 1 {
				t.Errorf("%s: kafkasub.MessagePartitionFromCtx = %d", v, p)
			}
			mu.Lock()
			defer mu.Unlock()
			got[v] = msg
			if len(got) == 3 {
				close(done)
			}
			return nil
		})
		await(t, "three records", done)
		if e := got["bad"].Metadata.Get(UnmarshalErrorMetadata); e != "refused" {
			t.Errorf("raw record's %s = %q, want the unmarshal error", UnmarshalErrorMetadata, e)
		}
		if want := fmt.Sprintf("%s/1/%d", e.topic, want["bad"]); got["bad"].UUID != want {
			t.Errorf("raw record's UUID = %q, want %q", got["bad"].UUID, want)
		}
		if got["good1"].Metadata.Get(UnmarshalErrorMetadata) != "" {
			t.Error("a good record carries an unmarshal error")
		}
	})
}

type refuseBad struct{ kafka.DefaultMarshaler }

func (r refuseBad) Unmarshal(km *sarama.ConsumerMessage) (*message.Message, error) {
	if string(km.Value) == "bad" {
		return nil, errors.New("refused")
	}
	return r.DefaultMarshaler.Unmarshal(km)
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := Config{Brokers: []string{"127.0.0.1:1"}, ConsumerGroup: "g", Unmarshaler: kafka.DefaultMarshaler{}}
		c.SetDefaults()
		return c
	}
	if c := valid(); c.Validate() != nil {
		t.Fatalf("defaults do not validate: %v", c.Validate())
	}
	for name, spoil := range map[string]func(*Config){
		"no brokers":         func(c *Config) { c.Brokers = nil },
		"no group":           func(c *Config) { c.ConsumerGroup = "" },
		"no unmarshaler":     func(c *Config) { c.Unmarshaler = nil },
		"negative in-flight": func(c *Config) { c.MaxInFlight = -1 },
		"nack cap below":     func(c *Config) { c.MaxNackDelay = c.NackDelay / 2 },
		"no auto-commit": func(c *Config) {
			c.OverwriteSaramaConfig = DefaultSaramaConfig()
			c.OverwriteSaramaConfig.Consumer.Offsets.AutoCommit.Enable = false
		},
		"drain past rebalance timeout": func(c *Config) { c.DrainTimeout = time.Minute },
	} {
		c := valid()
		spoil(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
		if _, err := NewSubscriber(c); err == nil {
			t.Errorf("%s: NewSubscriber accepted it", name)
		}
	}
}

func TestNackDelayGrowsToCap(t *testing.T) {
	p := &partition{cfg: &Config{NackDelay: 10 * time.Millisecond, MaxNackDelay: 80 * time.Millisecond}}
	for nacks, ceiling := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 80, 5: 80, 30: 80} {
		for range 200 {
			d := p.nackDelay(nacks)
			if d <= 0 || d > ceiling*time.Millisecond {
				t.Fatalf("nack %d: delay %v outside (0, %v]", nacks, d, ceiling*time.Millisecond)
			}
		}
	}
}

func TestSubscribeAfterClose(t *testing.T) {
	s, err := NewSubscriber(Config{Brokers: []string{"127.0.0.1:1"}, ConsumerGroup: "g", Unmarshaler: kafka.DefaultMarshaler{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe(context.Background(), "t"); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
}
