// Package pipetest runs Ember's whole pipeline for tests outside the router:
// every function over the real Kafka and Redis of internal/testenv, the
// Redis scheduler, the timers' publisher, and a reader of every result and
// timer topic. Its clock is the test's to set.
package pipetest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/functions/scheduler"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
	"github.com/ember-storage/ember/router/timers"
)

// Pipeline is one test's topics, keys, backends and clock.
type Pipeline struct {
	t       testing.TB
	Cfg     router.Config
	RDB     *redis.Client
	KeyPref string
	Env     *functions.Env
	Guard   *router.Guard
	Sched   *scheduler.Scheduler
	Out     timers.Output
	Results *testenv.Results
	Log     *slog.Logger

	fns map[string]functions.Function
	mu  sync.Mutex
	now time.Time // zero: the wall clock
}

// New prepares a pipeline over backends (not started) that serves the
// input types named (all if none): fewer topics start faster.
func New(t testing.TB, backends map[string]drivers.Driver, serve ...string) *Pipeline {
	t.Helper()
	brokers := testenv.Kafka(t)
	rdb := testenv.Redis(t)
	u := testenv.Unique()
	p := &Pipeline{t: t, RDB: rdb, KeyPref: "k" + u, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if os.Getenv("EMBER_TEST_LOG") != "" {
		p.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	p.Cfg = router.Config{Brokers: brokers, TopicPrefix: "t" + u + ".", GroupPrefix: "g" + u, Partitions: 4,
		NackDelay: 100 * time.Millisecond, Retry: router.RetryPolicy{Attempts: 3, Initial: 10 * time.Millisecond, Ceiling: 50 * time.Millisecond}}
	p.Cfg.SetDefaults()
	p.Guard = router.NewGuard(rdb, p.KeyPref, 5*time.Second, time.Hour)
	p.Sched = scheduler.New(rdb, scheduler.Config{Prefix: p.KeyPref, StaleAfter: time.Hour})
	p.Env = &functions.Env{Instance: "ember-test", Backends: backends, Scheduler: p.Sched, Now: p.Now}
	p.fns = functions.All(p.Env)
	if len(serve) > 0 {
		only := map[string]functions.Function{}
		for _, typ := range serve {
			only[typ] = p.fns[typ]
		}
		p.fns = only
	}
	fns := p.fns
	if err := p.Cfg.EnsureTopics(fns); err != nil {
		t.Fatal(err)
	}
	pub, err := timers.NewPublisher(p.Cfg, p.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	p.Out = timers.Output{Pub: pub, TopicPrefix: p.Cfg.TopicPrefix, Mode: p.Cfg.OutputMode}
	var topics []string
	for _, typ := range functions.Types(fns) {
		topics = append(append(topics, events.ResultTypes(typ)...), typ+".dlq")
	}
	topics = append(topics, timers.Topics()...)
	p.Results = testenv.Collect(t, brokers, p.Cfg.SaramaConfig(), p.Cfg.TopicPrefix, topics)
	return p
}

// Now is the pipeline's clock: the time set by SetNow, else the wall clock.
func (p *Pipeline) Now() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.now.IsZero() {
		return time.Now()
	}
	return p.now
}

// SetNow fixes the clock that functions stamp their results with.
func (p *Pipeline) SetNow(t time.Time) {
	p.mu.Lock()
	p.now = t
	p.mu.Unlock()
}

// Stats returns a stats timer over the pipeline's backends.
func (p *Pipeline) Stats(interval time.Duration) *timers.Stats {
	return &timers.Stats{Sched: p.Sched, Backends: p.Env.Backends, Out: p.Out, RDB: p.RDB, Prefix: p.KeyPref,
		Interval: interval, Log: p.Log}
}

// Audit returns an audit timer over the pipeline's registry.
func (p *Pipeline) Audit(period time.Duration) *timers.Audit {
	return &timers.Audit{RDB: p.RDB, Out: p.Out, Prefix: p.KeyPref, Period: period, Log: p.Log, Now: p.Now}
}

// Start runs one Ember instance until the test ends.
func (p *Pipeline) Start() {
	p.t.Helper()
	svc, err := router.New(p.Cfg, p.Guard, p.Env, p.fns, nil, p.Log)
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	select {
	case <-svc.Running():
	case <-time.After(30 * time.Second):
		p.t.Fatal("service did not start")
	}
	p.t.Cleanup(func() {
		cancel()
		_ = svc.Close()
		<-done
	})
}

// Emit publishes a request of type typ with data, and returns its id.
func (p *Pipeline) Emit(typ string, data any) string {
	p.t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		p.t.Fatal(err)
	}
	id := uuid.NewString()
	rec, err := events.NewInput(typ, "/test", id, raw, time.Time{})
	if err != nil {
		p.t.Fatal(err)
	}
	prod, err := sarama.NewSyncProducer(p.Cfg.Brokers, p.Cfg.SaramaConfig())
	if err != nil {
		p.t.Fatal(err)
	}
	defer prod.Close()
	pm, err := events.KafkaMarshaler{}.Marshal(p.Cfg.Topic(typ), rec.Message())
	if err != nil {
		p.t.Fatal(err)
	}
	if _, _, err := prod.SendMessage(pm); err != nil {
		p.t.Fatal(err)
	}
	return id
}

// Terminal waits for request id's .end or .error and returns it.
func (p *Pipeline) Terminal(inputType, id string) testenv.Result {
	p.t.Helper()
	end, fail := events.ResultType(inputType, events.PhaseEnd), events.ResultType(inputType, events.PhaseError)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if r := p.Results.Of(end, id); len(r) > 0 {
			return r[0]
		}
		if r := p.Results.Of(fail, id); len(r) > 0 {
			return r[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("no %s or %s for request %s within 60s", end, fail, id)
	return testenv.Result{}
}

// Do emits a request and waits for its terminal result, which must be .end.
func (p *Pipeline) Do(typ string, data any) testenv.Result {
	p.t.Helper()
	id := p.Emit(typ, data)
	r := p.Terminal(typ, id)
	if r.Type != events.ResultType(typ, events.PhaseEnd) {
		p.t.Fatalf("%s: %s %s", typ, r.Type, r.Value)
	}
	return r
}
