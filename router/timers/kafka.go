package timers

import (
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v2/pkg/kafka"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/router"
)

// NewPublisher returns a Kafka publisher of the kind the router uses
// (watermill-kafka over sarama, with cfg's client settings), and creates the
// timer topics.
func NewPublisher(cfg router.Config, log *slog.Logger) (*kafka.Publisher, error) {
	cfg.SetDefaults()
	var topics []string
	for _, t := range Topics() {
		topics = append(topics, cfg.Topic(t))
	}
	if err := router.CreateTopics(cfg.Brokers, cfg.SaramaConfig(), cfg.Partitions, cfg.ReplicationFactor, topics); err != nil {
		return nil, err
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers: cfg.Brokers, Marshaler: events.KafkaMarshaler{}, OverwriteSaramaConfig: cfg.SaramaConfig(),
	}, wlog)
	if err != nil {
		return nil, fmt.Errorf("kafka publisher: %w", err)
	}
	return pub, nil
}
