package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/Shopify/sarama"
	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/router"
)

// cmdDLQ lists the dead letters of an input type, or replays them to the
// input topic (after the cause is fixed: a backend back up, a bug fixed).
func cmdDLQ(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprintln(stderr, "usage: ember dlq list|replay TYPE [--kafka ADDR] [--config FILE] [--offset N]")
		return 2
	}
	verb, typ := args[0], args[1]
	fs := flag.NewFlagSet("dlq", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kafkaAddr := fs.String("kafka", envOr("EMBER_KAFKA_BROKERS", "127.0.0.1:9092"), "Kafka brokers, comma-separated")
	prefix := fs.String("topic-prefix", getenv("EMBER_KAFKA_TOPIC_PREFIX"), "topic prefix")
	configPath := fs.String("config", "", "read brokers, topic prefix and Kafka TLS/SASL from this configuration file")
	only := fs.Int64("offset", -1, "replay only the dead letter at this offset (default: all)")
	if err := fs.Parse(args[2:]); err != nil {
		return 2
	}
	if events.Operation(typ) == "" {
		fmt.Fprintf(stderr, "ember dlq: %q is not an input type (known: %s)\n", typ, strings.Join(events.InputTypes(), ", "))
		return 2
	}
	cfg := router.Config{Brokers: splitList(*kafkaAddr), TopicPrefix: *prefix}
	if err := secureClient(&cfg, fs, *configPath); err != nil {
		fmt.Fprintln(stderr, "ember dlq:", err)
		return 1
	}
	cfg.SetDefaults()
	client, err := sarama.NewClient(cfg.Brokers, cfg.SaramaConfig())
	if err != nil {
		fmt.Fprintln(stderr, "ember dlq:", err)
		return 1
	}
	defer client.Close()
	var producer sarama.SyncProducer
	if verb == "replay" {
		if producer, err = sarama.NewSyncProducerFromClient(client); err != nil {
			fmt.Fprintln(stderr, "ember dlq:", err)
			return 1
		}
	}
	topic := cfg.Topic(typ + ".dlq")
	n, err := eachRecord(client, topic, func(km *sarama.ConsumerMessage) error {
		msg, _ := events.KafkaMarshaler{}.Unmarshal(km)
		h := events.Headers(msg)
		if verb == "list" {
			fmt.Fprintf(stdout, "%d/%d\tid=%s\tsource=%s\treason=%s\n", km.Partition, km.Offset, h["ce_id"], h["ce_source"], h[router.HeaderDLQReason])
			return nil
		}
		if *only >= 0 && km.Offset != *only {
			return nil
		}
		for k := range h {
			if strings.HasPrefix(k, "ember_dlq_") {
				delete(msg.Metadata, k)
			}
		}
		newID := replayID(h, km)
		if newID != "" {
			// The dead-lettered request has its terminal result already (the
			// .error published with the dead letter): the same (source, id)
			// would only get that stored result again. A replay is a new
			// request: a new id, derived from the dead letter so that
			// replaying it twice is still one request, and the original's
			// correlationid, so that the requester can follow it.
			if msg.Metadata.Get("ce_correlationid") == "" {
				msg.Metadata.Set("ce_correlationid", h["ce_id"])
			}
			msg.Metadata.Set("ce_id", newID)
		}
		pm, _ := events.KafkaMarshaler{}.Marshal(cfg.Topic(typ), msg)
		if _, _, err := producer.SendMessage(pm); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replayed %d/%d id=%s as id=%s to %s\n", km.Partition, km.Offset, h["ce_id"], msg.Metadata.Get("ce_id"), cfg.Topic(typ))
		return nil
	})
	if err != nil {
		fmt.Fprintln(stderr, "ember dlq:", err)
		return 1
	}
	fmt.Fprintln(stderr, strconv.Itoa(n)+" dead letters in "+topic)
	return 0
}

// eachRecord calls fn on every record of topic present now.
func eachRecord(client sarama.Client, topic string, fn func(*sarama.ConsumerMessage) error) (int, error) {
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return 0, err
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", topic, err)
	}
	n := 0
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return n, err
		}
		start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return n, err
		}
		if start >= end {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, start)
		if err != nil {
			return n, err
		}
		for km := range pc.Messages() {
			n++
			if err := fn(km); err != nil {
				pc.Close()
				return n, err
			}
			if km.Offset >= end-1 {
				break
			}
		}
		pc.Close()
	}
	return n, nil
}

// replayID is the id of the request a replay publishes: a UUIDv5 of the
// dead letter's place in its topic and the original id. A record without a
// CloudEvents id (it was dead-lettered for being unreadable) keeps its
// headers as they were: it goes back to the input as it came.
func replayID(h map[string]string, km *sarama.ConsumerMessage) string {
	if h["ce_id"] == "" {
		return ""
	}
	name := fmt.Sprintf("replay\x00%s\x00%d\x00%d\x00%s\x00%s", km.Topic, km.Partition, km.Offset, h["ce_source"], h["ce_id"])
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(name)).String()
}
