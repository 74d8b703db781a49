package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/internal/testenv"
)

const e2eVG = "cinder-volumes"

// TestLVMThroughPipeline is issue #4's demonstration: `ember serve` with an
// lvm backend on a real volume group (a loop device made by
// deploy/testenv/lvm.sh; activation is off here, so LVM's metadata
// operations are real and no device I/O happens). After each step `lvs`
// says what exists.
func TestLVMThroughPipeline(t *testing.T) {
	needStorage(t, "LVM volume group")
	tmp, err := os.MkdirTemp("", "ember-e2e-lvm-")
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(tmp, "vg") // lvm.sh down removes it whole
	lvmEnv := []string{"LVM_SYSTEM_DIR=" + filepath.Join(work, "etc"), "LVM_SUPPRESS_FD_WARNINGS=1"}
	t.Cleanup(func() {
		if out, err := runScript(nil, time.Minute, "lvm.sh", "down", work, e2eVG); err != nil {
			t.Errorf("lvm.sh down: %v\n%s", err, out)
		}
		os.Remove(tmp)
	})
	if out, err := runScript(nil, time.Minute, "lvm.sh", "up", work, e2eVG, "4G"); err != nil {
		t.Fatalf("cannot make a real volume group (deploy/testenv/lvm.sh up; packages: deploy/testenv/install.sh): %v\n%s", err, out)
	}
	// lvs asks LVM itself: LV name → size in bytes.
	lvs := func() map[string]string {
		t.Helper()
		out := storageTool(t, lvmEnv, "lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size", e2eVG)
		m := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				m[f[0]] = f[1]
			}
		}
		return m
	}
	expectLVs := func(step string, want map[string]string) {
		t.Helper()
		got := lvs()
		if len(got) != len(want) {
			t.Fatalf("%s: lvs shows %v, want %v", step, got, want)
		}
		for n, size := range want {
			if got[n] != size {
				t.Fatalf("%s: lvs shows %v, want %v", step, got, want)
			}
		}
	}

	s := newEmberStack(t, emberStackConfig{
		backends: `  - {name: lvm-1, driver: lvm, host: local, options: {volume_group: ` + e2eVG + `, volume_clear: none, target_helper: none}}`,
		env:      lvmEnv,
		types:    []string{events.VolumeRequested, events.VolumeDeleted, events.VolumeExtendRequested},
	})
	a := uuid.NewString()
	lvA := "volume-" + a

	// Create.
	r := s.do(events.VolumeRequested, createReq(a, 1, "lvm-1"), events.PhaseEnd)
	expectStatus(t, r, "available")
	if r.Data.Size != 1 || r.Data.Host != "lvm-1" || r.Data.ProviderLocation != e2eVG || r.Data.TenantID != exampleProject {
		t.Fatalf("volume.create.end: %+v", r.Data)
	}
	expectLVs("after create", map[string]string{lvA: "1073741824"})

	// Extend.
	r = s.do(events.VolumeExtendRequested, map[string]any{"volume_id": a, "new_size_gb": 2}, events.PhaseEnd)
	expectStatus(t, r, "available")
	if r.Data.Size != 2 {
		t.Fatalf("volume.resize.end: %+v", r.Data)
	}
	expectLVs("after extend", map[string]string{lvA: "2147483648"})
	if rec := s.record(a); rec == nil || rec.SizeGB != 2 || rec.Backend != "lvm-1" {
		t.Fatalf("registry after extend: %+v", rec)
	}

	// Another project's delete is refused and changes nothing.
	r = s.do(events.VolumeDeleted, map[string]any{"volume_id": a, "project_id": otherProject}, events.PhaseError)
	if r.Data.Error == nil || r.Data.Error.Code != "forbidden" {
		t.Fatalf("another project's delete: %+v", r.Data)
	}
	expectLVs("after another project's delete", map[string]string{lvA: "2147483648"})

	// Delete.
	r = s.do(events.VolumeDeleted, map[string]any{"volume_id": a}, events.PhaseEnd)
	expectStatus(t, r, "deleted")
	expectLVs("after delete", map[string]string{})
	if rec := s.record(a); rec == nil || rec.Status != "deleted" || rec.DeletedAt == "" {
		t.Fatalf("registry after delete (a tombstone wanted): %+v", rec)
	}

	// Larger than the VG's free space: a capacity error, and no LV.
	big := uuid.NewString()
	r = s.do(events.VolumeRequested, createReq(big, 8, "lvm-1"), events.PhaseError)
	if r.Data.Error == nil || r.Data.Error.Code != "no_capacity" || r.Data.Error.Retryable {
		t.Fatalf("create beyond free space: %+v", r.Data)
	}
	expectLVs("after a create beyond free space", map[string]string{})

	// One request published twice (same source and id): one LV, and the
	// same result (same event id) each time it is answered.
	dup, id := uuid.NewString(), uuid.NewString()
	data := createReq(dup, 1, "lvm-1")
	data["project_id"] = exampleProject
	s.publish(events.VolumeRequested, "/storage-e2e/dup", id, data)
	s.publish(events.VolumeRequested, "/storage-e2e/dup", id, data)
	ends := s.results.Wait(t, "volume.create.end", id, 2) // the duplicate re-publishes the stored result
	time.Sleep(time.Second)                               // let any further publication arrive
	ends = s.results.Of("volume.create.end", id)
	if n := testenv.DistinctIDs(ends); n != 1 {
		t.Fatalf("duplicate request: %d distinct volume.create.end ids, want 1", n)
	}
	if n := testenv.DistinctIDs(s.results.Of("volume.create.start", id)); n != 1 {
		t.Fatalf("duplicate request: %d distinct volume.create.start ids, want 1", n)
	}
	if errs := s.results.Of("volume.create.error", id); len(errs) != 0 {
		t.Fatalf("duplicate request: an error %+v", errs[0].Data)
	}
	expectLVs("after a duplicated create", map[string]string{"volume-" + dup: "1073741824"})
	s.do(events.VolumeDeleted, map[string]any{"volume_id": dup}, events.PhaseEnd)
	expectLVs("at the end", map[string]string{})
}
