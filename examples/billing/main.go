// Command billing is a downstream example: a billing job that reads Ember's
// result and audit events from Kafka (volume.create.end, volume.resize.end,
// volume.delete.end, volume.exists) and prints each project's GB-hours for
// a period, as a billing pipeline written for Cinder's notifications would.
//
//	go run ./examples/billing --kafka 127.0.0.1:9092 --from 2026-03-01T00:00:00Z --to 2026-04-01T00:00:00Z
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/Shopify/sarama"

	"github.com/ember-storage/ember/events"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("billing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("kafka", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	prefix := fs.String("topic-prefix", "", "Ember's kafka.topic_prefix")
	fromS := fs.String("from", "", "period start, RFC 3339 (default: the start of this month, UTC)")
	toS := fs.String("to", "", "period end, RFC 3339 (default: now)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	now := time.Now().UTC()
	from, to := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), now
	var err error
	if *fromS != "" {
		if from, err = time.Parse(time.RFC3339, *fromS); err != nil {
			fmt.Fprintln(stderr, "billing: --from:", err)
			return 2
		}
	}
	if *toS != "" {
		if to, err = time.Parse(time.RFC3339, *toS); err != nil {
			fmt.Fprintln(stderr, "billing: --to:", err)
			return 2
		}
	}
	evs, err := Read(strings.Split(*brokers, ","), *prefix)
	if err != nil {
		fmt.Fprintln(stderr, "billing:", err)
		return 1
	}
	Print(stdout, GBHours(evs, from, to), from, to)
	return 0
}

// Print writes one line per project, sorted.
func Print(w io.Writer, usage map[string]float64, from, to time.Time) {
	projects := make([]string, 0, len(usage))
	for p := range usage {
		projects = append(projects, p)
	}
	sort.Strings(projects)
	fmt.Fprintf(w, "# volume GB-hours from %s to %s\n", from.Format(time.RFC3339), to.Format(time.RFC3339))
	for _, p := range projects {
		fmt.Fprintf(w, "%s\t%.3f\n", p, usage[p])
	}
}

// Read reads every billing event that the topics hold now (from the oldest
// record to each partition's end at start), as a batch billing job does.
func Read(brokers []string, prefix string) ([]Event, error) {
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka %v: %w", brokers, err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	var out []Event
	for _, typ := range Types {
		topic := prefix + typ
		parts, err := client.Partitions(topic)
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", topic, err)
		}
		for _, part := range parts {
			end, err := client.GetOffset(topic, part, sarama.OffsetNewest)
			if err != nil {
				return nil, err
			}
			first, err := client.GetOffset(topic, part, sarama.OffsetOldest)
			if err != nil {
				return nil, err
			}
			if first >= end {
				continue
			}
			pc, err := consumer.ConsumePartition(topic, part, first)
			if err != nil {
				return nil, err
			}
			for km := range pc.Messages() {
				headers := map[string]string{}
				for _, h := range km.Headers {
					headers[string(h.Key)] = string(h.Value)
				}
				e, err := events.ReadRecord(headers, km.Value)
				if err == nil {
					var ev Event
					if ev, err = FromCloudEvent(e); err == nil {
						out = append(out, ev)
					}
				}
				if err != nil {
					fmt.Fprintf(os.Stderr, "billing: skipping %s/%d@%d: %v\n", topic, part, km.Offset, err)
				}
				if km.Offset+1 >= end {
					break
				}
			}
			pc.AsyncClose()
		}
	}
	return out, nil
}
