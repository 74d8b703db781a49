package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
)

// TestDeadLetterReplayAfterTheFix: a storage host that cannot be reached
// exhausts the retries, so the request is dead-lettered with an .error
// (retryable). Once the backend works again, `ember dlq replay` sends it
// back as a new request (new id, the original's correlationid) that
// completes; replaying the same dead letter again has no second effect.
func TestDeadLetterReplayAfterTheFix(t *testing.T) {
	brokers := testenv.Kafka(t)
	redisURL := testenv.RedisURL(t)
	u := testenv.Unique()
	dir, keys := t.TempDir(), t.TempDir()
	key := filepath.Join(keys, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	knownHosts := filepath.Join(keys, "known_hosts")
	if err := os.WriteFile(knownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	common := fmt.Sprintf(`instance: dlq-test
kafka: {brokers: [%q], topic_prefix: "d%s.", group_prefix: "g%s"}
redis: {url: %q, key_prefix: "k%s"}
delivery: {lease: 3s, command_timeout: 2s, nack_delay: 100ms, retry: {attempts: 2, initial: 10ms, ceiling: 20ms}}
ssh: {key_file: %q, known_hosts_file: %q}
`, brokers[0], u, u, redisURL, u, key, knownHosts)
	// The backend's host is down: nothing listens on the port.
	down := filepath.Join(t.TempDir(), "down.yaml")
	up := filepath.Join(t.TempDir(), "up.yaml")
	writeFile(t, down, common+"backends:\n  - {name: b1, driver: file, host: \"ssh://ember@"+freeAddr(t)+"\", options: {dir: "+fmt.Sprintf("%q", dir)+"}}\n")
	writeFile(t, up, common+"backends:\n  - {name: b1, driver: file, options: {dir: "+fmt.Sprintf("%q", dir)+"}}\n")

	rc := router.Config{Brokers: brokers, TopicPrefix: "d" + u + "."}
	rc.SetDefaults()
	if err := rc.EnsureTopics(functions.All(&functions.Env{})); err != nil {
		t.Fatal(err)
	}
	results := testenv.Collect(t, brokers, rc.SaramaConfig(), rc.TopicPrefix, events.ResultTypes(events.VolumeRequested))

	serving := startEmber(t, nil, "serve", "--config", down, "--http", freeAddr(t))
	vol := uuid.NewString()
	id := publishInput(t, brokers, rc.Topic(events.VolumeRequested), events.VolumeRequested,
		map[string]any{"volume_id": vol, "project_id": exampleProject, "user_id": exampleUser, "size_gb": 1, "backend": "b1"})
	failed := results.Wait(t, "volume.create.error", id, 1)[0]
	if failed.Data.Error == nil || failed.Data.Error.Code != "unavailable" || !failed.Data.Error.Retryable {
		t.Fatalf("create with the host down: %+v", failed.Data.Error)
	}
	serving.stop(t)

	list := dlq(t, "list", events.VolumeRequested, "--config", up)
	if !strings.Contains(list, "id="+id) || !strings.Contains(list, "retries exhausted") {
		t.Fatalf("dlq list:\n%s", list)
	}
	startEmber(t, nil, "serve", "--config", up, "--http", freeAddr(t))
	replayed := regexp.MustCompile(`id=` + id + ` as id=([0-9a-f-]{36})`).FindStringSubmatch(dlq(t, "replay", events.VolumeRequested, "--config", up))
	if replayed == nil {
		t.Fatal("dlq replay did not say which request it published")
	}
	end := results.Wait(t, "volume.create.end", replayed[1], 1)[0]
	if end.Headers["ce_correlationid"] != id || end.Data.Status != "available" {
		t.Fatalf("replayed create: correlationid %q, %+v", end.Headers["ce_correlationid"], end.Data)
	}
	if _, err := os.Stat(filepath.Join(dir, "volume-"+vol)); err != nil {
		t.Fatal(err)
	}
	// The same dead letter replayed again is the same request.
	again := regexp.MustCompile(`as id=([0-9a-f-]{36})`).FindStringSubmatch(dlq(t, "replay", events.VolumeRequested, "--config", up))
	if again == nil || again[1] != replayed[1] {
		t.Fatalf("second replay: %v, want id %s", again, replayed[1])
	}
	results.Wait(t, "volume.create.end", replayed[1], 2)
	if ends := results.Of("volume.create.end", replayed[1]); testenv.DistinctIDs(ends) != 1 {
		t.Fatalf("%d distinct .end ids for one replayed request", testenv.DistinctIDs(ends))
	}
	if errs := results.Of("volume.create.error", id); testenv.DistinctIDs(errs) != 1 {
		t.Fatalf("the original request has %d distinct .error ids", testenv.DistinctIDs(errs))
	}
}

func dlq(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(emberBin, append([]string{"dlq"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ember dlq %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
