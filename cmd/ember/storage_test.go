package main

// The harness of the end-to-end storage tests (glusterfs_e2e_test.go,
// iscsi_e2e_test.go, lvm_e2e_test.go, rbd_e2e_test.go): one real `ember serve` process with a
// configuration naming a real backend, requests published to the real Kafka
// as CloudEvents, results read back from their topics as a downstream
// consumer would, and the registry read from the real Redis. Each test
// brings its storage up itself (deploy/testenv/*.sh), fails when it cannot,
// and skips only under -short.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
)

// otherProject owns nothing: its requests for our volumes must be refused.
const otherProject = "1d9d5c3f2b1a4e8d9f7a6b5c4d3e2f11"

// emberStack is one `ember serve` process and the means to talk to it.
type emberStack struct {
	t         *testing.T
	cfg       router.Config
	keyPrefix string
	rdb       *redis.Client
	prod      sarama.SyncProducer
	results   *testenv.Results
	ember     *proc
}

// emberStackConfig is what differs between the tests.
type emberStackConfig struct {
	// backends is the YAML of the backends: list, one "  - {...}" per line.
	backends string
	// extra is more top-level YAML (default_backend, backups, images).
	extra string
	// env is added to ember's environment (LVM_SYSTEM_DIR, CEPH_CONF).
	env []string
	// types are the input types that ember serves (--functions).
	types []string
}

// newEmberStack writes the configuration, creates the topics, starts following
// the result topics and starts `ember serve`, waiting until it consumes.
// Topics, consumer groups and Redis keys are unique to the test.
func newEmberStack(t *testing.T, sc emberStackConfig) *emberStack {
	t.Helper()
	brokers := testenv.Kafka(t)
	redisURL := testenv.RedisURL(t)
	u := testenv.Unique()
	s := &emberStack{t: t, keyPrefix: "k" + u, rdb: testenv.Redis(t)}
	s.cfg = router.Config{Brokers: brokers, TopicPrefix: "e" + u + ".", Partitions: 1}
	s.cfg.SetDefaults()
	// Leases long enough for a 1 GB copy over FUSE under -race; nothing
	// here crashes, so they never have to expire.
	cfgText := fmt.Sprintf(`instance: storage-e2e
kafka: {brokers: [%q], topic_prefix: %q, group_prefix: "g%s", partitions: 1}
redis: {url: %q, key_prefix: %q}
delivery: {lease: 2m, command_timeout: 90s, nack_delay: 200ms}
scheduler: {stats_interval: 1h}
backends:
%s
%s
`, brokers[0], s.cfg.TopicPrefix, u, redisURL, s.keyPrefix, strings.TrimRight(sc.backends, "\n"), sc.extra)
	cfgPath := filepath.Join(t.TempDir(), "ember.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	all := functions.All(&functions.Env{})
	served := map[string]functions.Function{}
	var topics []string
	for _, typ := range sc.types {
		served[typ] = all[typ]
		topics = append(append(topics, events.ResultTypes(typ)...), typ+".dlq")
	}
	if err := s.cfg.EnsureTopics(served); err != nil {
		t.Fatal(err)
	}
	s.results = testenv.Collect(t, brokers, s.cfg.SaramaConfig(), s.cfg.TopicPrefix, topics)
	prod, err := sarama.NewSyncProducer(brokers, s.cfg.SaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	s.prod = prod
	httpAddr := freeAddr(t)
	s.ember = startEmber(t, sc.env, "serve", "--config", cfgPath, "--http", httpAddr, "--functions", strings.Join(sc.types, ","))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ember serve output:\n%s", s.ember.stderr)
		}
	})
	waitHTTP(t, "http://"+httpAddr+"/readyz")
	return s
}

// publish sends one request as a binary-mode CloudEvent, as `ember emit`
// does, with the given source and id (the request's identity).
func (s *emberStack) publish(typ, source, id string, data map[string]any) {
	s.t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		s.t.Fatal(err)
	}
	rec, err := events.NewInput(typ, source, id, b, time.Now())
	if err != nil {
		s.t.Fatalf("%s %s: %v", typ, b, err)
	}
	pm, _ := events.KafkaMarshaler{}.Marshal(s.cfg.Topic(typ), rec.Message())
	if _, _, err := s.prod.SendMessage(pm); err != nil {
		s.t.Fatal(err)
	}
}

// do publishes a request of the example project (unless data names
// another) and waits for its terminal result, which must be of phase want
// (events.PhaseEnd or events.PhaseError).
func (s *emberStack) do(typ string, data map[string]any, want string) testenv.Result {
	s.t.Helper()
	if _, ok := data["project_id"]; !ok {
		data["project_id"] = exampleProject
	}
	id := uuid.NewString()
	began := time.Now()
	s.publish(typ, "/storage-e2e", id, data)
	r := s.wait(typ, id, want)
	s.t.Logf("%s → %s in %s", typ, r.Type, time.Since(began).Round(time.Millisecond))
	return r
}

// wait waits for the terminal result of request id.
func (s *emberStack) wait(typ, id, want string) testenv.Result {
	s.t.Helper()
	end, errType := events.ResultType(typ, events.PhaseEnd), events.ResultType(typ, events.PhaseError)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if rs := s.results.Of(end, id); len(rs) > 0 {
			if want != events.PhaseEnd {
				s.t.Fatalf("%s: want .%s, got .end %+v", typ, want, rs[0].Data)
			}
			return rs[0]
		}
		if rs := s.results.Of(errType, id); len(rs) > 0 {
			if want != events.PhaseError {
				s.t.Fatalf("%s: want .%s, got .error %+v", typ, want, rs[0].Data.Error)
			}
			return rs[0]
		}
		if s.ember.cmd.ProcessState != nil {
			s.t.Fatalf("%s %s: ember serve exited:\n%s", typ, id, s.ember.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("%s %s: no terminal result in 3m", typ, id)
	return testenv.Result{}
}

// record is the volume's registry record as Redis holds it (nil if none).
func (s *emberStack) record(vol string) *functions.Volume {
	s.t.Helper()
	b, err := s.rdb.Get(context.Background(), s.keyPrefix+":{"+vol+"}:vol").Bytes()
	if err == redis.Nil {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	var v functions.Volume
	if err := json.Unmarshal(b, &v); err != nil {
		s.t.Fatalf("record of %s: %v: %s", vol, err, b)
	}
	return &v
}

func createReq(vol string, sizeGB int, backend string) map[string]any {
	d := map[string]any{"volume_id": vol, "user_id": exampleUser, "size_gb": sizeGB}
	if backend != "" {
		d["backend"] = backend
	}
	return d
}

// expectStatus checks a result's status.
func expectStatus(t *testing.T, r testenv.Result, status string) {
	t.Helper()
	if r.Data.Status != status {
		t.Fatalf("%s: status %q, want %q: %+v", r.Type, r.Data.Status, status, r.Data)
	}
}

// runScript runs deploy/testenv/<name> with args as the storage tests'
// setup and teardown do.
func runScript(env []string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "testenv", name))
	cmd := exec.CommandContext(ctx, "bash", append([]string{p}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// needStorage skips under -short (these tests start real storage), and
// fails at once, before any storage is started, without Kafka and Redis.
func needStorage(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: needs a real %s", what)
	}
	testenv.Kafka(t)
	testenv.RedisURL(t)
}

// storageTool runs a storage tool as an operator would, to look at what ember did.
func storageTool(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

// streamCheck is an io.Writer that checks a volume's stream against want
// followed by zeros, without keeping a copy of the volume.
type streamCheck struct {
	want []byte
	n    int64
	bad  int64 // 1 + the offset of the first differing chunk (0: none)
}

func (c *streamCheck) Write(p []byte) (int, error) {
	// bytes.Equal, not a loop over bytes: volumes are GiBs, and -race
	// instruments every loop access.
	for i := 0; i < len(p) && c.bad == 0; {
		off := c.n + int64(i)
		n := min(len(p)-i, len(zeroMiB))
		want := zeroMiB[:n]
		if off < int64(len(c.want)) {
			n = min(n, int(int64(len(c.want))-off))
			want = c.want[off : off+int64(n)]
		}
		if !bytes.Equal(p[i:i+n], want[:n]) {
			c.bad = off + 1
		}
		i += n
	}
	c.n += int64(len(p))
	return len(p), nil
}

var zeroMiB = make([]byte, 1<<20)

// check fails the test unless the stream was want, then zeros, size bytes in all.
func (c *streamCheck) check(t *testing.T, what string, size int64) {
	t.Helper()
	if c.bad != 0 {
		t.Fatalf("%s: differs from what was written in the MiB from byte %d", what, c.bad-1)
	}
	if c.n != size {
		t.Fatalf("%s: %d bytes, want %d", what, c.n, size)
	}
}

// dataPattern is n bytes that differ per seed and are never zero.
func dataPattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+int(seed)) | 1
	}
	return b
}
