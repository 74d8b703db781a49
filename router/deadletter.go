package router

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ember-storage/ember/events"
)

// deadLetter parks msg on <topic>.dlq with the reason, then acks it. A
// dead letter always fits what the producer sends (deadLetterRecord bounds
// it); should the broker still refuse it for its size, a dead letter with
// the coordinates and no body goes instead, so that the partition moves on.
// Only a failure to publish even that (Kafka away) nacks the message.
func (d *delivery) deadLetter(msg *message.Message, reason string) error {
	rec := d.deadLetterRecord(msg, reason)
	topic := d.cfg.TopicPrefix + rec.Type
	err := d.pub.Publish(topic, rec.Message())
	if err != nil && tooLarge(err) {
		d.log.Warn("dead letter refused for its size; sending its coordinates only", "topic", rec.Type, "err", err)
		rec.Value = nil
		rec.Headers = deadLetterHeaders(rec.Headers)
		rec.Headers[HeaderDLQTruncated] = "true"
		err = d.pub.Publish(topic, rec.Message())
	}
	if err != nil {
		return fmt.Errorf("dead letter to %s: %w", rec.Type, err)
	}
	d.log.Warn("dead-lettered", "topic", rec.Type, "reason", reason, "offset", rec.Headers[HeaderDLQOffset])
	return nil
}

// tooLarge reports a producer or broker refusal of a record for its size:
// sending it again can never work.
func tooLarge(err error) bool {
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) ||
		strings.Contains(err.Error(), sarama.ErrMessageSizeTooLarge.Error())
}

// Dead-letter headers (the reason and where the record came from).
const (
	HeaderDLQReason    = "ember_dlq_reason"
	HeaderDLQTopic     = "ember_dlq_topic"
	HeaderDLQPartition = "ember_dlq_partition"
	HeaderDLQOffset    = "ember_dlq_offset"
	// HeaderDLQSize is the original value's length in bytes; with
	// HeaderDLQTruncated "true" the dead letter carries only its first
	// MaxDeadLetterValue bytes (none when even that was refused).
	HeaderDLQSize      = "ember_dlq_size"
	HeaderDLQTruncated = "ember_dlq_truncated"
	// HeaderDLQHeadersDropped counts the original headers left out because
	// together they exceeded events.MaxHeaderBytes.
	HeaderDLQHeadersDropped = "ember_dlq_headers_dropped"
)

// Bounds of a dead letter: far below the producer's 1,000,000 bytes, so a
// dead letter always fits, whatever arrived.
const (
	MaxDeadLetterValue = 128 << 10
	maxDeadLetterKey   = 256
	maxDLQReason       = 1 << 10
)

func (d *delivery) deadLetterRecord(msg *message.Message, reason string) events.Record {
	orig := events.Headers(msg)
	size := 0
	for k, v := range orig {
		size += len(k) + len(v)
	}
	h := map[string]string{}
	if size <= events.MaxHeaderBytes {
		h = orig
	} else {
		h[HeaderDLQHeadersDropped] = strconv.Itoa(len(orig))
	}
	h[HeaderDLQReason] = events.Truncate(reason, maxDLQReason)
	h[HeaderDLQTopic] = d.cfg.TopicPrefix + d.fn.Type()
	if p, ok := kafka.MessagePartitionFromCtx(msg.Context()); ok {
		h[HeaderDLQPartition] = strconv.Itoa(int(p))
	}
	if o, ok := kafka.MessagePartitionOffsetFromCtx(msg.Context()); ok {
		h[HeaderDLQOffset] = strconv.FormatInt(o, 10)
	}
	h[HeaderDLQSize] = strconv.Itoa(len(msg.Payload))
	value := msg.Payload
	if len(value) > MaxDeadLetterValue {
		value = value[:MaxDeadLetterValue]
		h[HeaderDLQTruncated] = "true"
	}
	key := events.Key(msg)
	if len(key) > maxDeadLetterKey {
		key = key[:maxDeadLetterKey]
	}
	return events.Record{ID: msg.UUID, Type: d.fn.Type() + ".dlq", Key: key, Headers: h, Value: value}
}

// deadLetterHeaders keeps of h what a dead letter with no body may carry:
// Ember's own dead-letter headers (the original ones may be what was too
// large).
func deadLetterHeaders(h map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if strings.HasPrefix(k, "ember_dlq_") {
			out[k] = v
		}
	}
	return out
}
