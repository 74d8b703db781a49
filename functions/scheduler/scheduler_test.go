package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/functions/scheduler"
	"github.com/ember-storage/ember/internal/testenv"
)

// These tests run on the real redis-server that `make test` starts.

func newSched(t *testing.T) *scheduler.Scheduler {
	t.Helper()
	return scheduler.New(testenv.Redis(t), scheduler.Config{Prefix: "s" + testenv.Unique(), StaleAfter: time.Minute})
}

func thick(total, free float64) drivers.Stats {
	return drivers.Stats{TotalCapacityGB: total, FreeCapacityGB: free, ThickProvisioningSupport: true, MaxOverSubscriptionRatio: 1}
}

func store(t *testing.T, s *scheduler.Scheduler, backend string, st drivers.Stats) time.Time {
	t.Helper()
	ctx := context.Background()
	at, err := s.Clock(ctx, backend)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.StoreStats(ctx, backend, st, at); err != nil || !ok {
		t.Fatalf("store stats %s: %v %v", backend, ok, err)
	}
	return at
}

func pick(t *testing.T, s *scheduler.Scheduler, size int, cands ...string) (string, error) {
	t.Helper()
	return s.Pick(context.Background(), functions.Placement{VolumeID: uuid.NewString(), SizeGB: size, Candidates: cands})
}

func noValid(t *testing.T, err error) string {
	t.Helper()
	var f *functions.Failure
	if !errors.As(err, &f) || f.Code != functions.CodeNoValidBackend {
		t.Fatalf("want a no_valid_backend failure, got %v", err)
	}
	return f.Message
}

// TestFilter checks Cinder's CapacityFilter arithmetic.
func TestFilter(t *testing.T) {
	v := func(st drivers.Stats, claimed int) scheduler.View {
		return scheduler.View{Backend: "b", Stats: &st, ClaimedGB: claimed, Claims: 1}
	}
	thin := func(total, free, prov, ratio float64, reserved int) drivers.Stats {
		return drivers.Stats{TotalCapacityGB: total, FreeCapacityGB: free, ProvisionedCapacityGB: prov,
			ThinProvisioningSupport: true, MaxOverSubscriptionRatio: ratio, ReservedPercentage: reserved}
	}
	reserve := thick(100, 50)
	reserve.ReservedPercentage = 10 // 10 GB kept: 40 usable
	for _, c := range []struct {
		name string
		v    scheduler.View
		size int
		pass bool
		why  string
	}{
		{"thick fits", v(thick(100, 50), 0), 50, true, ""},
		{"thick too big", v(thick(100, 50), 0), 51, false, "free 50 GB after reserving 0% (0 GB) is less than 51 GB"},
		{"thick reserve", v(reserve, 0), 40, true, ""},
		{"thick reserve bites", v(reserve, 0), 41, false, "reserving 10% (10 GB)"},
		{"thick claims count", v(thick(100, 50), 20), 31, false, "free 30 GB (50 GB in its stats less 20 GB claimed by 1 creates since)"},
		{"thin within ratio", v(thin(100, 80, 150, 2, 0), 0), 50, true, ""},
		{"thin beyond ratio", v(thin(100, 80, 150, 2, 0), 0), 51, false, "max_over_subscription_ratio 2"},
		{"thin claims count", v(thin(100, 80, 150, 2, 0), 10), 41, false, "provisioned 160 GB (150 GB in its stats plus 10 GB claimed"},
		{"thin claims leave free space", v(thin(100, 5, 0, 20, 0), 50), 7, true, ""},
		{"thin no free after reserve", v(thin(100, 5, 10, 20, 5), 0), 1, false, "after reserving 5%"},
		{"thin ratio below 1 is thick", v(thin(100, 10, 500, 0.5, 0), 0), 10, true, ""},
		{"no capacity", v(thick(0, 0), 0), 1, false, "reports no capacity"},
	} {
		why := scheduler.Filter(c.v, c.size)
		if (why == "") != c.pass || !strings.Contains(why, c.why) {
			t.Errorf("%s: Filter = %q; want pass=%v containing %q", c.name, why, c.pass, c.why)
		}
	}
	// Weigher: virtual free capacity.
	if w := scheduler.Weight(v(thin(100, 80, 150, 2, 10), 5)); w != 100*2-155-10 {
		t.Errorf("thin weight %v", w)
	}
	if w := scheduler.Weight(v(reserve, 5)); w != 50-5-10 {
		t.Errorf("thick weight %v", w)
	}
}

func TestPickMostFreeAndClaims(t *testing.T) {
	s := newSched(t)
	store(t, s, "a", thick(100, 100))
	store(t, s, "b", thick(100, 60))
	// Claims since the stats count as consumed: a 100→70→40, then b 60→30,
	// then a 40→10, then b 30→0; nothing fits a sixth.
	var got []string
	for range 6 {
		b, err := pick(t, s, 30, "a", "b")
		if err == nil {
			got = append(got, b)
			continue
		}
		got = append(got, "-")
		msg := noValid(t, err)
		for _, want := range []string{"a: free 10 GB (100 GB in its stats less 90 GB claimed by 3 creates since)", "b: free 0 GB (60 GB in its stats less 60 GB claimed by 2 creates since)"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
	}
	if strings.Join(got, ",") != "a,a,b,a,b,-" {
		t.Fatalf("placements %v, want a,a,b,a,b,-", got)
	}
	if b, err := pick(t, s, 10, "a", "b"); err != nil || b != "a" {
		t.Fatalf("the last 10 GB of a: %q %v", b, err)
	}
	// New stats (taken after the claims) replace them: the claims stop counting.
	store(t, s, "a", thick(100, 100))
	if b, err := pick(t, s, 90, "a", "b"); err != nil || b != "a" {
		t.Fatalf("after new stats: %q %v", b, err)
	}
}

func TestClaimsBeforeStatsStopCounting(t *testing.T) {
	s := newSched(t)
	ctx := context.Background()
	store(t, s, "a", thick(100, 100))
	if _, err := pick(t, s, 80, "a"); err != nil {
		t.Fatal(err)
	}
	v, err := s.Read(ctx, "a", "other")
	if err != nil || v.ClaimedGB != 80 {
		t.Fatalf("claimed %d GB, want 80 (%v)", v.ClaimedGB, err)
	}
	// Stats taken before the claim do not drop it.
	old := v.At.Add(-time.Second)
	if ok, _ := s.StoreStats(ctx, "a", thick(100, 100), old); ok {
		t.Fatal("older stats replaced newer ones")
	}
	// Stats taken after it do (they reflect the volume). A claim in the
	// same millisecond as the stats still counts, so step past it.
	time.Sleep(5 * time.Millisecond)
	store(t, s, "a", thick(100, 20))
	if v, _ := s.Read(ctx, "a", "other"); v.ClaimedGB != 0 || v.Stats.FreeCapacityGB != 20 {
		t.Fatalf("after new stats: %+v", v)
	}
}

func TestMissingAndStaleStatsExclude(t *testing.T) {
	s := newSched(t)
	ctx := context.Background()
	at, err := s.Clock(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreStats(ctx, "old", thick(1000, 1000), at.Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	store(t, s, "small", thick(10, 5))
	_, err = pick(t, s, 8, "none", "old", "small")
	msg := noValid(t, err)
	for _, want := range []string{"none: no capacity stats yet", "old: stats are stale (taken 2m0s ago, stale after 1m0s)",
		"small: free 5 GB after reserving 0% (0 GB) is less than 8 GB requested", "no backend can hold 8 GB"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if b, err := pick(t, s, 5, "none", "old", "small"); err != nil || b != "small" {
		t.Fatalf("fresh backend not picked: %q %v", b, err)
	}
}

func TestPickIsSticky(t *testing.T) {
	s := newSched(t)
	ctx := context.Background()
	store(t, s, "a", thick(100, 100))
	store(t, s, "b", thick(100, 50))
	p := functions.Placement{VolumeID: uuid.NewString(), SizeGB: 10, Candidates: []string{"a", "b"}}
	first, err := s.Pick(ctx, p)
	if err != nil || first != "a" {
		t.Fatalf("first pick %q %v", first, err)
	}
	// b becomes the better choice; the re-run create still goes to a, and
	// its claim is counted once.
	store(t, s, "b", thick(1000, 1000))
	if again, err := s.Pick(ctx, p); err != nil || again != first {
		t.Fatalf("second pick %q %v, want %q", again, err, first)
	}
	if v, _ := s.Read(ctx, "a", "other"); v.ClaimedGB != 10 {
		t.Fatalf("claimed on a: %d GB, want 10", v.ClaimedGB)
	}
	// Concurrent Picks of one volume agree.
	q := functions.Placement{VolumeID: uuid.NewString(), SizeGB: 10, Candidates: []string{"a", "b"}}
	var wg sync.WaitGroup
	answers := make([]string, 8)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], _ = s.Pick(ctx, q)
		}()
	}
	wg.Wait()
	for _, a := range answers {
		if a != answers[0] || a == "" {
			t.Fatalf("concurrent picks of one volume disagree: %v", answers)
		}
	}
}

// TestConcurrentPicksSpread: 40 creates at once on two backends whose stats
// lag do not pile onto the one that looked emptiest.
func TestConcurrentPicksSpread(t *testing.T) {
	s := newSched(t)
	store(t, s, "a", thick(200, 200))
	store(t, s, "b", thick(200, 100))
	var mu sync.Mutex
	count := map[string]int{}
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := pick(t, s, 10, "a", "b")
			if err != nil {
				var f *functions.Failure
				if errors.As(err, &f) {
					b = "none"
				} else {
					t.Error(err)
					return
				}
			}
			mu.Lock()
			count[b]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Greedy most-free: a takes 10 alone (200→100), then they alternate;
	// 30 fit in 300 GB.
	want := map[string]int{"a": 20, "b": 10, "none": 10}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Fatalf("placements %v, want %v", count, want)
	}
}

// After a Redis that restarted empty no backend has stats: the scheduler
// takes them itself (as a stats round would) and places the create; while
// none can be had, the create is retried (a transient error), never
// refused as if nothing could hold it.
func TestMissingStatsAreTakenOrRetried(t *testing.T) {
	s := newSched(t)
	var asked []string
	s.OnMissingStats(func(ctx context.Context, backend string) error {
		asked = append(asked, backend)
		if backend == "down" {
			return drivers.Errorf(drivers.KindUnavailable, "stats down", "host unreachable")
		}
		at, err := s.Clock(ctx, backend)
		if err != nil {
			return err
		}
		_, err = s.StoreStats(ctx, backend, thick(100, 50), at)
		return err
	})
	if b, err := pick(t, s, 10, "up"); err != nil || b != "up" {
		t.Fatalf("pick with stats taken on the spot: %q %v", b, err)
	}
	if b, err := pick(t, s, 10, "up"); err != nil || b != "up" || len(asked) != 1 {
		t.Fatalf("second pick %q %v: stats taken again (%v)", b, err, asked)
	}

	// Nobody can tell: transient, retried.
	_, err := pick(t, s, 10, "down")
	var f *functions.Failure
	if err == nil || errors.As(err, &f) || !functions.Retryable(err) || !strings.Contains(err.Error(), "no capacity stats yet") {
		t.Fatalf("no stats anywhere: want a retryable error, got %v", err)
	}
	// One backend that is known not to fit is a real answer: refused.
	store(t, s, "full", thick(100, 1))
	msg := noValid(t, func() error { _, err := pick(t, s, 10, "down", "full"); return err }())
	if !strings.Contains(msg, "down: no capacity stats yet (stats down: host unreachable)") || !strings.Contains(msg, "full: free 1 GB") {
		t.Fatalf("message %q", msg)
	}

	// Without a refresh, as before: no stats, no placement, retried.
	plain := newSched(t)
	if _, err := pick(t, plain, 10, "nothing"); !functions.Retryable(err) {
		t.Fatalf("no stats, no refresh: want retryable, got %v", err)
	}
}

// TestManyConcurrentPicksOnOneBackend: 150 creates placed at once on one
// backend with room for 100 of them (Ember runs the requests of different
// volumes concurrently): exactly 100 are placed and 50 refused for room,
// none fails for contention. Before, each claim had to see no other claim
// since its read, and creates past the 64th retry failed with
// "placement attempts lost to concurrent claims".
func TestManyConcurrentPicksOnOneBackend(t *testing.T) {
	s := newSched(t)
	store(t, s, "a", thick(110, 100))
	var mu sync.Mutex
	placed, refused := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 150; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := s.Pick(context.Background(), functions.Placement{VolumeID: uuid.NewString(), SizeGB: 1, Candidates: []string{"a"}})
			mu.Lock()
			defer mu.Unlock()
			var f *functions.Failure
			switch {
			case err == nil && b == "a":
				placed++
			case errors.As(err, &f) && f.Code == functions.CodeNoValidBackend:
				refused++
			default:
				t.Errorf("pick: %q %v", b, err)
			}
		}()
	}
	wg.Wait()
	if placed != 100 || refused != 50 {
		t.Fatalf("placed %d, refused %d; want 100 and 50", placed, refused)
	}
}
