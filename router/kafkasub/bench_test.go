package kafkasub

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ember-storage/ember/internal/testenv"
)

// BenchmarkSubscriber moves b.N records (1024 keys over 8 partitions)
// through a watermill router on the real broker, with this package's
// subscriber and, as the baseline in the same run, watermill-kafka v2's.
// msgs/s and ns/op count from the first handled message to the last, so
// that the group join is left out. handler=1ms stands for a handler that
// waits on I/O: there watermill-kafka is bound by one record at a time per
// partition.
func BenchmarkSubscriber(b *testing.B) {
	brokers := testenv.Kafka(b)
	subs := []struct {
		name string
		make func(e *env) message.Subscriber
	}{
		{"kafkasub", func(e *env) message.Subscriber { return e.subscriber(nil) }},
		{"watermill-kafka", func(e *env) message.Subscriber {
			s, err := kafka.NewSubscriber(kafka.SubscriberConfig{
				Brokers: e.brokers, ConsumerGroup: e.group, Unmarshaler: kafka.DefaultMarshaler{},
				OverwriteSaramaConfig: saramaConfig(),
			}, watermill.NopLogger{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, work := range []time.Duration{0, time.Millisecond} {
		for _, sub := range subs {
			b.Run(fmt.Sprintf("handler=%v/%s", work, sub.name), func(b *testing.B) {
				e := newEnv(b, brokers, 8)
				produceBulk(b, e, b.N)
				var mu sync.Mutex
				var first, last time.Time
				handled := 0
				done := make(chan struct{})
				b.ResetTimer()
				e.route(sub.make(e), func(msg *message.Message) error {
					if work > 0 {
						time.Sleep(work)
					}
					mu.Lock()
					defer mu.Unlock()
					now := time.Now()
					if handled == 0 {
						first = now
					}
					last = now
					if handled++; handled == b.N {
						close(done)
					}
					return nil
				})
				await(b, "every record", done)
				b.StopTimer()
				span := max(last.Sub(first), time.Nanosecond)
				b.ReportMetric(float64(b.N)/span.Seconds(), "msgs/s")
				b.ReportMetric(float64(span.Nanoseconds())/float64(b.N), "ns/op")
			})
		}
	}
}

func produceBulk(b *testing.B, e *env, n int) {
	const batch = 1000
	for i := 0; i < n; i += batch {
		var pms []*sarama.ProducerMessage
		for k := i; k < min(n, i+batch); k++ {
			pms = append(pms, &sarama.ProducerMessage{
				Topic: e.topic, Partition: int32(k % 8),
				Key: sarama.StringEncoder(fmt.Sprintf("vol-%d", k%1024)), Value: sarama.StringEncoder("x"),
			})
		}
		if err := e.prod.SendMessages(pms); err != nil {
			b.Fatal(err)
		}
	}
}
