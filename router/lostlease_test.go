package router

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
)

// hungHostDriver is a stand-in for a storage host that hangs: the first
// CreateVolume of any instance sharing hang blocks, ignoring its context
// (as a command stuck in the kernel on a dead NFS or iSCSI path does),
// until release is closed; then the command lands after all and the call
// reports a location of its own, so that its outcome can be told apart.
type hungHostDriver struct {
	drivers.Driver
	name    string
	hang    *atomic.Bool // the first call to find it true hangs
	entered chan string  // receives name when a call hangs
	release chan struct{}
}

const staleLocation = "/stale-owner"

func (h *hungHostDriver) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	if h.hang.CompareAndSwap(true, false) {
		h.entered <- h.name
		<-h.release // deaf to ctx: the host does not answer
		if _, err := h.Driver.CreateVolume(context.Background(), v); err != nil {
			return drivers.ModelUpdate{}, err
		}
		return drivers.ModelUpdate{ProviderLocation: staleLocation}, nil
	}
	return h.Driver.CreateVolume(ctx, v)
}

// freezer is a TCP proxy to Redis that can stop forwarding: a network
// partition between one Ember instance and Redis.
type freezer struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen bool
	thaw   *sync.Cond
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	f.thaw = sync.NewCond(&f.mu)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go f.pipe(c, u)
			go f.pipe(u, c)
		}
	}()
	t.Cleanup(func() { f.set(false); ln.Close() })
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			for f.frozen {
				f.thaw.Wait()
			}
			f.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) set(frozen bool) {
	f.mu.Lock()
	f.frozen = frozen
	f.mu.Unlock()
	f.thaw.Broadcast()
}

// instance is one Ember of TestLostLeaseDoesNotPublish.
type instance struct {
	frz     *freezer
	metrics *Metrics
}

// count is how many volume.requested deliveries ended with outcome.
func (i *instance) count(outcome string) float64 {
	m := &dto.Metric{}
	_ = i.metrics.requests.WithLabelValues(events.VolumeRequested, outcome).Write(m)
	return m.GetCounter().GetValue()
}

// TestLostLeaseDoesNotPublish: instance X's driver call hangs on its
// storage host while X is cut off from Redis, so X cannot renew its lock
// lease; the request's twin (a producer retry: same source and id) reaches
// instance Y, which takes the volume over with a newer fencing token and
// completes. When the hung call finally returns, X must publish nothing of
// its own and commit nothing of its own: Y's outcome stands, and the
// request has exactly one terminal result id.
func TestLostLeaseDoesNotPublish(t *testing.T) {
	p := newPipeline(t, func(p *pipeline) { p.types = []string{events.VolumeRequested} })
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	hang := &atomic.Bool{}
	hang.Store(true)
	entered, release := make(chan string, 2), make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	insts := map[string]*instance{}
	for _, name := range []string{"x", "y"} {
		frz := newFreezer(t, opt.Addr)
		o := *opt
		o.Addr = frz.ln.Addr().String()
		o.MaxRetries = -1 // a partitioned call fails, it is not retried in the dark
		rdb := redis.NewClient(&o)
		t.Cleanup(func() { rdb.Close() })
		guard := NewGuard(rdb, p.guard.prefix, p.guard.Lease, p.guard.DoneTTL)
		d := &hungHostDriver{Driver: p.driver, name: name, hang: hang, entered: entered, release: release}
		env := &functions.Env{Instance: "ember-test", Backends: map[string]drivers.Driver{"local": d}, DefaultBackend: "local"}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("EMBER_TEST_LOG") != "" {
			log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance", name)
		}
		m := NewMetrics(nil)
		svc, err := New(p.cfg, guard, env, p.serve(env), m, log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = svc.Run(ctx) }()
		t.Cleanup(func() { releaseOnce.Do(func() { close(release) }); cancel(); _ = svc.Close(); <-done })
		<-svc.Running()
		insts[name] = &instance{frz: frz, metrics: m}
	}
	waitMembers(t, p, events.VolumeRequested, 2)

	vol := uuid.NewString()
	raw, _ := json.Marshal(createData(vol, 1))
	id := uuid.NewString()
	rec, _ := events.NewInput(events.VolumeRequested, "/test", id, raw, time.Time{})
	// The range assignor gives partitions 0-3 to one member and 4-7 to the
	// other: the twins go to different instances.
	p.publish(events.VolumeRequested, rec, 0)
	var stale string
	select {
	case stale = <-entered:
	case <-time.After(60 * time.Second):
		t.Fatal("the first create never reached the driver")
	}
	insts[stale].frz.set(true) // the hung owner loses Redis too: its lease runs out
	hungAt := time.Now()
	p.publish(events.VolumeRequested, rec, 7)
	end := p.results.Wait(t, "volume.create.end", id, 1)[0]
	takeover := time.Since(hungAt)
	if end.Data.ProviderLocation == staleLocation {
		t.Fatalf("the stale owner's outcome was published: %+v", end.Data)
	}
	// The hung host answers at last, and the partition heals: the stale
	// owner finds its lease lost, publishes nothing of its own, and its
	// redelivered message re-publishes the outcome that stands.
	releaseOnce.Do(func() { close(release) })
	insts[stale].frz.set(false)
	deadline := time.Now().Add(30 * time.Second)
	for insts[stale].count("lease_lost") < 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := insts[stale].count("lease_lost"); n != 1 {
		t.Fatalf("stale owner %s: %v lease_lost outcomes, want 1", stale, n)
	}
	for len(p.results.Of("volume.create.end", id)) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	ends, errs := p.results.Of("volume.create.end", id), p.results.Of("volume.create.error", id)
	if len(errs) != 0 || testenv.DistinctIDs(ends) != 1 {
		t.Fatalf("want one terminal result id, got %d .end (%d ids) and %d .error", len(ends), testenv.DistinctIDs(ends), len(errs))
	}
	for _, e := range ends {
		if string(e.Value) != string(end.Value) {
			t.Fatalf("a different .end was published: %s", e.Value)
		}
	}
	// The stale owner's message was committed only after the stored
	// outcome was re-published (its redelivery answered from storage).
	if n := insts[stale].count("duplicate"); n != 1 {
		t.Errorf("stale owner: %v duplicate outcomes (re-publications from storage), want 1", n)
	}
	rec2, err := p.guard.Volume(context.Background(), vol)
	if err != nil || strings.Contains(string(rec2), staleLocation) {
		t.Fatalf("registry holds the stale owner's outcome: %s %v", rec2, err)
	}
	if st, err := os.Stat(p.volumeFile(vol)); err != nil || st.Size() != drivers.GiB {
		t.Fatalf("volume file: %v %v", st, err)
	}
	t.Logf("RELIABILITY lost-lease: stale owner %s; takeover by the other instance %s after the hang; results: %d .end with 1 id, 0 .error; lease_lost=1",
		stale, takeover.Round(100*time.Millisecond), len(ends))
}

// waitMembers waits until the consumer group of typ is stable with n
// members that each have partitions: a rebalance started later would wait
// for the hung handler (up to the rebalance timeout) before the twin of
// the request could be consumed at all.
func waitMembers(t *testing.T, p *pipeline, typ string, n int) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(p.cfg.Brokers, p.cfg.SaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		gs, err := admin.DescribeConsumerGroups([]string{p.cfg.Group(typ)})
		if err != nil || len(gs) != 1 || gs[0].State != "Stable" || len(gs[0].Members) != n {
			continue
		}
		ok := true
		for _, m := range gs[0].Members {
			a, err := m.GetMemberAssignment()
			if err != nil || a == nil || len(a.Topics) == 0 {
				ok = false
			}
		}
		if ok {
			return
		}
	}
	t.Fatalf("group %s never had %d members with partitions", p.cfg.Group(typ), n)
}
