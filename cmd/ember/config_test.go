package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

func TestConfigFileEnvAndValidation(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "ember.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `kafka: {brokers: ["k1:9092"], topic_prefix: "prod."}
redis: {url: "redis://r:6379/0"}
volume_types: {fast: local}
backends:
  - {name: local, driver: file, options: {dir: /var/lib/ember/volumes, format: raw}}
`
	t.Setenv("EMBER_KAFKA_BROKERS", "a:1,b:2")
	t.Setenv("EMBER_REDIS_URL", "rediss://secret@r2:6380/1")
	c, err := loadConfig(write(good))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Kafka.Brokers, ",") != "a:1,b:2" || c.Redis.URL != "rediss://secret@r2:6380/1" || c.Kafka.TopicPrefix != "prod." {
		t.Fatalf("env did not override: %+v", c)
	}
	if c.Delivery.CommandTimeout >= c.Delivery.Lease || c.Instance != "ember" {
		t.Fatalf("defaults: %+v", c.Delivery)
	}
	for name, body := range map[string]string{
		"misspelt key":        good + "volume_typo: {}\n",
		"unknown type target": strings.Replace(good, "fast: local", "fast: nowhere", 1),
		"duplicate backend":   good + "  - {name: local, driver: file, options: {dir: /x}}\n",
		"timeout over lease":  good + "delivery: {lease: 10s, command_timeout: 20s}\n",
	} {
		if _, err := loadConfig(write(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestUnknownDriverAndBadOptionsAreClearErrors(t *testing.T) {
	c := &Config{}
	c.setDefaults()
	c.Backends = []drivers.Backend{{Name: "x", Driver: "nosuch"}}
	if _, err := newRuntime(c, nil, newLogger(os.Stderr)); err == nil || !strings.Contains(err.Error(), "unknown driver") {
		t.Fatalf("unknown driver: %v", err)
	}
	c.Backends = []drivers.Backend{{Name: "x", Driver: "file", Options: map[string]any{"dir": "/tmp", "fromat": "raw"}}}
	if _, err := newRuntime(c, nil, newLogger(os.Stderr)); err == nil || !strings.Contains(err.Error(), "fromat") {
		t.Fatalf("misspelt option: %v", err)
	}
}
