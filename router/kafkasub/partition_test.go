package kafkasub

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

// fakeSession is a sarama session that records marks: it lets the offset
// logic be driven record by record, with offsets no broker would hand out
// on demand (gaps left by compaction or transaction markers).
type fakeSession struct {
	sarama.ConsumerGroupSession
	ctx    context.Context
	mu     sync.Mutex
	marked []int64
}

func (s *fakeSession) Context() context.Context { return s.ctx }
func (s *fakeSession) MarkOffset(_ string, _ int32, offset int64, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marked = append(s.marked, offset)
}

func (s *fakeSession) last() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.marked) == 0 {
		return -1
	}
	return s.marked[len(s.marked)-1]
}

// Only records received are tracked: offsets missing from the partition
// (3, 4, 6..8 here) never hold the mark back, and the mark is always the
// lowest unfinished offset received.
func TestMarkSkipsOffsetGaps(t *testing.T) {
	ctx, endSession := context.WithCancel(context.Background())
	sess := &fakeSession{ctx: ctx}
	out := make(chan *message.Message)
	s := &Subscriber{cfg: Config{Unmarshaler: kafka.DefaultMarshaler{}, NackDelay: 1, MaxNackDelay: 1,
		DrainTimeout: waitLimit, CancelGrace: waitLimit}, lim: newLimiter(16)}
	h := &groupHandler{s: s, topic: "t", out: out, base: context.Background(), log: watermill.NopLogger{}}
	in := make(chan *sarama.ConsumerMessage, 8)
	for _, o := range []int64{0, 2, 5, 9} {
		in <- &sarama.ConsumerMessage{Topic: "t", Offset: o, Key: []byte{byte('a' + o)}}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		newPartition(h, sess, "t", 0, 0).run(in)
	}()
	got := map[int64]*message.Message{}
	for range 4 {
		m := <-out
		o, _ := kafka.MessagePartitionOffsetFromCtx(m.Context())
		got[o] = m
	}
	// Finish 9, 5, 0 (the mark moves to 2, the lowest unfinished), then 2
	// (every record finished: one past the highest).
	for _, o := range []int64{9, 5, 0} {
		got[o].Ack()
	}
	eventually(t, "mark 2", func() bool { return sess.last() == 2 })
	got[2].Ack()
	eventually(t, "mark 10", func() bool { return sess.last() == 10 })
	endSession()
	<-done
	if fmt.Sprint(sess.marked) != "[2 10]" {
		t.Errorf("marks %v, want [2 10]", sess.marked)
	}
	if n := s.InFlight(); n != 0 {
		t.Errorf("InFlight = %d after the session, want 0", n)
	}
}
