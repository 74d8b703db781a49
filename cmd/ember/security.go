package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/router"
)

// redisTLS is redis.tls in the configuration file. A single server's TLS
// is chosen by its URL (rediss://); a cluster's by enabled.
type redisTLS struct {
	Enabled         bool `yaml:"enabled"`
	router.TLSFiles `yaml:",inline"`
}

// applySecurityEnv reads the secrets and identities that containers pass
// in the environment. Passwords never come from the configuration file
// itself: only from *_password_file or these variables.
func (c *Config) applySecurityEnv(getenv func(string) string) {
	if v := getenv("EMBER_KAFKA_SASL_MECHANISM"); v != "" {
		c.Kafka.SASL.Mechanism = v
	}
	if v := getenv("EMBER_KAFKA_SASL_USERNAME"); v != "" {
		c.Kafka.SASL.Username = v
	}
	if v := getenv("EMBER_KAFKA_SASL_PASSWORD"); v != "" {
		c.Kafka.SASL.Password = router.Secret(v)
	}
	if v := getenv("EMBER_KAFKA_TLS_CA_FILE"); v != "" {
		c.Kafka.TLS.Enabled, c.Kafka.TLS.CAFile = true, v
	}
	if v := getenv("EMBER_REDIS_USERNAME"); v != "" {
		c.Redis.Username = v
	}
	if v := getenv("EMBER_REDIS_PASSWORD"); v != "" {
		c.Redis.Password = router.Secret(v)
	}
}

// loadSecrets reads the password files that the environment did not
// override.
func (c *Config) loadSecrets() error {
	var errs []error
	errs = append(errs, c.Kafka.LoadPassword())
	if c.Redis.Password == "" && c.Redis.PasswordFile != "" {
		p, err := router.ReadSecret("redis.password_file", c.Redis.PasswordFile)
		c.Redis.Password = p
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkSecurity reports bad combinations and unreadable files early, at
// load time, rather than at the first connection.
func (c *Config) checkSecurity() error {
	var errs []error
	k := c.Kafka.KafkaSecurity
	if _, err := k.Option(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.redisTLSConfig(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// redisTLSConfig is the TLS configuration of the Redis client, nil for a
// plaintext connection.
func (c *Config) redisTLSConfig() (*tls.Config, error) {
	t := c.Redis.TLS
	useTLS := t.Enabled
	if len(c.Redis.Cluster.Addrs) == 0 {
		u, err := url.Parse(c.Redis.URL)
		if err != nil {
			return nil, errors.New("redis.url: not a URL") // the URL may hold a password: not echoed
		}
		switch {
		case u.Scheme == "rediss":
			useTLS = true
		case t.Enabled || t.Set():
			return nil, fmt.Errorf("redis.tls is set but redis.url is %s://: use rediss:// for TLS", u.Scheme)
		}
	} else if !t.Enabled && t.Set() {
		return nil, errors.New("redis.tls: files are set but redis.tls.enabled is false (a cluster has no URL to say rediss://)")
	}
	if !useTLS {
		return nil, nil
	}
	return t.Config("redis.tls")
}

// secureRedis applies TLS and AUTH to a single server's options, parsed
// from redis.url. redis.username and the password (EMBER_REDIS_PASSWORD,
// else redis.password_file) win over the URL's user and password.
func (c *Config) secureRedis(opt *redis.Options) error {
	tc, err := c.redisTLSConfig()
	if err != nil {
		return err
	}
	if tc != nil {
		if tc.ServerName == "" && opt.TLSConfig != nil {
			tc.ServerName = opt.TLSConfig.ServerName
		}
		opt.TLSConfig = tc
	}
	if c.Redis.Username != "" {
		opt.Username = c.Redis.Username
	}
	if c.Redis.Password != "" {
		opt.Password = c.Redis.Password.Reveal()
	}
	return nil
}

// secureRedisCluster applies TLS and AUTH to a cluster client's options.
func (c *Config) secureRedisCluster(opt *redis.ClusterOptions) error {
	tc, err := c.redisTLSConfig()
	if err != nil {
		return err
	}
	opt.TLSConfig = tc
	opt.Username = c.Redis.Username
	opt.Password = c.Redis.Password.Reveal()
	return nil
}

// secureClient completes the Kafka configuration of a one-shot command
// (emit, dlq): with --config, brokers and topic prefix come from the file
// unless their flags were given, and its kafka.tls and kafka.sasl apply;
// without, security comes from the environment (EMBER_KAFKA_SASL_*,
// EMBER_KAFKA_TLS_CA_FILE).
func secureClient(cfg *router.Config, fs *flag.FlagSet, configPath string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	c := &Config{}
	if configPath != "" {
		var err error
		if c, err = loadConfig(configPath); err != nil {
			return err
		}
		if !given["kafka"] {
			cfg.Brokers = c.Kafka.Brokers
		}
		if !given["topic-prefix"] {
			cfg.TopicPrefix = c.Kafka.TopicPrefix
		}
	} else {
		c.applySecurityEnv(getenv)
	}
	return cfg.Secure(c.Kafka.KafkaSecurity)
}
