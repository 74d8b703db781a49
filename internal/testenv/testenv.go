// Package testenv hands tests the real components that `make test` starts
// (deploy/testenv/test.sh): a Kafka 4.1 broker and a redis-server. A test
// that needs one fails loudly when it is missing, unless -short selects the
// fast set.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Kafka returns the brokers of the real Kafka.
func Kafka(t testing.TB) []string {
	t.Helper()
	addr := os.Getenv("EMBER_TEST_KAFKA")
	if addr == "" {
		if testing.Short() {
			t.Skip("-short: no real Kafka")
		}
		t.Fatal("EMBER_TEST_KAFKA is not set: this test needs the real Kafka broker that `make test` starts")
	}
	return []string{addr}
}

// RedisURL returns the URL of the real redis-server.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("EMBER_TEST_REDIS")
	if u == "" {
		if testing.Short() {
			t.Skip("-short: no real Redis")
		}
		t.Fatal("EMBER_TEST_REDIS is not set: this test needs the real redis-server that `make test` starts")
	}
	return u
}

// Redis returns a client of the real redis-server, closed after the test.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis %s: %v", opt.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Unique returns a short random name part, so that tests sharing a broker
// and a Redis never see each other's topics, groups or keys.
func Unique() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
