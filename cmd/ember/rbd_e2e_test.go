package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// TestRBDThroughPipeline is issue #5's demonstration: `ember serve` with an
// rbd backend on a real single-host Ceph (one monitor, one memstore OSD, a
// mgr; deploy/testenv/ceph.sh). create → snapshot → volume from snapshot →
// extend → deletes, with `rbd ls -l --format json` checked after each step,
// and the data written before the snapshot read back from the new volume
// with `rbd export`.
func TestRBDThroughPipeline(t *testing.T) {
	needStorage(t, "Ceph cluster")
	for _, bin := range []string{"ceph-mon", "ceph-osd", "ceph-mgr", "ceph", "rbd", "uuidgen"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (deploy/testenv/install.sh installs it): %v", bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "ember-e2e-ceph-")
	if err != nil {
		t.Fatal(err)
	}
	// A free port for the monitor: other clusters (drivers/rbd's tests, a
	// developer's) may run at the same time.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	portEnv := []string{fmt.Sprintf("CEPH_MON_PORT=%d", port)}
	t.Cleanup(func() { // ceph.sh down stops whatever part did start
		if out, err := runScript(portEnv, time.Minute, "ceph.sh", "down", dir); err != nil {
			t.Errorf("ceph.sh down: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})
	began := time.Now()
	if out, err := runScript(portEnv, 3*time.Minute, "ceph.sh", "up", dir, "mgr"); err != nil {
		t.Fatalf("cannot start a real Ceph (deploy/testenv/ceph.sh up %s mgr): %v\n%s", dir, err, out)
	}
	t.Logf("ceph up in %s", time.Since(began).Round(time.Millisecond))
	conf, keyring := filepath.Join(dir, "ceph.conf"), filepath.Join(dir, "keyring")
	cephEnv := []string{"CEPH_CONF=" + conf}
	const pool = "volumes"
	storageTool(t, cephEnv, "ceph", "--conf", conf, "osd", "pool", "create", pool, "8")
	storageTool(t, cephEnv, "ceph", "--conf", conf, "osd", "pool", "application", "enable", pool, "rbd")

	// ls is `rbd ls -l --format json` of the pool, as an operator runs it:
	// "image" or "image@snapshot" → its entry.
	type parent struct{ Pool, Image, Snapshot string }
	type entry struct {
		Image    string  `json:"image"`
		Snapshot string  `json:"snapshot"`
		Size     int64   `json:"size"`
		Parent   *parent `json:"parent"`
	}
	ls := func() map[string]entry {
		t.Helper()
		var l []entry
		out := storageTool(t, cephEnv, "rbd", "--conf", conf, "--pool", pool, "ls", "-l", "--format", "json")
		if err := json.Unmarshal(out, &l); err != nil {
			t.Fatalf("rbd ls -l: %v: %s", err, out)
		}
		m := map[string]entry{}
		for _, e := range l {
			k := e.Image
			if e.Snapshot != "" {
				k += "@" + e.Snapshot
			}
			e.Image, e.Snapshot = "", ""
			m[k] = e
		}
		return m
	}
	expectLs := func(step string, want map[string]entry) {
		t.Helper()
		got := ls()
		if !reflect.DeepEqual(got, want) {
			var names []string
			for k, e := range got {
				names = append(names, fmt.Sprintf("%s(size %d, parent %v)", k, e.Size, e.Parent))
			}
			sort.Strings(names)
			t.Fatalf("%s: rbd ls -l shows %v, want %v", step, names, want)
		}
	}
	// export reads an image with `rbd export <image> -` and checks it is
	// want followed by zeros, size bytes in all.
	export := func(image string, want []byte, size int64) {
		t.Helper()
		c := &streamCheck{want: want}
		cmd := exec.Command("rbd", "--conf", conf, "--pool", pool, "export", "--no-progress", image, "-")
		cmd.Env = append(os.Environ(), cephEnv...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = c, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("rbd export %s: %v: %s", image, err, stderr.Bytes())
		}
		c.check(t, "rbd export "+image, size)
	}

	opts := fmt.Sprintf(`{pool: %s, conf: %q, keyring: %q}`, pool, conf, keyring)
	s := newEmberStack(t, emberStackConfig{
		backends: `  - {name: ceph-1, driver: rbd, host: local, options: ` + opts + `}`,
		env:      cephEnv,
		types: []string{events.VolumeRequested, events.VolumeDeleted, events.VolumeExtendRequested,
			events.SnapshotRequested, events.SnapshotDeleted},
	})
	// The test writes data through the driver's own WriteVolume (rbd
	// import-diff), as an attached client would write it.
	d, err := drivers.Open(drivers.Backend{Name: "ceph-1", Driver: "rbd", Options: map[string]any{"pool": pool, "conf": conf, "keyring": keyring}},
		drivers.LocalExecutor{DefaultTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	write := func(vol string, sizeGB int, b []byte) {
		t.Helper()
		if err := d.WriteVolume(context.Background(), drivers.Volume{ID: vol, SizeGB: sizeGB, ProviderLocation: pool}, bytes.NewReader(b)); err != nil {
			t.Fatalf("write %s: %v", vol, err)
		}
	}

	a, b, snap := uuid.NewString(), uuid.NewString(), uuid.NewString()
	imgA, imgB, snapA := "volume-"+a, "volume-"+b, "volume-"+a+"@snapshot-"+snap
	before, after := dataPattern(1, 8<<20), dataPattern(2, 4<<20)

	// Create, then data.
	r := s.do(events.VolumeRequested, createReq(a, 1, "ceph-1"), events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.Size != 1 || r.Data.ProviderLocation != pool || r.Data.Host != "ceph-1" {
		t.Fatalf("volume.create.end: %+v", r.Data)
	}
	expectLs("after create", map[string]entry{imgA: {Size: drivers.GiB}})
	write(a, 1, before)

	// Snapshot; the source then changes.
	r = s.do(events.SnapshotRequested, map[string]any{"snapshot_id": snap, "volume_id": a}, events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.SnapshotID != snap || r.Data.VolumeSize != 1 {
		t.Fatalf("snapshot.create.end: %+v", r.Data)
	}
	expectLs("after snapshot", map[string]entry{imgA: {Size: drivers.GiB}, snapA: {Size: drivers.GiB}})
	write(a, 1, after)

	// A volume from the snapshot: a copy-on-write clone of it.
	fromSnap := createReq(b, 1, "")
	fromSnap["source"] = map[string]any{"kind": "snapshot", "id": snap}
	r = s.do(events.VolumeRequested, fromSnap, events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.Host != "ceph-1" || r.Data.Size != 1 {
		t.Fatalf("volume.create.end from snapshot: %+v", r.Data)
	}
	cloneOf := &parent{Pool: pool, Image: imgA, Snapshot: "snapshot-" + snap}
	expectLs("after volume from snapshot", map[string]entry{imgA: {Size: drivers.GiB}, snapA: {Size: drivers.GiB},
		imgB: {Size: drivers.GiB, Parent: cloneOf}})
	export(imgB, before, drivers.GiB)

	// Extend the new volume.
	r = s.do(events.VolumeExtendRequested, map[string]any{"volume_id": b, "new_size_gb": 2}, events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.Size != 2 {
		t.Fatalf("volume.resize.end: %+v", r.Data)
	}
	expectLs("after extend", map[string]entry{imgA: {Size: drivers.GiB}, snapA: {Size: drivers.GiB},
		imgB: {Size: 2 * drivers.GiB, Parent: cloneOf}})
	export(imgB, before, 2*drivers.GiB) // the snapshot's data, zeros after it
	export(imgA, after, drivers.GiB)    // the source as it is now

	// The snapshot has a clone and the source a snapshot: both busy, as
	// Cinder's SnapshotIsBusy and VolumeIsBusy; nothing changes.
	r = s.do(events.SnapshotDeleted, map[string]any{"snapshot_id": snap, "volume_id": a}, events.PhaseError)
	if r.Data.Error == nil || r.Data.Error.Code != "volume_busy" {
		t.Fatalf("delete of a cloned snapshot: %+v", r.Data)
	}
	r = s.do(events.VolumeDeleted, map[string]any{"volume_id": a}, events.PhaseError)
	if r.Data.Error == nil || r.Data.Error.Code != "volume_busy" {
		t.Fatalf("delete of a volume with a snapshot: %+v", r.Data)
	}
	if rec := s.record(a); rec == nil || rec.Status != "available" || rec.Snapshots[snap].Status != "available" {
		t.Fatalf("registry after the refused deletes (unchanged wanted): %+v", rec)
	}
	expectLs("after the refused deletes", map[string]entry{imgA: {Size: drivers.GiB}, snapA: {Size: drivers.GiB},
		imgB: {Size: 2 * drivers.GiB, Parent: cloneOf}})

	// Deletes in the order the driver needs: the clone, the snapshot, the source.
	r = s.do(events.VolumeDeleted, map[string]any{"volume_id": b}, events.PhaseEnd)
	if r.Data.Status != "deleted" {
		t.Fatalf("volume.delete.end: %+v", r.Data)
	}
	expectLs("after deleting the volume from the snapshot", map[string]entry{imgA: {Size: drivers.GiB}, snapA: {Size: drivers.GiB}})
	r = s.do(events.SnapshotDeleted, map[string]any{"snapshot_id": snap, "volume_id": a}, events.PhaseEnd)
	if r.Data.Status != "deleted" || r.Data.SnapshotID != snap {
		t.Fatalf("snapshot.delete.end: %+v", r.Data)
	}
	expectLs("after deleting the snapshot", map[string]entry{imgA: {Size: drivers.GiB}})
	export(imgA, after, drivers.GiB)
	s.do(events.VolumeDeleted, map[string]any{"volume_id": a}, events.PhaseEnd)
	expectLs("after deleting the source", map[string]entry{})
	if rec := s.record(a); rec == nil || rec.Status != "deleted" || len(rec.Snapshots) != 0 {
		t.Fatalf("registry of %s at the end: %+v", a, rec)
	}
}
