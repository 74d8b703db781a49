package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
)

// TestHostileImagesThroughPipeline: `ember serve` with file backends and
// real qemu-img, and an HTTP server on loopback standing for the cloud's
// metadata service (http://169.254.169.254/…), which must receive nothing.
//
//   - A guest writes a qcow2 header naming the server as backing file into
//     its raw volume. Snapshot, clone, volume from snapshot, backup,
//     upload, migrate, extend and delete all work on the raw bytes: the
//     header is data, and the copies carry it as data.
//   - A qcow2 overlay's header names the server (tampering on the storage
//     host: no guest can write a qcow2 header). Every request on the
//     volume answers .error, and the message names no URL.
func TestHostileImagesThroughPipeline(t *testing.T) {
	needStorage(t, "qemu-img")
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img is not installed (deploy/testenv/install.sh installs it): %v", err)
	}
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "AccessKeyId: AKIAEXAMPLE", http.StatusOK)
	}))
	defer srv.Close()
	backing := srv.URL + "/latest/meta-data/iam/security-credentials/"
	host := mustHost(t, srv.URL)

	rawDir, otherDir, qcowDir, backups, images := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	s := newEmberStack(t, emberStackConfig{
		backends: fmt.Sprintf(`  - {name: raw-1, driver: file, host: local, options: {dir: %q, format: raw, target_helper: none}}
  - {name: raw-2, driver: file, host: local, options: {dir: %q, format: raw, target_helper: none}}
  - {name: qcow-1, driver: file, host: local, options: {dir: %q, format: qcow2, target_helper: none}}`, rawDir, otherDir, qcowDir),
		extra: fmt.Sprintf("default_backend: raw-1\nbackups: {dir: %q}\nimages: {dir: %q, allowed_prefixes: [%q]}\n",
			backups, images, "file://"+images+"/"),
		types: []string{events.VolumeRequested, events.VolumeDeleted, events.VolumeExtendRequested,
			events.SnapshotRequested, events.SnapshotDeleted, events.VolumeMigrateRequested,
			events.BackupRequested, events.VolumeUploadRequested},
	})
	noHits := func(step string) {
		t.Helper()
		if n := hits.Load(); n != 0 {
			t.Fatalf("%s: the metadata server received %d requests", step, n)
		}
	}

	// The guest's header, over the start of its raw disk.
	evil := filepath.Join(t.TempDir(), "evil.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", "-u", "-F", "raw", "-b", backing, evil, "1G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	hdr, err := os.ReadFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	a := uuid.NewString()
	s.do(events.VolumeRequested, createReq(a, 1, "raw-1"), events.PhaseEnd)
	overwrite(t, filepath.Join(rawDir, "volume-"+a), hdr)

	snap, clone, fromSnap, bk, img := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	s.do(events.SnapshotRequested, map[string]any{"snapshot_id": snap, "volume_id": a}, events.PhaseEnd)
	noHits("snapshot")
	cl := createReq(clone, 1, "raw-1")
	cl["source"] = map[string]any{"kind": "volume", "id": a}
	s.do(events.VolumeRequested, cl, events.PhaseEnd)
	noHits("clone")
	fs := createReq(fromSnap, 1, "")
	fs["source"] = map[string]any{"kind": "snapshot", "id": snap}
	s.do(events.VolumeRequested, fs, events.PhaseEnd)
	noHits("volume from snapshot")
	s.do(events.SnapshotDeleted, map[string]any{"snapshot_id": snap, "volume_id": a}, events.PhaseEnd)
	noHits("delete snapshot")
	s.do(events.BackupRequested, map[string]any{"backup_id": bk, "volume_id": a}, events.PhaseEnd)
	noHits("backup")
	s.do(events.VolumeUploadRequested, map[string]any{"volume_id": a, "image_id": img, "disk_format": "raw"}, events.PhaseEnd)
	noHits("upload")
	startsWith(t, filepath.Join(images, img+".raw"), hdr)
	startsWith(t, filepath.Join(rawDir, "volume-"+clone), hdr)
	startsWith(t, filepath.Join(rawDir, "volume-"+fromSnap), hdr)
	s.do(events.VolumeMigrateRequested, map[string]any{"volume_id": a, "dest_backend": "raw-2"}, events.PhaseEnd)
	noHits("migrate")
	startsWith(t, filepath.Join(otherDir, "volume-"+a), hdr)
	s.do(events.VolumeExtendRequested, map[string]any{"volume_id": a, "new_size_gb": 2}, events.PhaseEnd)
	noHits("extend")
	for _, v := range []string{a, clone, fromSnap} {
		s.do(events.VolumeDeleted, map[string]any{"volume_id": v}, events.PhaseEnd)
	}
	noHits("delete")

	// A tampered overlay on a qcow2 backend: refused, and the .error
	// message names no URL.
	q, qs := uuid.NewString(), uuid.NewString()
	s.do(events.VolumeRequested, createReq(q, 1, "qcow-1"), events.PhaseEnd)
	s.do(events.SnapshotRequested, map[string]any{"snapshot_id": qs, "volume_id": q}, events.PhaseEnd)
	overlay := filepath.Join(qcowDir, "volume-"+q+"."+qs)
	if out, err := exec.Command("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", backing, overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img rebase: %v\n%s", err, out)
	}
	for _, req := range []struct {
		typ  string
		data map[string]any
	}{
		{events.BackupRequested, map[string]any{"backup_id": uuid.NewString(), "volume_id": q}},
		{events.VolumeUploadRequested, map[string]any{"volume_id": q, "image_id": uuid.NewString(), "disk_format": "raw"}},
		{events.SnapshotRequested, map[string]any{"snapshot_id": uuid.NewString(), "volume_id": q}},
		{events.SnapshotDeleted, map[string]any{"snapshot_id": qs, "volume_id": q}},
		// Last: a failed extend leaves the volume error_extending, and
		// requests after it would be refused before the driver.
		{events.VolumeExtendRequested, map[string]any{"volume_id": q, "new_size_gb": 2}},
	} {
		r := s.do(req.typ, req.data, events.PhaseError)
		e := r.Data.Error
		if e == nil || e.Code != "backend_error" || !strings.Contains(e.Message, "backing file") {
			t.Fatalf("%s: want a backend_error about the backing file, got %+v", req.typ, e)
		}
		if strings.Contains(e.Message, host) || strings.Contains(e.Message, "://") {
			t.Fatalf("%s: .error names the URL: %s", req.typ, e.Message)
		}
		noHits(req.typ)
	}
}

func mustHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// overwrite puts b at the start of the file p, as a guest writes its disk.
func overwrite(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

// startsWith checks that the file p begins with b.
func startsWith(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(b))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("%s does not start with the guest's bytes (%v)", filepath.Base(p), err)
	}
}
