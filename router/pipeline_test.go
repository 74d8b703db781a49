package router

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/file"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
)

// These tests run the whole pipeline on the real Kafka broker and the real
// redis-server that `make test` starts, with the real file driver.

const (
	projA = "0c9d5c3f2b1a4e8d9f7a6b5c4d3e2f10"
	projB = "1d9d5c3f2b1a4e8d9f7a6b5c4d3e2f11"
	userA = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
)

// countingDriver counts the driver calls that reach the backend.
type countingDriver struct {
	drivers.Driver
	creates, deletes atomic.Int64
	delay            time.Duration
}

func (c *countingDriver) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	c.creates.Add(1)
	time.Sleep(c.delay)
	return c.Driver.CreateVolume(ctx, v)
}

func (c *countingDriver) DeleteVolume(ctx context.Context, v drivers.Volume) error {
	c.deletes.Add(1)
	return c.Driver.DeleteVolume(ctx, v)
}

// pipeline is one test's Kafka topics, Redis keys and backend.
type pipeline struct {
	t       *testing.T
	cfg     Config
	prefix  string
	dir     string
	driver  *countingDriver
	guard   *Guard
	results *testenv.Results
	// extend, when set, adds to the env of every instance (more backends,
	// stores).
	extend func(*functions.Env)
	// types are the input types served.
	types []string
}

// newPipeline serves volume.requested and volume.deleted (each topic set
// costs the broker time to create); setup, when given, adjusts the pipeline
// before its topics are made.
func newPipeline(t *testing.T, setup ...func(*pipeline)) *pipeline {
	t.Helper()
	brokers := testenv.Kafka(t)
	rdb := testenv.Redis(t)
	u := testenv.Unique()
	dir := t.TempDir()
	d, err := file.Open(drivers.Backend{Name: "local", Driver: "file", Options: map[string]any{"dir": dir}}, drivers.LocalExecutor{DefaultTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{t: t, prefix: "t" + u + ".", dir: dir, driver: &countingDriver{Driver: d}}
	p.cfg = Config{Brokers: brokers, TopicPrefix: p.prefix, GroupPrefix: "g" + u, Partitions: 8,
		NackDelay: 100 * time.Millisecond, Retry: RetryPolicy{Attempts: 3, Initial: 10 * time.Millisecond, Ceiling: 50 * time.Millisecond}}
	p.cfg.SetDefaults()
	p.guard = NewGuard(rdb, "k"+u, 3*time.Second, time.Hour)
	p.types = []string{events.VolumeRequested, events.VolumeDeleted}
	for _, f := range setup {
		f(p)
	}
	if err := p.cfg.EnsureTopics(p.functions()); err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, typ := range p.types {
		topics = append(append(topics, events.ResultTypes(typ)...), typ+".dlq")
	}
	p.results = testenv.Collect(t, p.cfg.Brokers, p.cfg.SaramaConfig(), p.cfg.TopicPrefix, topics)
	return p
}

func (p *pipeline) env() *functions.Env {
	env := &functions.Env{Instance: "ember-test", Backends: map[string]drivers.Driver{"local": p.driver}, DefaultBackend: "local"}
	if p.extend != nil {
		p.extend(env)
	}
	return env
}

func (p *pipeline) functions() map[string]functions.Function { return p.serve(p.env()) }

// serve is the functions of env that the pipeline serves.
func (p *pipeline) serve(env *functions.Env) map[string]functions.Function {
	all := functions.All(env)
	fns := map[string]functions.Function{}
	for _, typ := range p.types {
		fns[typ] = all[typ]
	}
	return fns
}

// start runs one Ember instance until the test ends (or stop is called).
func (p *pipeline) start() (stop func()) {
	p.t.Helper()
	env := p.env()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("EMBER_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	svc, err := New(p.cfg, p.guard, env, p.serve(env), nil, log)
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
	var once sync.Once
	stop = func() {
		once.Do(func() {
			began := time.Now()
			cancel()
			_ = svc.Close()
			<-done
			p.t.Logf("service stopped in %s", time.Since(began).Round(time.Millisecond))
		})
	}
	p.t.Cleanup(stop)
	return stop
}

// emit publishes an input record and returns its id.
func (p *pipeline) emit(typ string, data any, opts ...func(*events.Record)) string {
	p.t.Helper()
	raw, _ := json.Marshal(data)
	id := uuid.NewString()
	rec, err := events.NewInput(typ, "/test", id, raw, time.Time{})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, o := range opts {
		o(&rec)
	}
	p.publish(typ, rec, -1)
	return id
}

// publish sends rec to its topic; partition >= 0 forces a partition.
func (p *pipeline) publish(typ string, rec events.Record, partition int32) {
	p.t.Helper()
	sc := p.cfg.SaramaConfig()
	if partition >= 0 {
		sc.Producer.Partitioner = sarama.NewManualPartitioner
	}
	prod, err := sarama.NewSyncProducer(p.cfg.Brokers, sc)
	if err != nil {
		p.t.Fatal(err)
	}
	defer prod.Close()
	pm, _ := events.KafkaMarshaler{}.Marshal(p.cfg.Topic(typ), rec.Message())
	if partition >= 0 {
		pm.Partition = partition
	}
	if _, _, err := prod.SendMessage(pm); err != nil {
		p.t.Fatal(err)
	}
}

func createData(vol string, size int) map[string]any {
	return map[string]any{"volume_id": vol, "project_id": projA, "user_id": userA, "size_gb": size, "name": "db $(reboot); rm -rf /"}
}

func deleteData(vol, project string) map[string]any {
	return map[string]any{"volume_id": vol, "project_id": project}
}

func (p *pipeline) volumeFile(vol string) string { return filepath.Join(p.dir, "volume-"+vol) }

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestCreateDeleteChain(t *testing.T) {
	p := newPipeline(t)
	p.start()
	vol := uuid.NewString()
	id := p.emit(events.VolumeRequested, createData(vol, 2), func(r *events.Record) {
		r.Headers["ce_correlationid"] = "order-42"
		r.Headers["ce_traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	})
	start := p.results.Wait(t, "volume.create.start", id, 1)[0]
	end := p.results.Wait(t, "volume.create.end", id, 1)[0]
	if start.Data.Status != "creating" || end.Data.Status != "available" {
		t.Fatalf("statuses: start %q end %q", start.Data.Status, end.Data.Status)
	}
	d := end.Data
	if d.TenantID != projA || d.UserID != userA || d.VolumeID != vol || d.Size != 2 || d.Host != "local" ||
		d.DisplayName != "db $(reboot); rm -rf /" || d.CreatedAt == "" || d.LaunchedAt == "" {
		t.Fatalf("create.end data: %+v", d)
	}
	h := end.Headers
	if h["ce_source"] != "/ember/local" || h["ce_subject"] != vol || h["ce_partitionkey"] != vol ||
		h["ce_correlationid"] != "order-42" || !strings.HasPrefix(h["ce_traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-") ||
		end.ID != events.ResultID("/test", id, "volume.create.end", "") {
		t.Fatalf("create.end attributes: %v", h)
	}
	if st, err := os.Stat(p.volumeFile(vol)); err != nil || st.Size() != 2*drivers.GiB {
		t.Fatalf("volume file: %v %v", st, err)
	}
	did := p.emit(events.VolumeDeleted, deleteData(vol, projA))
	p.results.Wait(t, "volume.delete.start", did, 1)
	del := p.results.Wait(t, "volume.delete.end", did, 1)[0]
	if del.Data.Status != "deleted" || del.Data.Size != 2 || del.Data.TenantID != projA {
		t.Fatalf("delete.end data: %+v", del.Data)
	}
	if exists(p.volumeFile(vol)) {
		t.Fatal("volume file still there after delete")
	}
}

func TestDuplicateDeliveryHasOneEffect(t *testing.T) {
	p := newPipeline(t)
	p.start()
	vol := uuid.NewString()
	raw, _ := json.Marshal(createData(vol, 1))
	id := uuid.NewString()
	rec, _ := events.NewInput(events.VolumeRequested, "/test", id, raw, time.Time{})
	p.publish(events.VolumeRequested, rec, -1)
	p.publish(events.VolumeRequested, rec, -1) // the producer retried: same (source, id)
	p.results.Wait(t, "volume.create.end", id, 1)
	deadline := time.Now().Add(30 * time.Second)
	for len(p.results.Of("volume.create.end", id)) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // the duplicate re-publishes the stored result
	}
	ends := p.results.Of("volume.create.end", id)
	if len(ends) != 2 || testenv.DistinctIDs(ends) != 1 || string(ends[0].Value) != string(ends[1].Value) {
		t.Fatalf("want the same .end twice (byte-identical), got %d with %d ids", len(ends), testenv.DistinctIDs(ends))
	}
	if n := p.driver.creates.Load(); n != 1 {
		t.Fatalf("driver create ran %d times, want 1", n)
	}
}

func TestConcurrentDuplicatesOnTwoConsumers(t *testing.T) {
	p := newPipeline(t)
	p.driver.delay = 1500 * time.Millisecond // hold the claim while the twin arrives
	p.start()
	p.start() // a second instance in the same consumer groups
	time.Sleep(2 * time.Second)
	vol := uuid.NewString()
	raw, _ := json.Marshal(createData(vol, 1))
	id := uuid.NewString()
	rec, _ := events.NewInput(events.VolumeRequested, "/test", id, raw, time.Time{})
	// The range assignor gives partitions 0-3 to one member and 4-7 to the
	// other: the two copies are handled concurrently by different instances.
	p.publish(events.VolumeRequested, rec, 0)
	p.publish(events.VolumeRequested, rec, 7)
	p.results.Wait(t, "volume.create.end", id, 1)
	deadline := time.Now().Add(30 * time.Second)
	for len(p.results.Of("volume.create.end", id)) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	ends := p.results.Of("volume.create.end", id)
	if len(ends) != 2 || testenv.DistinctIDs(ends) != 1 {
		t.Fatalf("want two publications of one .end, got %d with %d distinct ids", len(ends), testenv.DistinctIDs(ends))
	}
	if n := p.driver.creates.Load(); n != 1 {
		t.Fatalf("driver create ran %d times, want 1", n)
	}
}

func TestOffsetsAreCommitted(t *testing.T) {
	p := newPipeline(t)
	stop := p.start()
	const n = 5
	var last string
	for i := 0; i < n; i++ {
		last = p.emit(events.VolumeRequested, createData(uuid.NewString(), 1))
		p.results.Wait(t, "volume.create.end", last, 1)
	}
	stop() // a clean stop commits marked offsets
	admin, err := sarama.NewClusterAdmin(p.cfg.Brokers, p.cfg.SaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	offs, err := admin.ListConsumerGroupOffsets(p.cfg.Group(events.VolumeRequested), nil)
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	for _, parts := range offs.Blocks {
		for _, b := range parts {
			if b.Offset > 0 {
				committed += b.Offset
			}
		}
	}
	if committed != n {
		t.Fatalf("committed offsets sum to %d, want %d (Kafka 4 refuses OffsetCommit v1 silently)", committed, n)
	}
	// A restarted consumer replays none of them.
	p.start()
	next := p.emit(events.VolumeRequested, createData(uuid.NewString(), 1))
	p.results.Wait(t, "volume.create.end", next, 1)
	time.Sleep(time.Second)
	if got := len(p.results.Of("volume.create.end", "")); got != n+1 {
		t.Fatalf("%d create.end results, want %d: a restart replayed requests", got, n+1)
	}
	if c := p.driver.creates.Load(); c != n+1 {
		t.Fatalf("driver ran %d creates, want %d", c, n+1)
	}
}

func TestNotACloudEventGoesToTheDeadLetterTopic(t *testing.T) {
	p := newPipeline(t)
	p.start()
	p.publish(events.VolumeRequested, events.Record{Type: events.VolumeRequested, Key: "k", Headers: map[string]string{"x": "y"}, Value: []byte("hello, not an event")}, -1)
	deadline := time.Now().Add(60 * time.Second)
	for len(p.results.Of("volume.requested.dlq", "")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	dl := p.results.Of("volume.requested.dlq", "")
	if len(dl) != 1 || string(dl[0].Value) != "hello, not an event" || !strings.Contains(dl[0].Headers[HeaderDLQReason], "not a valid CloudEvent") || dl[0].Headers["x"] != "y" {
		t.Fatalf("dead letters: %+v", dl)
	}
	// The process stays healthy: the next request is served.
	id := p.emit(events.VolumeRequested, createData(uuid.NewString(), 1))
	p.results.Wait(t, "volume.create.end", id, 1)
}

func TestInvalidDataGetsAnErrorAndRunsNothing(t *testing.T) {
	p := newPipeline(t)
	p.start()
	bad := []map[string]any{
		{"volume_id": "../../etc/passwd", "project_id": projA, "user_id": userA, "size_gb": 1},
		{"volume_id": "x; rm -rf /", "project_id": projA, "user_id": userA, "size_gb": 1},
		{"volume_id": "$(reboot)", "project_id": projA, "user_id": userA, "size_gb": 1},
		{"volume_id": uuid.NewString(), "project_id": projA, "user_id": userA, "size_gb": 0},
		{"volume_id": uuid.NewString(), "project_id": projA, "user_id": userA, "size_gb": 70000},
		{"volume_id": uuid.NewString(), "project_id": "../x", "user_id": userA, "size_gb": 1},
	}
	var ids []string
	for _, data := range bad {
		raw, _ := json.Marshal(data)
		id := uuid.NewString()
		// Published raw, as a hostile producer would: emit itself refuses these.
		subject, _ := data["volume_id"].(string)
		rec := events.Record{Type: events.VolumeRequested, Key: subject, Value: raw, Headers: map[string]string{
			"ce_specversion": "1.0", "ce_id": id, "ce_source": "/test", "ce_type": events.VolumeRequested,
			"ce_subject": subject, "content-type": "application/json"}}
		p.publish(events.VolumeRequested, rec, -1)
		ids = append(ids, id)
	}
	for i, id := range ids {
		e := p.results.Wait(t, "volume.create.error", id, 1)[0]
		if e.Data.Error == nil || e.Data.Error.Code != "invalid" {
			t.Errorf("request %d: error %+v", i, e.Data.Error)
		}
	}
	if c := p.driver.creates.Load(); c != 0 {
		t.Fatalf("driver ran %d times on invalid input", c)
	}
	if entries, _ := os.ReadDir(p.dir); len(entries) != 0 {
		t.Fatalf("files appeared: %v", entries)
	}
	if len(p.results.Of("volume.create.start", "")) != 0 {
		t.Fatal("an invalid request must not start")
	}
}

func TestProjectsAndTombstones(t *testing.T) {
	p := newPipeline(t)
	p.start()
	vol := uuid.NewString()
	p.results.Wait(t, "volume.create.end", p.emit(events.VolumeRequested, createData(vol, 1)), 1)

	other := p.emit(events.VolumeDeleted, deleteData(vol, projB))
	e := p.results.Wait(t, "volume.delete.error", other, 1)[0]
	if e.Data.Error == nil || e.Data.Error.Code != functions.CodeForbidden {
		t.Fatalf("another project's delete: %+v", e.Data)
	}
	if !exists(p.volumeFile(vol)) || p.driver.deletes.Load() != 0 {
		t.Fatal("another project's delete touched the volume")
	}
	p.results.Wait(t, "volume.delete.end", p.emit(events.VolumeDeleted, deleteData(vol, projA)), 1)
	if exists(p.volumeFile(vol)) {
		t.Fatal("volume still there")
	}
	late := p.emit(events.VolumeRequested, createData(vol, 1))
	e = p.results.Wait(t, "volume.create.error", late, 1)[0]
	if e.Data.Error == nil || e.Data.Error.Code != functions.CodeVolumeDeleted || exists(p.volumeFile(vol)) {
		t.Fatalf("create after delete: %+v, file exists: %v", e.Data.Error, exists(p.volumeFile(vol)))
	}
	again := p.emit(events.VolumeDeleted, deleteData(vol, projA))
	if d := p.results.Wait(t, "volume.delete.end", again, 1)[0]; d.Data.Status != "deleted" {
		t.Fatalf("delete of a gone volume: %+v", d.Data)
	}
	never := uuid.NewString()
	if d := p.results.Wait(t, "volume.delete.end", p.emit(events.VolumeDeleted, deleteData(never, projA)), 1)[0]; d.Data.Status != "deleted" {
		t.Fatalf("delete of an unknown volume: %+v", d.Data)
	}
}
