package rbd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// These tests run the driver against a real single-host Ceph cluster (one
// monitor, one memstore OSD, one mgr for `ceph df`), started once for the
// package by deploy/testenv/ceph.sh and stopped by TestMain. Where Ceph
// cannot start they fail; only -short skips them.

var cluster struct {
	once    sync.Once
	dir     string
	port    int
	err     error
	pools   atomic.Int32
	started bool
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.started {
		out, err := exec.Command("bash", cephScript(), "down", cluster.dir).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "ceph.sh down: %v\n%s", err, out)
		}
		os.RemoveAll(cluster.dir)
	}
	os.Exit(code)
}

func cephScript() string {
	p, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "testenv", "ceph.sh"))
	return p
}

func startCeph() {
	for _, bin := range []string{"ceph-mon", "ceph-osd", "ceph-mgr", "ceph", "rbd", "uuidgen"} {
		if _, err := exec.LookPath(bin); err != nil {
			cluster.err = fmt.Errorf("%s is not installed (deploy/testenv/install.sh installs it): %w", bin, err)
			return
		}
	}
	dir, err := os.MkdirTemp("", "ember-ceph-")
	if err != nil {
		cluster.err = err
		return
	}
	cluster.dir = dir
	// A free port for the monitor, so that this cluster does not collide
	// with another one (another test run, a developer's) on 3300.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cluster.err = err
		return
	}
	cluster.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", cephScript(), "up", dir, "mgr")
	cmd.Env = append(os.Environ(), "CEPH_MON_PORT="+strconv.Itoa(cluster.port))
	cluster.started = true // ceph.sh down stops whatever part did start
	if out, err := cmd.CombinedOutput(); err != nil {
		cluster.err = fmt.Errorf("ceph.sh up %s: %v\n%s", dir, err, out)
	}
}

// newRealDriver returns a driver on a fresh pool of the test cluster.
func newRealDriver(t *testing.T, opts map[string]any) *Driver {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real Ceph cluster; skipped with -short")
	}
	cluster.once.Do(startCeph)
	if cluster.err != nil {
		t.Fatalf("real Ceph cluster did not start: %v", cluster.err)
	}
	pool := fmt.Sprintf("t%d", cluster.pools.Add(1))
	ceph(t, "osd", "pool", "create", pool, "8")
	ceph(t, "osd", "pool", "application", "enable", pool, "rbd")
	o := map[string]any{"pool": pool, "conf": filepath.Join(cluster.dir, "ceph.conf"), "keyring": filepath.Join(cluster.dir, "keyring")}
	for k, v := range opts {
		o[k] = v
	}
	d, err := drivers.Open(drivers.Backend{Name: "ceph-test", Driver: "rbd", Options: o}, drivers.LocalExecutor{DefaultTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Driver)
}

func ceph(t *testing.T, args ...string) []byte {
	t.Helper()
	return cli(t, "ceph", args...)
}

// cli runs a Ceph tool against the test cluster, as an operator would to
// look at what the driver did.
func cli(t *testing.T, tool string, args ...string) []byte {
	t.Helper()
	a := append([]string{"--conf", filepath.Join(cluster.dir, "ceph.conf")}, args...)
	out, err := exec.Command(tool, a...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %v: %v: %s", tool, args, err, stderr)
	}
	return out
}

// images is `rbd ls -l --format json` of the driver's pool: image or
// image@snapshot → entry.
func images(t *testing.T, d *Driver) map[string]listEntry {
	t.Helper()
	var l []listEntry
	if err := json.Unmarshal(cli(t, "rbd", "--pool", d.o.Pool, "ls", "-l", "--format", "json"), &l); err != nil {
		t.Fatal(err)
	}
	m := map[string]listEntry{}
	for _, e := range l {
		k := e.Image
		if e.Snapshot != "" {
			k += "@" + e.Snapshot
		}
		m[k] = e
	}
	return m
}

func keys(m map[string]listEntry) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// protection is what `rbd snap ls --format json` says of image@snap,
// asked as an operator would ("true" or "false").
func protection(t *testing.T, d *Driver, image, snap string) string {
	t.Helper()
	var snaps []snapInfo
	if err := json.Unmarshal(cli(t, "rbd", "--pool", d.o.Pool, "snap", "ls", "--format", "json", image), &snaps); err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		if s.Name == snap {
			return s.Protected
		}
	}
	t.Fatalf("rbd snap ls %s lists no snapshot %s: %+v", image, snap, snaps)
	return ""
}

const (
	idA  = "0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10"
	idB  = "1c6ddf5f-9a1b-4d2f-8e6d-3a2b8b4dae21"
	idC  = "2d7eea60-ab2c-4e30-9f7e-4b3c9c5ebf32"
	idS  = "3e8ffb71-bc3d-4f41-a08f-5c4dad6fc043"
	idS2 = "4f900c82-cd4e-4052-b190-6d5ebe70d154"
)

// pattern is 8 MiB of data that differs per seed and is never all zeros.
func pattern(seed byte) []byte {
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = byte(i*7+int(seed)) | 1
	}
	return b
}

// readBack reads the whole volume and checks that it starts with want and
// is zeros after it.
func readBack(t *testing.T, d *Driver, v drivers.Volume, want []byte) {
	t.Helper()
	var got headWriter
	got.head = make([]byte, 0, len(want))
	if err := d.ReadVolume(context.Background(), v, &got); err != nil {
		t.Fatalf("read %s: %v", v.ID, err)
	}
	if got.n != int64(v.SizeGB)*drivers.GiB {
		t.Fatalf("read %s: %d bytes, want %d", v.ID, got.n, int64(v.SizeGB)*drivers.GiB)
	}
	if !bytes.Equal(got.head, want) {
		t.Fatalf("read %s: the first %d bytes differ from what was written", v.ID, len(want))
	}
	if got.nonZeroAfterHead {
		t.Fatalf("read %s: data after the first %d bytes, want zeros", v.ID, len(want))
	}
}

// headWriter keeps the first cap(head) bytes and checks the rest are zeros.
type headWriter struct {
	head             []byte
	n                int64
	nonZeroAfterHead bool
}

func (h *headWriter) Write(p []byte) (int, error) {
	n := len(p)
	h.n += int64(n)
	if room := cap(h.head) - len(h.head); room > 0 {
		k := min(room, len(p))
		h.head = append(h.head, p[:k]...)
		p = p[k:]
	}
	// bytes.Equal against zeros, not a byte loop: under -race a loop over
	// gigabytes takes minutes.
	for len(p) > 0 {
		k := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:k], zeroBlock[:k]) {
			h.nonZeroAfterHead = true
		}
		p = p[k:]
	}
	return n, nil
}

var zeroBlock = make([]byte, 1<<20)

func TestRealVolumeSnapshotCloneLifecycle(t *testing.T) {
	d := newRealDriver(t, nil)
	ctx := context.Background()
	a := drivers.Volume{ID: idA, SizeGB: 1}
	b := drivers.Volume{ID: idB, SizeGB: 2}
	s := drivers.Snapshot{ID: idS, VolumeID: idA, VolumeSizeGB: 1}
	nameA, nameB, snap := "volume-"+idA, "volume-"+idB, "volume-"+idA+"@snapshot-"+idS

	for i := 0; i < 2; i++ { // the second create is a redelivery
		if _, err := d.CreateVolume(ctx, a); err != nil {
			t.Fatalf("create #%d: %v", i+1, err)
		}
	}
	if img := images(t, d); len(img) != 1 || img[nameA].Size != drivers.GiB {
		t.Fatalf("after create: %+v", img)
	}
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: idA, SizeGB: 2}); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("create with another size: want conflict, got %v", err)
	}

	before := pattern(1)
	if err := d.WriteVolume(ctx, a, bytes.NewReader(before)); err != nil {
		t.Fatal(err)
	}
	readBack(t, d, a, before)

	for i := 0; i < 2; i++ {
		if _, err := d.CreateSnapshot(ctx, s); err != nil {
			t.Fatalf("snapshot #%d: %v", i+1, err)
		}
	}
	if img := images(t, d); img[snap].Size != drivers.GiB {
		t.Fatalf("after snapshot: %v", keys(img))
	}
	// Change the source after the snapshot: the clone must see the snapshot.
	after := pattern(2)
	if err := d.WriteVolume(ctx, a, bytes.NewReader(after)); err != nil {
		t.Fatal(err)
	}
	readBack(t, d, a, after)

	for i := 0; i < 2; i++ {
		if _, err := d.CreateVolumeFromSnapshot(ctx, b, s); err != nil {
			t.Fatalf("volume from snapshot #%d: %v", i+1, err)
		}
	}
	img := images(t, d)
	if e := img[nameB]; e.Size != 2*drivers.GiB || e.Parent == nil || e.Parent.Image != nameA || e.Parent.Snapshot != "snapshot-"+idS {
		t.Fatalf("after volume from snapshot: %+v (parent %+v)", e, e.Parent)
	}
	// Protected before it was cloned from, as Cinder does (clone v1 needs
	// it; with v2 it keeps the snapshot from going to the trash unseen).
	if p := protection(t, d, nameA, "snapshot-"+idS); p != "true" {
		t.Fatalf("snapshot cloned from: protected %q, want \"true\"", p)
	}
	readBack(t, d, b, before)
	// Zeros written to a clone must read back as zeros, not as the parent's
	// data below them: WriteVolume sends them as discards.
	rewrite := append(make([]byte, 4<<20), pattern(5)[:4<<20]...)
	if err := d.WriteVolume(ctx, b, bytes.NewReader(rewrite)); err != nil {
		t.Fatal(err)
	}
	readBack(t, d, b, rewrite)

	if err := d.DeleteSnapshot(ctx, s); !drivers.IsKind(err, drivers.KindBusy) {
		t.Fatalf("delete of a snapshot with a clone: want busy, got %v", err)
	}
	if err := d.DeleteVolume(ctx, a); !drivers.IsKind(err, drivers.KindBusy) {
		t.Fatalf("delete of a volume with a snapshot: want busy, got %v", err)
	}
	if img := images(t, d); len(img) != 3 {
		t.Fatalf("a refused delete changed the pool: %v", keys(img))
	}

	for i := 0; i < 2; i++ {
		if err := d.ExtendVolume(ctx, b, 3); err != nil {
			t.Fatalf("extend #%d: %v", i+1, err)
		}
	}
	if img := images(t, d); img[nameB].Size != 3*drivers.GiB {
		t.Fatalf("after extend: %+v", img[nameB])
	}
	if err := d.ExtendVolume(ctx, b, 2); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("shrink: want conflict, got %v", err)
	}

	for i := 0; i < 2; i++ {
		if err := d.DeleteVolume(ctx, b); err != nil {
			t.Fatalf("delete clone #%d: %v", i+1, err)
		}
		if err := d.DeleteSnapshot(ctx, s); err != nil {
			t.Fatalf("delete snapshot #%d: %v", i+1, err)
		}
		if err := d.DeleteVolume(ctx, a); err != nil {
			t.Fatalf("delete source #%d: %v", i+1, err)
		}
	}
	if img := images(t, d); len(img) != 0 {
		t.Fatalf("after deletes: %v", keys(img))
	}
	if err := d.ExtendVolume(ctx, a, 2); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("extend of a deleted volume: want not_found, got %v", err)
	}
	if _, err := d.CreateSnapshot(ctx, s); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("snapshot of a deleted volume: want not_found, got %v", err)
	}
	if _, err := d.CreateVolumeFromSnapshot(ctx, b, s); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("volume from a deleted snapshot: want not_found, got %v", err)
	}
}

// A clone of a volume keeps working after its source is deleted: the source
// is renamed .deleted and goes with its last clone.
func TestRealClonedVolumeOutlivesSource(t *testing.T) {
	d := newRealDriver(t, nil)
	ctx := context.Background()
	a := drivers.Volume{ID: idA, SizeGB: 1}
	c := drivers.Volume{ID: idC, SizeGB: 1}
	if _, err := d.CreateVolume(ctx, a); err != nil {
		t.Fatal(err)
	}
	data := pattern(3)
	if err := d.WriteVolume(ctx, a, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := d.CreateClonedVolume(ctx, c, a); err != nil {
			t.Fatalf("clone #%d: %v", i+1, err)
		}
	}
	cloneSnap := "volume-" + idC + ".clone_snap"
	img := images(t, d)
	if e := img["volume-"+idC]; e.Parent == nil || e.Parent.Image != "volume-"+idA || e.Parent.Snapshot != cloneSnap {
		t.Fatalf("after clone: %+v", img)
	}
	if p := protection(t, d, "volume-"+idA, cloneSnap); p != "true" {
		t.Fatalf("the clone's snapshot: protected %q, want \"true\"", p)
	}
	readBack(t, d, c, data)

	if err := d.DeleteVolume(ctx, a); err != nil {
		t.Fatalf("delete of a cloned source: %v", err)
	}
	img = images(t, d)
	if _, ok := img["volume-"+idA]; ok {
		t.Fatalf("source still listed under its name: %v", keys(img))
	}
	if _, ok := img["volume-"+idA+".deleted@"+cloneSnap]; !ok {
		t.Fatalf("source not kept as .deleted for its clone: %v", keys(img))
	}
	if err := d.DeleteVolume(ctx, a); err != nil { // redelivered
		t.Fatal(err)
	}
	readBack(t, d, c, data)
	if s, err := d.GetVolumeStats(ctx); err != nil || s.TotalVolumes != 1 {
		t.Fatalf("stats count the .deleted source: %+v %v", s, err)
	}

	if err := d.DeleteVolume(ctx, c); err != nil {
		t.Fatal(err)
	}
	if img := images(t, d); len(img) != 0 {
		t.Fatalf("the last clone's delete left: %v", keys(img))
	}
}

func TestRealFlattenVolumeFromSnapshot(t *testing.T) {
	d := newRealDriver(t, map[string]any{"flatten_volume_from_snapshot": true})
	ctx := context.Background()
	a := drivers.Volume{ID: idA, SizeGB: 1}
	b := drivers.Volume{ID: idB, SizeGB: 1}
	s := drivers.Snapshot{ID: idS2, VolumeID: idA, VolumeSizeGB: 1}
	if _, err := d.CreateVolume(ctx, a); err != nil {
		t.Fatal(err)
	}
	data := pattern(4)
	if err := d.WriteVolume(ctx, a, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := d.CreateVolumeFromSnapshot(ctx, b, s); err != nil {
			t.Fatalf("volume from snapshot #%d: %v", i+1, err)
		}
	}
	if e := images(t, d)["volume-"+idB]; e.Parent != nil {
		t.Fatalf("flattened volume still has a parent: %+v", e.Parent)
	}
	// Nothing depends on the snapshot or the source any more.
	if err := d.DeleteSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVolume(ctx, a); err != nil {
		t.Fatal(err)
	}
	readBack(t, d, b, data)
}

func TestRealStatsAndConnection(t *testing.T) {
	d := newRealDriver(t, map[string]any{"max_over_subscription_ratio": 5.0, "reserved_percentage": 10})
	ctx := context.Background()
	for _, v := range []drivers.Volume{{ID: idA, SizeGB: 1}, {ID: idB, SizeGB: 2}} {
		if _, err := d.CreateVolume(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	s, err := d.GetVolumeStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster is one 2 GiB memstore OSD with a mgr: ceph df reports real
	// figures (without the mgr they would be zeros).
	if s.TotalVolumes != 2 || s.ProvisionedCapacityGB != 3 || s.FreeCapacityGB <= 0 || s.FreeCapacityGB > 2 ||
		s.TotalCapacityGB < s.FreeCapacityGB || !s.ThinProvisioningSupport || s.MaxOverSubscriptionRatio != 5 ||
		s.ReservedPercentage != 10 || s.LocationInfo == "" {
		t.Fatalf("stats: %+v", s)
	}

	ci, err := d.InitializeConnection(ctx, drivers.Volume{ID: idA, SizeGB: 1}, "att-1", drivers.Connector{Host: "compute-1"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ci)
	var got struct {
		Type string `json:"driver_volume_type"`
		Data struct {
			Name         string   `json:"name"`
			Hosts        []string `json:"hosts"`
			Ports        []string `json:"ports"`
			AuthEnabled  bool     `json:"auth_enabled"`
			AuthUsername string   `json:"auth_username"`
		} `json:"data"`
	}
	json.Unmarshal(raw, &got)
	if got.Type != "rbd" || got.Data.Name != d.o.Pool+"/volume-"+idA || len(got.Data.Hosts) != 1 || got.Data.Hosts[0] != "127.0.0.1" ||
		got.Data.Ports[0] != strconv.Itoa(cluster.port) || !got.Data.AuthEnabled || got.Data.AuthUsername != "admin" {
		t.Fatalf("connection info: %s", raw)
	}
	key := bytes.TrimSpace(cli(t, "ceph", "auth", "print-key", "client.admin"))
	if len(key) == 0 || bytes.Contains(raw, key) {
		t.Fatalf("connection info carries the cephx key: %s", raw)
	}
	if err := d.TerminateConnection(ctx, drivers.Volume{ID: idA}, "att-1", drivers.Connector{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.InitializeConnection(ctx, drivers.Volume{ID: idC, SizeGB: 1}, "att-2", drivers.Connector{}); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("attach of a missing volume: want not_found, got %v", err)
	}
}

// A configured cephx user, not admin, is the one the cluster sees: with a
// key whose caps cover only the driver's pool, the driver works there and
// is refused in another pool; connection_info names that user.
func TestRealCephxUser(t *testing.T) {
	admin := newRealDriver(t, nil)
	other := newRealDriver(t, nil) // a pool the user has no caps on
	keyring := filepath.Join(t.TempDir(), "ceph.client.cinder.keyring")
	user := "cinder-" + admin.o.Pool // cephx users outlive pools; one per test pool
	ceph(t, "auth", "get-or-create", "client."+user, "mon", "profile rbd", "osd", "profile rbd pool="+admin.o.Pool, "-o", keyring)
	opts := map[string]any{"user": user, "keyring": keyring, "secret_uuid": "457eb676-33da-42ec-9a8c-9293d545c337"}
	d := newRealDriverOnPool(t, admin.o.Pool, opts)
	ctx := context.Background()
	a := drivers.Volume{ID: idA, SizeGB: 1}
	if _, err := d.CreateVolume(ctx, a); err != nil {
		t.Fatalf("create as client.%s: %v", user, err)
	}
	if img := images(t, admin); img["volume-"+idA].Size != drivers.GiB {
		t.Fatalf("the user's create is not in the pool: %v", keys(img))
	}
	elsewhere := newRealDriverOnPool(t, other.o.Pool, opts)
	if _, err := elsewhere.CreateVolume(ctx, a); err == nil {
		t.Fatalf("client.%s created an image in pool %s, which its caps do not cover: the user did not reach the cluster", user, other.o.Pool)
	}
	if img := images(t, other); len(img) != 0 {
		t.Fatalf("a refused create left %v", keys(img))
	}
	ci, err := d.InitializeConnection(ctx, a, "att-1", drivers.Connector{Host: "compute-1"})
	if err != nil {
		t.Fatal(err)
	}
	if ci.Data["auth_username"] != user || ci.Data["secret_uuid"] != opts["secret_uuid"] || ci.Data["name"] != admin.o.Pool+"/volume-"+idA {
		t.Fatalf("connection info %+v", ci.Data)
	}
	if err := d.DeleteVolume(ctx, a); err != nil {
		t.Fatal(err)
	}
}

// newRealDriverOnPool is a driver on an existing pool of the test cluster.
func newRealDriverOnPool(t *testing.T, pool string, opts map[string]any) *Driver {
	t.Helper()
	o := map[string]any{"pool": pool, "conf": filepath.Join(cluster.dir, "ceph.conf")}
	for k, v := range opts {
		o[k] = v
	}
	d, err := drivers.Open(drivers.Backend{Name: "ceph-test", Driver: "rbd", Options: o}, drivers.LocalExecutor{DefaultTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Driver)
}
