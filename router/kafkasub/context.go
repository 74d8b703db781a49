package kafkasub

import (
	"context"
	"time"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"
)

// watermill-kafka stores a consumed record's partition, offset, timestamp
// and key in the message context under unexported keys, and Ember reads them
// with kafka.MessagePartitionFromCtx and its siblings. The keys cannot be
// named from outside the package, but each accessor hands its key to
// ctx.Value: a context that records the key it is asked for learns them.
// When an accessor ever stops asking (a different watermill-kafka), the key
// falls back to one of this package's own, and the accessors below still
// work; TestContextCarriesWatermillKafkaValues catches the change.

type ownKey int

const (
	ownPartitionKey ownKey = iota
	ownOffsetKey
	ownTimestampKey
	ownKeyKey
)

// keyProbe is a context that records the key it is asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	return nil
}

func learnKey(read func(context.Context), fallback ownKey) any {
	p := &keyProbe{Context: context.Background()}
	read(p)
	if p.key == nil {
		return fallback
	}
	return p.key
}

var (
	partitionKey = learnKey(func(c context.Context) { kafka.MessagePartitionFromCtx(c) }, ownPartitionKey)
	offsetKey    = learnKey(func(c context.Context) { kafka.MessagePartitionOffsetFromCtx(c) }, ownOffsetKey)
	timestampKey = learnKey(func(c context.Context) { kafka.MessageTimestampFromCtx(c) }, ownTimestampKey)
	keyKey       = learnKey(func(c context.Context) { kafka.MessageKeyFromCtx(c) }, ownKeyKey)
)

// recordContext returns ctx with the values watermill-kafka sets for km.
func recordContext(ctx context.Context, km *sarama.ConsumerMessage) context.Context {
	ctx = context.WithValue(ctx, partitionKey, km.Partition)
	ctx = context.WithValue(ctx, offsetKey, km.Offset)
	ctx = context.WithValue(ctx, timestampKey, km.Timestamp)
	return context.WithValue(ctx, keyKey, km.Key)
}

// MessagePartitionFromCtx returns the Kafka partition of a consumed message.
// It reads the same value as watermill-kafka's accessor of that name.
func MessagePartitionFromCtx(ctx context.Context) (int32, bool) {
	v, ok := ctx.Value(partitionKey).(int32)
	return v, ok
}

// MessagePartitionOffsetFromCtx returns the Kafka offset of a consumed message.
func MessagePartitionOffsetFromCtx(ctx context.Context) (int64, bool) {
	v, ok := ctx.Value(offsetKey).(int64)
	return v, ok
}

// MessageTimestampFromCtx returns the Kafka timestamp of a consumed message.
func MessageTimestampFromCtx(ctx context.Context) (time.Time, bool) {
	v, ok := ctx.Value(timestampKey).(time.Time)
	return v, ok
}

// MessageKeyFromCtx returns the Kafka key of a consumed message.
func MessageKeyFromCtx(ctx context.Context) ([]byte, bool) {
	v, ok := ctx.Value(keyKey).([]byte)
	return v, ok
}
