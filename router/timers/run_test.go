package timers_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/file"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/functions/scheduler"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router/timers"
)

// published is one event a replica's recorder kept.
type published struct {
	replica int
	topic   string
	id      string
	time    time.Time
	data    events.ResultData
}

func (r *recorder) published(t *testing.T, replica int) []published {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []published
	for i, m := range r.msgs {
		at, err := time.Parse(time.RFC3339Nano, m.Metadata.Get("ce_time"))
		if err != nil {
			t.Fatalf("ce_time %q: %v", m.Metadata.Get("ce_time"), err)
		}
		p := published{replica: replica, topic: r.tops[i], id: m.Metadata.Get("ce_id"), time: at}
		if err := json.Unmarshal(m.Payload, &p.data); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// runReplicas runs n replicas' run functions until until() holds (or 60 s
// pass: a failure), then stops them and waits for them to return.
func runReplicas(t *testing.T, n int, run func(ctx context.Context, i int), until func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx, i) }()
	}
	deadline := time.Now().Add(60 * time.Second)
	for !until() {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatal("the replicas did not get there within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
}

// TestStatsRunOneRoundPerInterval runs Stats.Run on three replicas that
// share Redis, each with its own drivers over the same two backends, for
// several 1 s intervals: every interval's round of a backend is taken once,
// by one replica, with the id of its bucket.
func TestStatsRunOneRoundPerInterval(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := "r" + testenv.Unique()
	dirs := map[string]string{"a": t.TempDir(), "b": t.TempDir()}
	const interval = time.Second
	recs := make([]*recorder, 3)
	replicas := make([]*timers.Stats, 3)
	for i := range replicas {
		backends := map[string]drivers.Driver{}
		for name, dir := range dirs {
			d, err := file.Open(drivers.Backend{Name: name, Driver: "file", Options: map[string]any{"dir": dir}},
				drivers.LocalExecutor{DefaultTimeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			backends[name] = d
		}
		recs[i] = &recorder{}
		replicas[i] = &timers.Stats{Sched: scheduler.New(rdb, scheduler.Config{Prefix: prefix}), Backends: backends,
			Out: timers.Output{Pub: recs[i], TopicPrefix: "p."}, RDB: rdb, Prefix: prefix, Interval: interval,
			// Not the default Interval/2: a slow df under -race on a busy
			// machine would lose a round, which this test does not test.
			Timeout: 10 * time.Second}
	}
	all := func() []published {
		var out []published
		for i, r := range recs {
			out = append(out, r.published(t, i)...)
		}
		return out
	}
	// Rounds per (backend, bucket).
	rounds := func() map[string][]published {
		m := map[string][]published{}
		for _, p := range all() {
			key := p.data.Backend + " " + strconv.FormatInt(p.time.Truncate(interval).Unix(), 10)
			m[key] = append(m[key], p)
		}
		return m
	}
	buckets := func() map[string]map[int64]bool {
		m := map[string]map[int64]bool{}
		for _, p := range all() {
			if m[p.data.Backend] == nil {
				m[p.data.Backend] = map[int64]bool{}
			}
			m[p.data.Backend][p.time.Truncate(interval).Unix()] = true
		}
		return m
	}
	runReplicas(t, 3, func(ctx context.Context, i int) { replicas[i].Run(ctx) }, func() bool {
		b := buckets()
		return len(b["a"]) >= 4 && len(b["b"]) >= 4
	})

	who := map[int]int{}
	for key, ps := range rounds() {
		if len(ps) != 1 {
			var by []int
			for _, p := range ps {
				by = append(by, p.replica)
			}
			t.Errorf("%s: %d rounds (by replicas %v), want one", key, len(ps), by)
			continue
		}
		p := ps[0]
		who[p.replica]++
		bucket := strconv.FormatInt(p.time.Truncate(interval).Unix(), 10)
		if p.topic != "p.backend.stats" || p.id != events.NoticeID(events.BackendStats, p.data.Backend, bucket) {
			t.Errorf("%s: %s %s, want the bucket's id", key, p.topic, p.id)
		}
	}
	t.Logf("rounds per replica: %v", who)
	// The scheduler has the latest round's figures.
	for name := range dirs {
		v, err := scheduler.New(rdb, scheduler.Config{Prefix: prefix}).Read(context.Background(), name, "")
		if err != nil || v.Stats == nil {
			t.Fatalf("%s: no stats stored: %v", name, err)
		}
		latest := int64(0)
		for b := range buckets()[name] {
			latest = max(latest, b)
		}
		if v.At.Truncate(interval).Unix() != latest {
			t.Errorf("%s: stored stats of %s, the latest round was at %d", name, v.At, latest)
		}
	}
}

// auditRecords writes registry records of live volumes, created long before
// now, under prefix.
func auditRecords(t *testing.T, rdb *redis.Client, prefix string, created time.Time, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for range n {
		v := functions.Volume{ID: uuid.NewString(), ProjectID: projA, UserID: userA, Backend: "local", SizeGB: 3,
			Status: functions.StatusAvailable, CreatedAt: events.FormatTime(created)}
		raw, _ := json.Marshal(v)
		key := prefix + ":{" + v.ID + "}:vol"
		if err := rdb.Set(ctx, key, raw, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Del(ctx, key) })
		ids = append(ids, v.ID)
	}
	return ids
}

// periodsOf groups audit events by their audit_period_beginning.
func periodsOf(ps []published) map[string][]published {
	m := map[string][]published{}
	for _, p := range ps {
		m[p.data.AuditPeriodBeginning] = append(m[p.data.AuditPeriodBeginning], p)
	}
	return m
}

// TestAuditRunPublishesEachPeriodOnce runs Audit.Run on three replicas
// that share Redis, with a 2 s period on the wall clock: each period that
// ends is published once, by one replica, with aligned
// audit_period_beginning and audit_period_ending, and none is skipped.
func TestAuditRunPublishesEachPeriodOnce(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := "r" + testenv.Unique()
	const period = 2 * time.Second
	// Created now: the periods before (which the replicas' first Run also
	// looks at, CatchUp) have no events.
	vols := auditRecords(t, rdb, prefix, time.Now(), 2)
	recs := make([]*recorder, 3)
	replicas := make([]*timers.Audit, 3)
	for i := range replicas {
		recs[i] = &recorder{}
		replicas[i] = &timers.Audit{RDB: rdb, Out: timers.Output{Pub: recs[i], TopicPrefix: "p."}, Prefix: prefix, Period: period}
	}
	all := func() []published {
		var out []published
		for i, r := range recs {
			out = append(out, r.published(t, i)...)
		}
		return out
	}
	runReplicas(t, 3, func(ctx context.Context, i int) { replicas[i].Run(ctx) }, func() bool {
		return len(periodsOf(all())) >= 3
	})

	ids := map[string]bool{}
	var begins []time.Time
	for beginning, ps := range periodsOf(all()) {
		begin, err := time.Parse(events.TimeFormat, beginning)
		if err != nil {
			t.Fatalf("audit_period_beginning %q: %v", beginning, err)
		}
		if !begin.Truncate(period).Equal(begin) {
			t.Errorf("period %s is not aligned to %s", beginning, period)
		}
		begins = append(begins, begin)
		got := map[string]bool{}
		for _, p := range ps {
			if p.replica != ps[0].replica {
				t.Errorf("period %s published by replicas %d and %d", beginning, ps[0].replica, p.replica)
			}
			if p.topic != "p.volume.exists" || p.data.AuditPeriodEnding != events.FormatTime(begin.Add(period)) ||
				!p.time.Equal(begin.Add(period)) {
				t.Errorf("period %s: %s ending %s at %s", beginning, p.topic, p.data.AuditPeriodEnding, p.time)
			}
			if got[p.data.VolumeID] || ids[p.id] {
				t.Errorf("period %s: volume %s (id %s) published twice", beginning, p.data.VolumeID, p.id)
			}
			got[p.data.VolumeID], ids[p.id] = true, true
		}
		if len(got) != len(vols) {
			t.Errorf("period %s: volume.exists for %v, want %v", beginning, got, vols)
		}
	}
	// From the period the volumes were created in on, every period: one
	// missed by slow replicas is made up by the next check.
	slices.SortFunc(begins, time.Time.Compare)
	for i := 1; i < len(begins); i++ {
		if !begins[i].Equal(begins[i-1].Add(period)) {
			t.Errorf("periods %v: a gap after %s", begins, begins[i-1])
		}
	}
}

// clock is a test's settable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// TestAuditRunMakesUpMissedPeriods: every replica was down while audit
// periods ended. When they come back, Run publishes the periods nobody
// published, each once, among two replicas, up to MaxCatchUp periods
// before the one that just ended, and never again one that was published.
// The clock is the test's (hour periods, on a day in the past).
func TestAuditRunMakesUpMissedPeriods(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := "r" + testenv.Unique()
	ctx := context.Background()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(h, m int) time.Time { return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	early := auditRecords(t, rdb, prefix, at(8, 30), 1)[0]
	late := auditRecords(t, rdb, prefix, at(12, 30), 1)[0]
	t.Cleanup(func() {
		keys, _ := rdb.Keys(ctx, prefix+":{audit}:*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	clk := &clock{}
	// Before the outage: 9:00–10:00 and 10:00–11:00 were published
	// (8:00–9:00 never was), then every replica went down at 11:30.
	before := &recorder{}
	a := &timers.Audit{RDB: rdb, Out: timers.Output{Pub: before}, Prefix: prefix, Now: clk.Now}
	for _, h := range []int{9, 10} {
		if did, err := a.RunPeriod(ctx, at(h, 0), at(h+1, 0)); !did || err != nil {
			t.Fatalf("%d:00: %v %v", h, did, err)
		}
	}

	// restart brings two replicas up at now and returns what they published
	// until every period in want was done.
	restart := func(now time.Time, want []int) []published {
		clk.Set(now)
		recs := []*recorder{{}, {}}
		done := func() bool {
			for _, h := range want {
				if v, _ := rdb.Get(ctx, prefix+":{audit}:3600s:"+strconv.FormatInt(at(h, 0).Unix(), 10)).Result(); v != "done" {
					return false
				}
			}
			return true
		}
		runReplicas(t, 2, func(ctx context.Context, i int) {
			(&timers.Audit{RDB: rdb, Out: timers.Output{Pub: recs[i]}, Prefix: prefix, Now: clk.Now}).Run(ctx)
		}, done)
		var out []published
		for i, r := range recs {
			out = append(out, r.published(t, i)...)
		}
		return out
	}
	// check compares what was published with the volumes each period
	// (by its hour) should have, each published once by one replica.
	check := func(got []published, want map[int][]string) {
		t.Helper()
		periods := periodsOf(got)
		for h, vols := range want {
			ps := periods[events.FormatTime(at(h, 0))]
			var ids []string
			for _, p := range ps {
				ids = append(ids, p.data.VolumeID)
				if p.replica != ps[0].replica || p.data.AuditPeriodEnding != events.FormatTime(at(h+1, 0)) {
					t.Errorf("%d:00: %+v", h, p)
				}
			}
			slices.Sort(ids)
			slices.Sort(vols)
			if !slices.Equal(ids, vols) {
				t.Errorf("%d:00–%d:00: volume.exists for %v, want %v", h, h+1, ids, vols)
			}
			delete(periods, events.FormatTime(at(h, 0)))
		}
		if len(periods) != 0 {
			t.Errorf("published periods beyond those wanted: %v", periods)
		}
	}

	// Back at 15:20: 14:00–15:00 just ended; 11:00 to 14:00 were missed.
	// 9:00 and 10:00 are in reach (5 periods before 14:00) but published.
	got := restart(at(15, 20), []int{11, 12, 13, 14})
	check(got, map[int][]string{11: {early}, 12: {early, late}, 13: {early, late}, 14: {early, late}})

	// Down again from 15:20 to 23:20: 22:00–23:00 just ended, and only the
	// 5 periods before it are made up; 15:00 and 16:00 stay missed.
	got = restart(at(23, 20), []int{17, 18, 19, 20, 21, 22})
	both := []string{early, late}
	check(got, map[int][]string{17: both, 18: both, 19: both, 20: both, 21: both, 22: both})
	for _, h := range []int{15, 16} {
		if v, _ := rdb.Get(ctx, prefix+":{audit}:3600s:"+strconv.FormatInt(at(h, 0).Unix(), 10)).Result(); v != "" {
			t.Errorf("%d:00 beyond the catch-up window is %q", h, v)
		}
	}
}
