package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
)

// The rows of docs/RELIABILITY.md. Each test logs one "RELIABILITY <row>:"
// line with its figures; `make chaos` runs the long versions.

// TestChaosCrashCampaign SIGKILLs `ember serve` EMBER_CHAOS_KILLS times in
// a row (default 8; `make chaos`: 50) under a continuous mixed stream,
// restarting it after each kill. A kill lands at a random moment: during
// start-up, or shortly after the process answered its first request; one
// in four restarts also arms EMBER_CRASH_AT at a random protocol step, so
// that the process kills itself in that crash window. Then every request
// has one terminal result id, the backend matches the registry, and no
// lock outlives its lease.
func TestChaosCrashCampaign(t *testing.T) {
	kills := envInt(t, "EMBER_CHAOS_KILLS", 8)
	clients := envInt(t, "EMBER_CHAOS_CLIENTS", 6)
	burst := envInt(t, "EMBER_CHAOS_BURST", 100)
	var inFlightAtKill []int
	r := newRig(t, testenv.Kafka(t), testenv.RedisURL(t))
	w := r.workload(clients)
	points := []string{"after-start", "after-act", "after-complete", "after-publish"}
	var killTimes []time.Time
	selfKills, noProgress := 0, 0
	began := time.Now()
	// EMBER_CHAOS_STATIC=1 runs the replica as a static group member
	// (kafka.group_instance_id), restarted under the same id each time.
	var static []string
	if os.Getenv("EMBER_CHAOS_STATIC") != "" {
		static = []string{"EMBER_KAFKA_GROUP_INSTANCE_ID=chaos-replica-1"}
	}
	for i := 0; i < kills; i++ {
		env := slices.Clone(static)
		if rand.IntN(4) == 0 {
			env = append(env, router.CrashAtEnv+"="+points[rand.IntN(len(points))])
		}
		p := r.serve(env...)
		n := w.answers.Load()
		// Every wait ends early when the process is gone: one armed with a
		// crash point kills itself, often before it answers anything, and
		// a wait that did not notice would count its own length as
		// Ember's time to recover.
		if rand.IntN(5) == 0 {
			p.sleep(time.Duration(rand.Int64N(int64(3 * time.Second)))) // mid start-up
		} else if w.progressSince(n, 90*time.Second, p) {
			if i%2 == 0 {
				// Many records of one partition running at once when
				// the kill lands (concurrency inside a partition).
				w.burst(burst)
				most := 0
				for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && most < 64 && !p.exited(); {
					most = max(most, p.inFlight())
					time.Sleep(10 * time.Millisecond)
				}
				inFlightAtKill = append(inFlightAtKill, most)
			} else {
				p.sleep(time.Duration(rand.Int64N(int64(1500 * time.Millisecond)))) // mid-stream
			}
		} else if !p.exited() {
			noProgress++
		}
		if p.exited() {
			selfKills++ // it reached its crash point and killed itself
		} else {
			p.kill()
		}
		killTimes = append(killTimes, time.Now())
	}
	final := r.serve(static...)
	w.finish() // what was sent completes (each client ends its volume)
	final.stop(t)
	rp := r.verify(w)
	// Time to recover: from each kill to the next answer (the restart,
	// the dead member leaving the groups, its leases expiring).
	var rec []time.Duration
	for i, k := range killTimes {
		d := w.recovery(k)
		if d >= 0 {
			rec = append(rec, d)
		}
		t.Logf("kill %d at %s: next answer after %s", i+1, k.Sub(began).Round(100*time.Millisecond), d.Round(100*time.Millisecond))
	}
	logReport(t, "crash", rp, fmt.Sprintf("kills=%d self_kills_at_crash_point=%d kills_without_progress=%d clients=%d wall=%s",
		kills, selfKills, noProgress, clients, time.Since(began).Round(time.Second)))
	t.Logf("RELIABILITY crash: recovery %s; volume.requested records in flight when a burst kill landed: %v", durations(rec), inFlightAtKill)
	requireClean(t, rp)
	if len(rp.Errors) > 0 {
		t.Errorf("error results under crashes: %v", rp.Errors)
	}
	if len(inFlightAtKill) > 0 && slices.Max(inFlightAtKill) < 64 {
		t.Errorf("no kill landed with 64 records of one partition in flight: %v", inFlightAtKill)
	}
	if noProgress > 0 {
		t.Errorf("%d of %d restarted processes answered nothing within 90 s while alive", noProgress, kills)
	}
}

// TestBrokerRestart stops this test's own Kafka broker mid-stream for a
// few seconds and starts it again on its data: Ember pauses (publishes
// fail, consumers lose their groups), then recovers and loses nothing.
func TestBrokerRestart(t *testing.T) {
	broker, restart := ownKafka(t)
	r := newRig(t, []string{broker}, testenv.RedisURL(t))
	w := r.workload(envInt(t, "EMBER_CHAOS_CLIENTS", 4))
	p := r.serve()
	rounds := envInt(t, "EMBER_CHAOS_RESTARTS", 1)
	var rec, fromDown []time.Duration
	for i := 0; i < rounds; i++ {
		if !w.progressSince(w.answers.Load()+10, 90*time.Second) {
			t.Fatalf("no progress before restart %d", i+1)
		}
		down := time.Now()
		restart(3 * time.Second)
		up := time.Now()
		if !w.progressSince(w.answers.Load()+10, 3*time.Minute) {
			t.Errorf("no progress within 3 min of broker restart %d", i+1)
		}
		rec = append(rec, w.recovery(up))
		fromDown = append(fromDown, w.recovery(down))
	}
	w.finish()
	p.stop(t)
	rp := r.verify(w)
	logReport(t, "broker-restart", rp, fmt.Sprintf("restarts=%d", rounds))
	t.Logf("RELIABILITY broker-restart: recovery after broker up %s; from broker stop %s", durations(rec), durations(fromDown))
	requireClean(t, rp)
	if len(rp.Errors) > 0 {
		t.Errorf("error results: %v", rp.Errors)
	}
}

// TestRedisRestart kills this test's own redis-server mid-stream and starts
// it again: with an fsynced append-only file nothing is lost; without
// persistence every lock, idempotency record and registry record is gone,
// and what that costs is measured, not hidden.
func TestRedisRestart(t *testing.T) {
	for _, persist := range []bool{true, false} {
		name := map[bool]string{true: "aof", false: "no-persistence"}[persist]
		t.Run(name, func(t *testing.T) {
			url, restart := ownRedis(t, persist)
			r := newRig(t, testenv.Kafka(t), url)
			w := r.workload(envInt(t, "EMBER_CHAOS_CLIENTS", 4))
			p := r.serve()
			if !w.progressSince(w.answers.Load()+15, 90*time.Second) {
				t.Fatal("no progress before the restart")
			}
			down := time.Now()
			restart(3 * time.Second)
			up := time.Now()
			if !w.progressSince(w.answers.Load()+15, 3*time.Minute) {
				t.Errorf("no progress within 3 min of the Redis restart")
			}
			w.finish()
			p.stop(t)
			rp := r.verify(w)
			logReport(t, "redis-restart-"+name, rp, "")
			t.Logf("RELIABILITY redis-restart-%s: recovery after redis up %s; from redis stop %s",
				name, w.recovery(up).Round(100*time.Millisecond), w.recovery(down).Round(100*time.Millisecond))
			// Whatever Redis forgot, no request goes unanswered, none is
			// answered twice with different ids, no lock is stuck, and no
			// effect happens twice: the drivers' own idempotency (a create
			// finds its file) holds where the idempotency records are gone,
			// so the backend holds nothing that no request asked for.
			// Without persistence the registry, the tombstones and the
			// scheduler's stats are gone: later requests on old volumes fail
			// or leave files behind (orphans, left_after_delete), which the
			// report counts (docs/RELIABILITY.md).
			if rp.Lost != 0 || rp.DupResultIDs != 0 || rp.LocksPastLease != 0 || rp.Unrequested != 0 {
				t.Errorf("lost requests, duplicate results, stuck locks or a second effect: %s", rp)
			}
			if persist {
				requireClean(t, rp)
				if len(rp.Errors) > 0 {
					t.Errorf("error results: %v", rp.Errors)
				}
				return
			}
			// What Redis forgot, the operator's sweep recovers: a volume
			// deleted after the wipe left a tombstone and its files, which
			// `ember reconcile --remove` deletes; a live volume whose record
			// was lost is unregistered, kept.
			out, code := runReconcile(t, "--config", r.cfgPath, "--remove")
			after := r.verify(w)
			logReport(t, "redis-restart-no-persistence-after-reconcile", after, "")
			if after.LeftAfterDelete != 0 || after.Unrequested != 0 || (rp.LeftAfterDelete > 0 && !strings.Contains(out, "; removed")) {
				t.Errorf("ember reconcile --remove (exit %d) left deleted volumes' files: %s\n%s", code, after, out)
			}
			// What is left is the live volumes Redis forgot: kept, and named.
			if after.Orphans > 0 && !strings.Contains(out, "\tunregistered\t") {
				t.Errorf("files without a record, but reconcile named none unregistered:\n%s", out)
			}
		})
	}
}

// TestRebalance runs two and three `ember serve` instances in one set of
// consumer groups under load: B joins, C joins, B leaves (SIGTERM), C dies
// (SIGKILL); EMBER_CHAOS_REBALANCES rounds. It measures, with
// watermill-kafka v2, the stall after each change and what was lost or
// duplicated.
func TestRebalance(t *testing.T) {
	r := newRig(t, testenv.Kafka(t), testenv.RedisURL(t))
	w := r.workload(envInt(t, "EMBER_CHAOS_CLIENTS", 6))
	a := r.serve()
	if !w.progressSince(w.answers.Load()+10, 90*time.Second) {
		t.Fatal("no progress with one instance")
	}
	rounds := envInt(t, "EMBER_CHAOS_REBALANCES", 1)
	const settle = 12 * time.Second
	type change struct {
		what string
		at   time.Time
	}
	var changes []change
	mark := func(what string) { changes = append(changes, change{what, time.Now()}); time.Sleep(settle) }
	for i := 0; i < rounds; i++ {
		b := r.serve()
		mark("B joins")
		c := r.serve()
		mark("C joins")
		b.stop(t)
		mark("B leaves (SIGTERM)")
		c.kill()
		mark("C dies (SIGKILL)")
	}
	end := time.Now()
	w.finish()
	a.stop(t)
	rp := r.verify(w)
	var rec []time.Duration
	for i, c := range changes {
		until := end
		if i+1 < len(changes) {
			until = changes[i+1].at
		}
		d := w.recovery(c.at)
		rec = append(rec, d)
		t.Logf("%s at %s: next answer after %s, longest gap until the next change %s", c.what,
			c.at.Sub(changes[0].at).Round(100*time.Millisecond), d.Round(100*time.Millisecond), w.maxGap(c.at, until).Round(100*time.Millisecond))
	}
	logReport(t, "rebalance", rp, fmt.Sprintf("rounds=%d membership_changes=%d", rounds, len(changes)))
	t.Logf("RELIABILITY rebalance: recovery %s; log lines: %d 'generation', %d 'rebalanc', %d 'Group consume error', %d 'not known'",
		durations(rec), r.logCount("generation"), r.logCount("rebalanc"), r.logCount("Group consume error"), r.logCount("not known"))
	requireClean(t, rp)
	if len(rp.Errors) > 0 {
		t.Errorf("error results: %v", rp.Errors)
	}
}
