package main

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

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
	"github.com/ember-storage/ember/router/reconcile"
)

// TestReconcile runs `ember reconcile` against the real Redis and two real
// file backends: a live volume, a file without any record (unregistered),
// a file whose record is a tombstone, a record whose file is missing, a file whose volume is locked
// (a create under way), a migration's old copy, and a copy on b2 of a
// volume that lives on b1. The report names each; --remove deletes the
// orphans and nothing else (never an unregistered file); once the registry
// agrees and the operator has dealt with the unregistered file, the sweep is
// clean.
func TestReconcile(t *testing.T) {
	rdb := testenv.Redis(t)
	redisURL := testenv.RedisURL(t)
	u := testenv.Unique()
	prefix := "k" + u
	dir1, dir2 := t.TempDir(), t.TempDir()
	cfg := filepath.Join(t.TempDir(), "ember.yaml")
	writeFile(t, cfg, fmt.Sprintf(`instance: reconcile-test
redis: {url: %q, key_prefix: %q}
backends:
  - {name: b1, driver: file, options: {dir: %q, target_helper: none}}
  - {name: b2, driver: file, options: {dir: %q, target_helper: none}}
`, redisURL, prefix, dir1, dir2))
	ctx := context.Background()
	open := func(name, dir string) drivers.Driver {
		d, err := drivers.Open(drivers.Backend{Name: name, Driver: "file", Options: map[string]any{"dir": dir}}, drivers.LocalExecutor{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	b1, b2 := open("b1", dir1), open("b2", dir2)
	create := func(d drivers.Driver, id string) {
		t.Helper()
		if _, err := d.CreateVolume(ctx, drivers.Volume{ID: id, SizeGB: 1}); err != nil {
			t.Fatal(err)
		}
	}
	guard := router.NewGuard(rdb, prefix, time.Minute, time.Hour)
	record := func(v functions.Volume) {
		t.Helper()
		v.ProjectID, v.SizeGB = exampleProject, 1
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		// As the functions store it: the record under the guard's key.
		if err := rdb.Set(ctx, prefix+":{"+v.ID+"}:vol", raw, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	live, orphan, tomb, missing, busy, moved, stray := uuid.NewString(), uuid.NewString(), uuid.NewString(),
		uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	create(b1, live)
	record(functions.Volume{ID: live, Backend: "b1", Status: functions.StatusAvailable, ProviderLocation: dir1})
	create(b1, orphan)
	create(b1, tomb)
	record(functions.Volume{ID: tomb, Backend: "b1", Status: functions.StatusDeleted, DeletedAt: "2026-01-02T03:04:05.000000"})
	record(functions.Volume{ID: missing, Backend: "b1", Status: functions.StatusInUse, ProviderLocation: dir1})
	create(b1, busy)
	lock, err := guard.Lock(ctx, busy, "create", "another-owner")
	if err != nil || lock.State != router.Claimed {
		t.Fatalf("lock: %+v %v", lock, err)
	}
	// moved: migrated from b2 to b1, the old copy not yet deleted.
	create(b1, moved)
	create(b2, moved)
	record(functions.Volume{ID: moved, Backend: "b1", Status: functions.StatusAvailable,
		Migration: &functions.Migration{FromBackend: "b2", FromProviderLocation: dir2}})
	// stray: lives on b1; a copy on b2 that nothing accounts for.
	create(b1, stray)
	create(b2, stray)
	record(functions.Volume{ID: stray, Backend: "b1", Status: functions.StatusAvailable})
	exists := func(dir, id string) bool {
		_, err := os.Stat(filepath.Join(dir, "volume-"+id))
		return err == nil
	}

	// Usage errors.
	for _, args := range [][]string{{}, {"--config"}, {"--bogus", "--config", cfg}, {"--config", cfg, "extra"},
		{"--config", filepath.Join(t.TempDir(), "absent.yaml")}} {
		if _, code := runReconcile(t, args...); code != 2 {
			t.Errorf("reconcile %q: exit %d, want 2", args, code)
		}
	}

	// The report, twice: nothing is removed without --remove.
	want := map[string]reconcile.Class{
		"b1 " + live: reconcile.OK, "b1 " + orphan: reconcile.Unregistered, "b1 " + tomb: reconcile.Orphan,
		"b1 " + missing: reconcile.Missing, "b1 " + busy: reconcile.InFlight, "b1 " + moved: reconcile.OK,
		"b2 " + moved: reconcile.Migrating, "b1 " + stray: reconcile.OK, "b2 " + stray: reconcile.Orphan,
	}
	out, code := runReconcile(t, "--config", cfg, "--all")
	t.Logf("report:\n%s", out)
	if code != 1 {
		t.Fatalf("report: exit %d, want 1\n%s", code, out)
	}
	for key, class := range want {
		backend, id, _ := strings.Cut(key, " ")
		if !strings.Contains(out, backend+"\t"+id+"\t"+string(class)+"\t") {
			t.Errorf("report: no line %s %s %s\n%s", backend, id, class, out)
		}
	}
	if !strings.Contains(out, "reconcile: not clean: 2 backends (0 failed to list), 9 volumes:") ||
		!strings.Contains(out, " orphan=2 ") || !strings.Contains(out, " unregistered=1") || !strings.Contains(out, " missing=1 ") || !strings.Contains(out, "removed=0") {
		t.Errorf("report summary:\n%s", out)
	}
	if plain, _ := runReconcile(t, "--config", cfg); strings.Contains(plain, live) || !strings.Contains(plain, orphan) {
		t.Errorf("without --all the ok volumes are left out:\n%s", plain)
	}
	rep := reconcileJSON(t, 1, "--config", cfg, "--json")
	if got := classes(rep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("json classes:\n got %v\nwant %v", got, want)
	}
	for _, id := range []string{live, orphan, tomb, busy, moved, stray} {
		if !exists(dir1, id) {
			t.Fatalf("volume %s left b1 without --remove", id)
		}
	}

	// --remove deletes exactly the orphans; missing and in-flight remain.
	rep = reconcileJSON(t, 1, "--config", cfg, "--json", "--remove")
	if rep.Removed != 2 || rep.Counts[reconcile.Unregistered] != 1 || rep.Counts[reconcile.Missing] != 1 || rep.Counts[reconcile.InFlight] != 1 {
		t.Fatalf("--remove: %+v", rep)
	}
	for _, f := range rep.Findings {
		if f.Removed != (f.Class == reconcile.Orphan) || f.Error != "" {
			t.Errorf("--remove: %+v", f)
		}
	}
	for dir, ids := range map[string][]string{dir1: {live, orphan, busy, moved, stray}, dir2: {moved}} {
		for _, id := range ids {
			if !exists(dir, id) {
				t.Errorf("%s removed from %s", id, dir)
			}
		}
	}
	for dir, ids := range map[string][]string{dir1: {tomb}, dir2: {stray}} {
		for _, id := range ids {
			if exists(dir, id) {
				t.Errorf("orphan %s still in %s", id, dir)
			}
		}
	}
	if held, err := guard.Held(ctx, busy); err != nil || !held {
		t.Errorf("the in-flight volume's lock: held=%v %v", held, err)
	}
	// The sweep released every lock it took.
	for _, id := range []string{tomb, stray} {
		if held, _ := guard.Held(ctx, id); held {
			t.Errorf("reconcile left %s locked", id)
		}
	}

	// The create under way completes, the missing volume is deleted: clean.
	record(functions.Volume{ID: busy, Backend: "b1", Status: functions.StatusAvailable})
	if err := guard.Release(ctx, busy, lock.Lock); err != nil {
		t.Fatal(err)
	}
	record(functions.Volume{ID: missing, Backend: "b1", Status: functions.StatusDeleted})
	if out, code := runReconcile(t, "--config", cfg); code != 1 || !strings.Contains(out, orphan+"\tunregistered\t") {
		t.Fatalf("an unregistered file keeps the sweep unclean: exit %d\n%s", code, out)
	}
	// The operator finds the file is no volume of theirs and removes it.
	if err := os.Remove(filepath.Join(dir1, "volume-"+orphan)); err != nil {
		t.Fatal(err)
	}
	out, code = runReconcile(t, "--config", cfg)
	if code != 0 || !strings.Contains(out, "reconcile: clean:") || strings.Contains(out, "orphan") {
		t.Fatalf("after the fixes: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "b2\t"+moved+"\tmigrating\t") {
		t.Errorf("a migration's old copy is reported, and is no reason to alert:\n%s", out)
	}
}

func runReconcile(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(emberBin, append([]string{"reconcile"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code == 1 && stdout.Len() == 0 {
		t.Logf("reconcile %q stderr:\n%s", args, stderr.String())
	}
	return stdout.String(), code
}

func reconcileJSON(t *testing.T, wantCode int, args ...string) reconcile.Report {
	t.Helper()
	out, code := runReconcile(t, args...)
	if code != wantCode {
		t.Fatalf("reconcile %q: exit %d, want %d\n%s", args, code, wantCode, out)
	}
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("reconcile %q: %v\n%s", args, err, out)
	}
	return rep
}

func classes(rep reconcile.Report) map[string]reconcile.Class {
	m := map[string]reconcile.Class{}
	for _, f := range rep.Findings {
		m[f.Backend+" "+f.VolumeID] = f.Class
	}
	return m
}
