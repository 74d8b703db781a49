package events

import (
	"fmt"

	"github.com/Shopify/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
)

// keyMetadata carries the Kafka record key through a watermill message; it
// is never written as a header.
const keyMetadata = "_ember_key"

// KafkaMarshaler maps watermill messages to Kafka records and back, one
// metadata entry per header, the record key through keyMetadata. Unlike
// watermill-kafka's DefaultMarshaler it adds no header of its own, so a
// binary-mode CloudEvent stays exactly as the binding defines it.
type KafkaMarshaler struct{}

// Marshal implements watermill-kafka's Marshaler.
func (KafkaMarshaler) Marshal(topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	headers := make([]sarama.RecordHeader, 0, len(msg.Metadata))
	for k, v := range msg.Metadata {
		if k == keyMetadata {
			continue
		}
		headers = append(headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(msg.Payload), Headers: headers}
	if k := msg.Metadata.Get(keyMetadata); k != "" {
		pm.Key = sarama.StringEncoder(k)
	}
	return pm, nil
}

// Unmarshal implements watermill-kafka's Unmarshaler. It never fails:
// watermill-kafka stops consuming a partition on an unmarshal error, and a
// bad record must reach the dead-letter topic instead.
func (KafkaMarshaler) Unmarshal(km *sarama.ConsumerMessage) (*message.Message, error) {
	md := make(message.Metadata, len(km.Headers)+1)
	for _, h := range km.Headers {
		if h == nil {
			continue
		}
		md.Set(string(h.Key), string(h.Value))
	}
	if len(km.Key) > 0 {
		md.Set(keyMetadata, string(km.Key))
	}
	msg := message.NewMessage(fmt.Sprintf("%s/%d/%d", km.Topic, km.Partition, km.Offset), km.Value)
	msg.Metadata = md
	return msg, nil
}

// Message converts a record into a watermill message for publishing.
func (r Record) Message() *message.Message {
	msg := message.NewMessage(r.ID, r.Value)
	for k, v := range r.Headers {
		msg.Metadata.Set(k, v)
	}
	if r.Key != "" {
		msg.Metadata.Set(keyMetadata, r.Key)
	}
	return msg
}

// Headers returns a consumed message's Kafka headers (without the key).
func Headers(msg *message.Message) map[string]string {
	h := make(map[string]string, len(msg.Metadata))
	for k, v := range msg.Metadata {
		if k != keyMetadata {
			h[k] = v
		}
	}
	return h
}

// Key returns a consumed message's Kafka record key.
func Key(msg *message.Message) string { return msg.Metadata.Get(keyMetadata) }
