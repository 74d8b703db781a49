package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/functions/scheduler"
	"github.com/ember-storage/ember/router"
	"github.com/ember-storage/ember/router/timers"
)

// SchedulerConfig is the scheduler: section (SPEC §4 scheduling).
type SchedulerConfig struct {
	// StatsInterval is how often each backend's capacity is read (default 60s).
	StatsInterval time.Duration `yaml:"stats_interval"`
	// StaleAfter: older stats exclude their backend (default 3 intervals).
	StaleAfter time.Duration `yaml:"stale_after"`
}

// AuditConfig is the audit: section.
type AuditConfig struct {
	// Period of volume.exists / snapshot.exists audits (default 1h),
	// aligned to its multiples.
	Period time.Duration `yaml:"period"`
}

// applyTimerEnv reads EMBER_SCHEDULER_STATS_INTERVAL,
// EMBER_SCHEDULER_STALE_AFTER and EMBER_AUDIT_PERIOD; a value that is not
// a duration is reported by validate.
func (c *Config) applyTimerEnv(getenv func(string) string) {
	dur := func(name string, dst *time.Duration) {
		v := getenv(name)
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: %w", name, v, err))
			return
		}
		*dst = d
	}
	dur("EMBER_SCHEDULER_STATS_INTERVAL", &c.Scheduler.StatsInterval)
	dur("EMBER_SCHEDULER_STALE_AFTER", &c.Scheduler.StaleAfter)
	dur("EMBER_AUDIT_PERIOD", &c.Audit.Period)
}

func (c *Config) setTimerDefaults() {
	if c.Scheduler.StatsInterval == 0 {
		c.Scheduler.StatsInterval = timers.DefaultStatsInterval
	}
	if c.Scheduler.StaleAfter == 0 {
		c.Scheduler.StaleAfter = 3 * c.Scheduler.StatsInterval
	}
	if c.Audit.Period == 0 {
		c.Audit.Period = timers.DefaultAuditPeriod
	}
}

func (c *Config) checkTimers() []error {
	errs := append([]error(nil), c.envErrs...)
	if c.Scheduler.StatsInterval < time.Second {
		errs = append(errs, fmt.Errorf("scheduler.stats_interval %s is too short (at least 1s)", c.Scheduler.StatsInterval))
	}
	if c.Scheduler.StaleAfter < c.Scheduler.StatsInterval {
		errs = append(errs, fmt.Errorf("scheduler.stale_after %s must be at least scheduler.stats_interval %s", c.Scheduler.StaleAfter, c.Scheduler.StatsInterval))
	}
	if c.Audit.Period < time.Second {
		errs = append(errs, fmt.Errorf("audit.period %s is too short (at least 1s)", c.Audit.Period))
	}
	return errs
}

// newScheduler places creates that name no backend.
func newScheduler(rdb redis.UniversalClient, cfg *Config) *scheduler.Scheduler {
	return scheduler.New(rdb, scheduler.Config{Prefix: cfg.Redis.KeyPrefix, StaleAfter: cfg.Scheduler.StaleAfter})
}

// setupTimers builds the stats and audit timers and takes a first stats
// round, so that the scheduler has figures before the first create.
func (rt *runtime) setupTimers(rcfg router.Config, env *functions.Env, sched *scheduler.Scheduler) error {
	pub, err := timers.NewPublisher(rcfg, rt.log)
	if err != nil {
		return err
	}
	rt.onClose = append(rt.onClose, func() { _ = pub.Close() })
	out := timers.Output{Pub: pub, TopicPrefix: rcfg.TopicPrefix, Mode: rcfg.OutputMode}
	rt.timers.stats = &timers.Stats{Sched: sched, Backends: env.Backends, Out: out, RDB: rt.rdb, Prefix: rt.cfg.Redis.KeyPrefix,
		Interval: rt.cfg.Scheduler.StatsInterval, Log: rt.log}
	// A backend without stats (Redis restarted empty) gets a round of its
	// own at the first create that needs it, not at the next tick.
	sched.OnMissingStats(rt.timers.stats.Backend)
	rt.timers.audit = &timers.Audit{RDB: rt.rdb, Out: out, Prefix: rt.cfg.Redis.KeyPrefix, Period: rt.cfg.Audit.Period, Log: rt.log}
	ctx, cancel := context.WithTimeout(context.Background(), rt.cfg.Scheduler.StatsInterval)
	defer cancel()
	if err := rt.timers.stats.Once(ctx); err != nil {
		rt.log.Warn("first backend stats round", "err", err)
	}
	return nil
}

// timerSet is a runtime's timers.
type timerSet struct {
	stats *timers.Stats
	audit *timers.Audit
}

// startTimers runs the timers until ctx ends or the returned stop is called
// (which waits for them).
func (rt *runtime) startTimers(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if rt.timers.stats != nil {
		wg.Add(1)
		go func() { defer wg.Done(); rt.timers.stats.Run(ctx) }()
	}
	if rt.timers.audit != nil {
		wg.Add(1)
		go func() { defer wg.Done(); rt.timers.audit.Run(ctx) }()
	}
	return func() { cancel(); wg.Wait() }
}
