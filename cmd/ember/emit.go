package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/router"
)

// cmdEmit publishes one request; with --wait it prints the request's results
// as they arrive and exits 0 on .end, 1 on .error, 2 on timeout.
func cmdEmit(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: ember emit TYPE --data FILE|- [--id ID] [--source URI] [--kafka ADDR] [--config FILE] [--wait] [--timeout 60s] [--json]")
		return 2
	}
	typ := args[0]
	fs := flag.NewFlagSet("emit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataPath := fs.String("data", "", "the request's data (JSON): a file, or - for stdin")
	id := fs.String("id", "", "event id (default: a fresh UUID); the same (source, id) is the same request")
	source := fs.String("source", "/ember/cli", "event source")
	kafkaAddr := fs.String("kafka", envOr("EMBER_KAFKA_BROKERS", "127.0.0.1:9092"), "Kafka brokers, comma-separated")
	prefix := fs.String("topic-prefix", getenv("EMBER_KAFKA_TOPIC_PREFIX"), "topic prefix")
	configPath := fs.String("config", "", "read brokers, topic prefix and Kafka TLS/SASL from this configuration file")
	wait := fs.Bool("wait", false, "print the results of the request and exit on .end (0) or .error (1)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long --wait waits (exit 2 after)")
	asJSON := fs.Bool("json", false, "print each result as one CloudEvent JSON per line")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *dataPath == "" {
		fmt.Fprintln(stderr, "ember emit: --data is required (a file, or - for stdin)")
		return 2
	}
	var data []byte
	var err error
	if *dataPath == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, events.MaxDataBytes+1))
	} else {
		data, err = os.ReadFile(*dataPath)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ember emit:", err)
		return 1
	}
	if *id == "" {
		*id = uuid.NewString()
	}
	rec, err := events.NewInput(typ, *source, *id, data, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "ember emit: refusing to publish:", err)
		return 1
	}
	cfg := router.Config{Brokers: splitList(*kafkaAddr), TopicPrefix: *prefix}
	if err := secureClient(&cfg, fs, *configPath); err != nil {
		fmt.Fprintln(stderr, "ember emit:", err)
		return 1
	}
	brokers := cfg.Brokers
	cfg.SetDefaults()
	sc := cfg.SaramaConfig()
	sc.ClientID = "ember-emit"
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		fmt.Fprintf(stderr, "ember emit: kafka %s: %v\n", strings.Join(brokers, ","), err)
		return 1
	}
	defer client.Close()

	var w *watcher
	if *wait {
		// Note where each result topic ends before publishing: every result
		// of this request lands after that.
		if w, err = newWatcher(client, &cfg, typ, *id); err != nil {
			fmt.Fprintln(stderr, "ember emit:", err)
			return 1
		}
		defer w.close()
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		fmt.Fprintln(stderr, "ember emit:", err)
		return 1
	}
	pm, _ := events.KafkaMarshaler{}.Marshal(cfg.Topic(typ), rec.Message())
	part, off, err := producer.SendMessage(pm)
	if err != nil {
		fmt.Fprintln(stderr, "ember emit: publish:", err)
		return 1
	}
	fmt.Fprintf(stderr, "published %s id=%s source=%s to %s[%d]@%d\n", typ, *id, *source, cfg.Topic(typ), part, off)
	if !*wait {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return w.print(ctx, stdout, stderr, *asJSON)
}

func envOr(k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

// watcher follows the result topics of one request.
type watcher struct {
	cfg      *router.Config
	id       string
	consumer sarama.Consumer
	pcs      []sarama.PartitionConsumer
	results  chan *sarama.ConsumerMessage
	once     sync.Once
}

func newWatcher(client sarama.Client, cfg *router.Config, typ, id string) (*watcher, error) {
	var topics []string
	for _, rt := range events.ResultTypes(typ) {
		topics = append(topics, cfg.Topic(rt))
	}
	if err := router.CreateTopics(cfg.Brokers, cfg.SaramaConfig(), cfg.Partitions, cfg.ReplicationFactor, topics); err != nil {
		return nil, err
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, err
	}
	w := &watcher{cfg: cfg, id: id, consumer: consumer, results: make(chan *sarama.ConsumerMessage, 64)}
	for _, t := range topics {
		parts, err := client.Partitions(t)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		for _, p := range parts {
			end, err := client.GetOffset(t, p, sarama.OffsetNewest)
			if err != nil {
				w.close()
				return nil, fmt.Errorf("end offset of %s[%d]: %w", t, p, err)
			}
			pc, err := consumer.ConsumePartition(t, p, end)
			if err != nil {
				w.close()
				return nil, fmt.Errorf("consume %s[%d]: %w", t, p, err)
			}
			w.pcs = append(w.pcs, pc)
			go func() {
				for m := range pc.Messages() {
					w.results <- m
				}
			}()
		}
	}
	return w, nil
}

// print writes the request's results until its .end or .error. Results
// arrive on several topics at once, so a terminal result waits a moment for
// the .start that may still be in flight (an invalid request has none),
// to print in order.
func (w *watcher) print(ctx context.Context, stdout, stderr io.Writer, asJSON bool) int {
	seen := map[string]bool{}
	sawStart := false
	var terminal *ce.Event
	var grace <-chan time.Time
	show := func(e ce.Event) {
		if asJSON {
			b, _ := json.Marshal(e)
			fmt.Fprintln(stdout, string(b))
		} else {
			fmt.Fprintf(stdout, "%-24s %s\n", e.Type(), e.Data())
		}
	}
	finish := func() int {
		show(*terminal)
		if strings.HasSuffix(terminal.Type(), "."+events.PhaseError) {
			return 1
		}
		return 0
	}
	for {
		select {
		case <-ctx.Done():
			if terminal != nil {
				return finish()
			}
			fmt.Fprintln(stderr, "ember emit: timed out waiting for a result")
			return 2
		case <-grace:
			return finish()
		case km := <-w.results:
			msg, _ := events.KafkaMarshaler{}.Unmarshal(km)
			e, err := events.ReadRecord(events.Headers(msg), msg.Payload)
			if err != nil {
				continue
			}
			if c, _ := e.Extensions()[events.ExtCausationID].(string); c != w.id || seen[e.ID()] {
				continue
			}
			seen[e.ID()] = true // a re-published result is the same event
			if terminal == nil && (strings.HasSuffix(e.Type(), "."+events.PhaseEnd) || strings.HasSuffix(e.Type(), "."+events.PhaseError)) {
				terminal = &e
				if sawStart {
					return finish()
				}
				grace = time.After(2 * time.Second)
				continue
			}
			show(e)
			if strings.HasSuffix(e.Type(), "."+events.PhaseStart) {
				sawStart = true
				if terminal != nil {
					return finish()
				}
			}
		}
	}
}

func (w *watcher) close() {
	w.once.Do(func() {
		for _, pc := range w.pcs {
			pc.AsyncClose() // Close would wait out a fetch per partition
		}
		_ = w.consumer.Close()
	})
}
