package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
)

var emberBin string

// TestMain builds the ember binary once: these tests run it as users do.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ember-bin")
	if err != nil {
		panic(err)
	}
	emberBin = filepath.Join(dir, "ember")
	if out, err := exec.Command("go", "build", "-race", "-o", emberBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a running ember process.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
	http   string // its --http address, when the test gave one
}

func startEmber(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(emberBin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("ember did not stop on SIGTERM; output:\n%s", p.stderr)
	}
}

func TestDevAndEmitWait(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts processes")
	}
	kafka, httpAddr, data := freeAddr(t), freeAddr(t), t.TempDir()
	startEmber(t, nil, "dev", "--kafka", kafka, "--http", httpAddr, "--data-dir", data)
	waitHTTP(t, "http://"+httpAddr+"/readyz")
	vol := uuid.NewString()
	body := fmt.Sprintf(`{"volume_id":%q,"project_id":%q,"user_id":%q,"size_gb":1}`, vol, exampleProject, exampleUser)
	out, code := emit(t, body, "volume.requested", "--kafka", kafka, "--wait", "--timeout", "60s")
	if code != 0 || !strings.Contains(out, "volume.create.start") || !strings.Contains(out, "volume.create.end") || !strings.Contains(out, `"status":"available"`) {
		t.Fatalf("emit --wait: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(data, "volumes", "volume-"+vol)); err != nil {
		t.Fatal(err)
	}
	// An .error answer exits 1.
	out, code = emit(t, fmt.Sprintf(`{"volume_id":%q,"project_id":"1d9d5c3f2b1a4e8d9f7a6b5c4d3e2f11"}`, vol), "volume.deleted", "--kafka", kafka, "--wait", "--json")
	if code != 1 || !strings.Contains(out, `"code":"forbidden"`) {
		t.Fatalf("another project's delete: exit %d\n%s", code, out)
	}
	// Invalid data is refused before anything is published.
	out, code = emit(t, `{"volume_id":"../../etc","project_id":"x"}`, "volume.deleted", "--kafka", kafka)
	if code != 1 || !strings.Contains(out, "volume_id") {
		t.Fatalf("invalid emit: exit %d\n%s", code, out)
	}
}

func emit(t *testing.T, data, typ string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(emberBin, append([]string{"emit", typ, "--data", "-"}, args...)...)
	cmd.Stdin = strings.NewReader(data)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := exec.Command("curl", "-fsS", url).CombinedOutput()
		if err == nil && strings.Contains(string(out), "ready") {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

// TestCrashAtEveryStepCompletesOnce kills `ember serve` with SIGKILL at each
// step of the delivery protocol, restarts it, and checks that the request
// completes once: one backend effect, one distinct result id.
func TestCrashAtEveryStepCompletesOnce(t *testing.T) {
	brokers := testenv.Kafka(t)
	redisURL := testenv.RedisURL(t)
	u := testenv.Unique()
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "ember.yaml")
	cfgText := fmt.Sprintf(`instance: crash-test
kafka: {brokers: [%q], topic_prefix: "c%s.", group_prefix: "g%s"}
redis: {url: %q, key_prefix: "k%s"}
delivery: {lease: 3s, command_timeout: 2s, nack_delay: 100ms}
backends:
  - {name: local, driver: file, options: {dir: %q}}
`, brokers[0], u, u, redisURL, u, dir)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	rc := router.Config{Brokers: brokers, TopicPrefix: "c" + u + "."}
	rc.SetDefaults()
	if err := rc.EnsureTopics(functions.All(&functions.Env{})); err != nil {
		t.Fatal(err)
	}
	results := testenv.Collect(t, brokers, rc.SaramaConfig(), rc.TopicPrefix, events.ResultTypes(events.VolumeRequested))

	for _, point := range []string{"after-start", "after-act", "after-complete", "after-publish"} {
		t.Run(point, func(t *testing.T) {
			vol := uuid.NewString()
			crashing := startEmber(t, []string{router.CrashAtEnv + "=" + point}, "serve", "--config", cfgPath, "--http", freeAddr(t))
			id := publishCreate(t, brokers, rc.Topic(events.VolumeRequested), vol)
			select {
			case err := <-crashing.done:
				ws, _ := crashing.cmd.ProcessState.Sys().(syscall.WaitStatus)
				if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("ember exited (%v) instead of being killed at %s:\n%s", err, point, crashing.stderr)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("ember never reached %s:\n%s", point, crashing.stderr)
			}
			restarted := startEmber(t, nil, "serve", "--config", cfgPath, "--http", freeAddr(t))
			results.Wait(t, "volume.create.end", id, 1)
			time.Sleep(500 * time.Millisecond) // let any duplicate publication arrive
			restarted.stop(t)
			ends, starts := results.Of("volume.create.end", id), results.Of("volume.create.start", id)
			if testenv.DistinctIDs(ends) != 1 || testenv.DistinctIDs(starts) != 1 {
				t.Fatalf("distinct ids: %d create.end, %d create.start; want 1 each", testenv.DistinctIDs(ends), testenv.DistinctIDs(starts))
			}
			if errs := results.Of("volume.create.error", id); len(errs) != 0 {
				t.Fatalf("errors: %+v", errs[0].Data.Error)
			}
			if st, err := os.Stat(filepath.Join(dir, "volume-"+vol)); err != nil || st.Size() != 1<<30 {
				t.Fatalf("volume file: %v %v", st, err)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") || strings.Contains(e.Name(), "tmp") {
					t.Errorf("leftover %s", e.Name())
				}
			}
		})
	}
}

func publishCreate(t *testing.T, brokers []string, topic, vol string) string {
	t.Helper()
	return publishInput(t, brokers, topic, events.VolumeRequested,
		map[string]any{"volume_id": vol, "project_id": exampleProject, "user_id": exampleUser, "size_gb": 1})
}

// publishInput publishes one request of type typ to topic; it returns its id.
func publishInput(t *testing.T, brokers []string, topic, typ string, fields map[string]any) string {
	t.Helper()
	id := uuid.NewString()
	data, _ := json.Marshal(fields)
	rec, err := events.NewInput(typ, "/crash-test", id, data, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := router.Config{Brokers: brokers}
	cfg.SetDefaults()
	prod, err := sarama.NewSyncProducer(brokers, cfg.SaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	pm, _ := events.KafkaMarshaler{}.Marshal(topic, rec.Message())
	if _, _, err := prod.SendMessage(pm); err != nil {
		t.Fatal(err)
	}
	return id
}

// syncBuffer is the output of a running process: exec's copier writes it
// while a test reads it (a failing test prints it before the process is
// stopped).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Bytes() []byte { return []byte(b.String()) }
