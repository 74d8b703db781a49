// Package timers runs Ember's timer-driven work (SPEC §3, the "(timer)"
// row): the capacity stats of every backend, kept for the scheduler and
// published as backend.stats, and the periodic volume.exists and
// snapshot.exists audit events that billing pipelines read. Every replica
// runs the timers; a Redis guard per time bucket lets one of them do each
// round, and event ids derive from (resource, bucket), so a round redone
// after a crash publishes the same events.
package timers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions/scheduler"
	"github.com/ember-storage/ember/router"
)

// Defaults (Cinder's periodic_interval is 60 s; volume_usage_audit_period hour).
const (
	DefaultStatsInterval = 60 * time.Second
	DefaultAuditPeriod   = time.Hour
)

// Output is where timer events go: the router's publisher kind, a topic
// prefix and the content mode.
type Output struct {
	Pub         router.Publisher
	TopicPrefix string
	Mode        events.Mode
}

func (o Output) publish(recs []events.Record) error {
	if o.Mode == "" {
		o.Mode = events.Binary
	}
	for _, r := range recs {
		if err := o.Pub.Publish(o.TopicPrefix+r.Type, r.Message()); err != nil {
			return fmt.Errorf("publish %s %s: %w", r.Type, r.ID, err)
		}
	}
	return nil
}

// Topics lists the topics the timers publish to (before the prefix).
func Topics() []string {
	return []string{events.BackendStats, events.VolumeExists, events.SnapshotExists}
}

// Stats runs GetVolumeStats on every backend each interval, stores the
// figures for the scheduler and publishes backend.stats.
type Stats struct {
	Sched    *scheduler.Scheduler
	Backends map[string]drivers.Driver
	Out      Output
	RDB      redis.UniversalClient
	// Prefix is the Redis key prefix (default "ember").
	Prefix string
	// Interval between stats runs (default 60 s), aligned to its multiples.
	Interval time.Duration
	// Timeout bounds one backend's stats call (default Interval/2).
	Timeout time.Duration
	Log     *slog.Logger
}

func (s *Stats) defaults() {
	if s.Prefix == "" {
		s.Prefix = "ember"
	}
	if s.Interval <= 0 {
		s.Interval = DefaultStatsInterval
	}
	if s.Timeout <= 0 {
		s.Timeout = s.Interval / 2
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
}

// Once takes one stats round of every backend now; errors are per backend.
func (s *Stats) Once(ctx context.Context) error {
	s.defaults()
	names := make([]string, 0, len(s.Backends))
	for n := range s.Backends {
		names = append(names, n)
	}
	sort.Strings(names)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Backend(ctx, n); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// KEYS: guard. ARGV: owner, ttl ms. One replica takes a bucket.
var bucketScript = redis.NewScript(`
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
`)

// Backend takes, stores and publishes one backend's stats, unless another
// replica did so in this interval's bucket.
func (s *Stats) Backend(ctx context.Context, name string) error {
	s.defaults()
	d := s.Backends[name]
	at, err := s.Sched.Clock(ctx, name)
	if err != nil {
		return err
	}
	bucket := at.Truncate(s.Interval)
	guard := s.Prefix + ":{backend:" + name + "}:statsround:" + strconv.FormatInt(bucket.Unix(), 10)
	n, err := bucketScript.Run(ctx, s.RDB, []string{guard}, "taken", s.Interval.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("stats %s: %w", name, err)
	}
	if n == 0 {
		return nil // another replica has this bucket
	}
	cctx, cancel := context.WithTimeout(ctx, s.Timeout)
	st, err := d.GetVolumeStats(cctx)
	cancel()
	if err != nil {
		// Let another replica (or the next tick) try this bucket again.
		s.RDB.Del(ctx, guard)
		return fmt.Errorf("stats %s: %w", name, err)
	}
	if _, err := s.Sched.StoreStats(ctx, name, st, at); err != nil {
		s.RDB.Del(ctx, guard)
		return err
	}
	rec, err := events.BuildNotice(StatsNotice(name, st, at, bucket), s.Out.Mode)
	if err != nil {
		return err
	}
	if err := s.Out.publish([]events.Record{rec}); err != nil {
		return err
	}
	s.Log.Debug("backend stats", "backend", name, "total_gb", st.TotalCapacityGB, "free_gb", st.FreeCapacityGB,
		"provisioned_gb", st.ProvisionedCapacityGB)
	return nil
}

// StatsNotice is the backend.stats event of one stats round.
func StatsNotice(backend string, st drivers.Stats, at, bucket time.Time) events.Notice {
	return events.Notice{
		Type: events.BackendStats, Source: "/ember/" + backend, Subject: backend, Key: backend,
		Discriminator: strconv.FormatInt(bucket.Unix(), 10), Time: at,
		Data: events.ResultData{Host: backend, Backend: backend, Stats: st},
	}
}

// Run takes a stats round now and then at every multiple of Interval,
// until ctx ends.
func (s *Stats) Run(ctx context.Context) {
	s.defaults()
	for {
		if err := s.Once(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("backend stats", "err", err)
		}
		if !sleepUntil(ctx, time.Now().Truncate(s.Interval).Add(s.Interval)) {
			return
		}
	}
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
