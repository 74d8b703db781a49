package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/router"
)

// Config is the file `ember serve --config` reads (SPEC §6); environment
// variables override it (see applyEnv).
type Config struct {
	// Instance names the deployment in result sources before a backend is
	// chosen; the same for every replica.
	Instance string `yaml:"instance"`
	Kafka    struct {
		Brokers     []string `yaml:"brokers"`
		TopicPrefix string   `yaml:"topic_prefix"`
		GroupPrefix string   `yaml:"group_prefix"`
		OutputMode  string   `yaml:"output_mode"` // binary (default) or structured
		// GroupInstanceID makes this replica a static member of its consumer
		// groups (KIP-345): a replica restarted with the same id takes its
		// partitions back at once, without a rebalance. Unique per replica
		// (a pod name); empty means dynamic membership.
		GroupInstanceID   string `yaml:"group_instance_id"`
		Partitions        int32  `yaml:"partitions"`
		ReplicationFactor int16  `yaml:"replication_factor"`
		// TLS and SASL (tls: {...}, sasl: {...}): see router.KafkaSecurity.
		router.KafkaSecurity `yaml:",inline"`
	} `yaml:"kafka"`
	Redis struct {
		URL     string `yaml:"url"`
		Cluster struct {
			Addrs []string `yaml:"addrs"`
		} `yaml:"cluster"`
		KeyPrefix string `yaml:"key_prefix"`
		// AUTH and TLS (cmd/ember/security.go); the password comes from
		// EMBER_REDIS_PASSWORD, password_file or the URL, never inline.
		Username     string        `yaml:"username"`
		PasswordFile string        `yaml:"password_file"`
		Password     router.Secret `yaml:"-"`
		TLS          redisTLS      `yaml:"tls"`
	} `yaml:"redis"`
	Delivery struct {
		Lease          time.Duration `yaml:"lease"`
		DoneTTL        time.Duration `yaml:"done_ttl"`
		NackDelay      time.Duration `yaml:"nack_delay"`
		MaxInFlight    int           `yaml:"max_in_flight"`
		CommandTimeout time.Duration `yaml:"command_timeout"`
		Retry          struct {
			Attempts int           `yaml:"attempts"`
			Initial  time.Duration `yaml:"initial"`
			Ceiling  time.Duration `yaml:"ceiling"`
		} `yaml:"retry"`
	} `yaml:"delivery"`
	// SSH is how ssh:// backend hosts are reached: a key, and the
	// known_hosts file their host keys must be in (never ignored).
	SSH struct {
		KeyFile        string `yaml:"key_file"`
		KnownHostsFile string `yaml:"known_hosts_file"`
	} `yaml:"ssh"`
	// Backups is the backup store (backup.requested, restores, creates
	// from a backup): a directory on this host, Cinder's chunked layout.
	Backups struct {
		Dir         string `yaml:"dir"`
		ChunkSize   int64  `yaml:"chunk_size"`
		Compression string `yaml:"compression"`
	} `yaml:"backups"`
	// Images is where volume.upload.requested writes images, and which
	// URLs a volume may be created from (nothing else is ever fetched).
	Images struct {
		Dir             string   `yaml:"dir"`
		AllowedPrefixes []string `yaml:"allowed_prefixes"`
		TempDir         string   `yaml:"temp_dir"`
	} `yaml:"images"`
	// Scheduler and Audit configure the timers (cmd/ember/timers.go).
	Scheduler      SchedulerConfig   `yaml:"scheduler"`
	Audit          AuditConfig       `yaml:"audit"`
	envErrs        []error           // EMBER_* values that could not be read
	VolumeTypes    map[string]string `yaml:"volume_types"`
	DefaultBackend string            `yaml:"default_backend"`
	Backends       []drivers.Backend `yaml:"backends"`
	HTTP           string            `yaml:"http"`
}

// loadConfig reads path (when not empty), applies the environment and the
// defaults, and validates.
func loadConfig(path string) (*Config, error) {
	c := &Config{}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true) // a misspelt key is an error, not a silent default
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	c.applyEnv(os.Getenv)
	if err := c.loadSecrets(); err != nil {
		return nil, err
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	return c, nil
}

// applyEnv lets EMBER_* variables override the file, as container
// deployments expect.
func (c *Config) applyEnv(getenv func(string) string) {
	set := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	if v := getenv("EMBER_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = strings.Split(v, ",")
	}
	set("EMBER_KAFKA_TOPIC_PREFIX", &c.Kafka.TopicPrefix)
	set("EMBER_KAFKA_GROUP_PREFIX", &c.Kafka.GroupPrefix)
	set("EMBER_KAFKA_OUTPUT_MODE", &c.Kafka.OutputMode)
	set("EMBER_KAFKA_GROUP_INSTANCE_ID", &c.Kafka.GroupInstanceID)
	set("EMBER_REDIS_URL", &c.Redis.URL)
	set("EMBER_INSTANCE", &c.Instance)
	set("EMBER_HTTP", &c.HTTP)
	set("EMBER_DEFAULT_BACKEND", &c.DefaultBackend)
	c.applySecurityEnv(getenv)
	c.applyTimerEnv(getenv)
}

func (c *Config) setDefaults() {
	if c.Instance == "" {
		c.Instance = "ember"
	}
	if len(c.Kafka.Brokers) == 0 {
		c.Kafka.Brokers = []string{"127.0.0.1:9092"}
	}
	if c.Redis.URL == "" && len(c.Redis.Cluster.Addrs) == 0 {
		c.Redis.URL = "redis://127.0.0.1:6379/0"
	}
	if c.Delivery.Lease == 0 {
		c.Delivery.Lease = 30 * time.Second
	}
	if c.Delivery.DoneTTL == 0 {
		c.Delivery.DoneTTL = 7 * 24 * time.Hour
	}
	if c.Delivery.CommandTimeout == 0 {
		c.Delivery.CommandTimeout = c.Delivery.Lease * 2 / 3
	}
	if c.HTTP == "" {
		c.HTTP = "127.0.0.1:8080"
	}
	c.setTimerDefaults()
}

func (c *Config) validate() error {
	var errs []error
	if c.Delivery.CommandTimeout >= c.Delivery.Lease {
		errs = append(errs, fmt.Errorf("delivery.command_timeout %s must be shorter than delivery.lease %s, so a hung command dies before its lock lease can expire", c.Delivery.CommandTimeout, c.Delivery.Lease))
	}
	if c.Delivery.Lease < 3*time.Second {
		errs = append(errs, fmt.Errorf("delivery.lease %s is too short (at least 3s)", c.Delivery.Lease))
	}
	seen := map[string]bool{}
	for i, b := range c.Backends {
		switch {
		case b.Name == "":
			errs = append(errs, fmt.Errorf("backends[%d]: name is required", i))
		case seen[b.Name]:
			errs = append(errs, fmt.Errorf("backends[%d]: duplicate name %q", i, b.Name))
		}
		seen[b.Name] = true
	}
	for vt, b := range c.VolumeTypes {
		if !seen[b] {
			errs = append(errs, fmt.Errorf("volume_types.%s: backend %q is not configured", vt, b))
		}
	}
	if c.DefaultBackend != "" && !seen[c.DefaultBackend] {
		errs = append(errs, fmt.Errorf("default_backend %q is not configured", c.DefaultBackend))
	}
	errs = append(errs, c.checkSecurity())
	errs = append(errs, c.checkTimers()...)
	return errors.Join(errs...)
}
