package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs"
	"github.com/ember-storage/ember/drivers/remotefs/chaintest"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/internal/testenv"
)

const oneMiB = 1 << 20

// stageByte is the byte that stage k writes.
func stageByte(k int) byte { return byte(0x11 * (k + 1)) }

// writeStage writes stage k into the image at path (raw or qcow2, opened
// with its backing chain) as a guest would: stageByte(k) over the first
// 64 KiB and at (k+1) MiB. After stage k an image reads stageByte(k) at 0,
// stageByte(m) at (m+1) MiB for m <= k, and zeros at the later offsets.
func writeStage(t *testing.T, path, format string, k int) {
	t.Helper()
	b := stageByte(k)
	qemuIO(t, path, format, false, fmt.Sprintf("write -P 0x%02x 0 64k", b), fmt.Sprintf("write -P 0x%02x %d 64k", b, (k+1)*oneMiB))
}

// expectStage checks, with qemu-io reads through the backing chain, that
// the image at path reads as after stage k.
func expectStage(t *testing.T, path, format string, k int) {
	t.Helper()
	cmds := []string{fmt.Sprintf("read -P 0x%02x 0 64k", stageByte(k))}
	for m := 0; m < 4; m++ {
		want := byte(0)
		if m <= k {
			want = stageByte(m)
		}
		cmds = append(cmds, fmt.Sprintf("read -P 0x%02x %d 64k", want, (m+1)*oneMiB))
	}
	qemuIO(t, path, format, true, cmds...)
}

// qemuIO runs qemu-io commands on an image, failing on any error or
// pattern mismatch.
func qemuIO(t *testing.T, path, format string, readOnly bool, cmds ...string) {
	t.Helper()
	args := []string{"-f", format}
	if readOnly {
		args = append(args, "-r")
	}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, path)
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "failed") || strings.Contains(string(out), "Pattern verification") {
		t.Fatalf("qemu-io %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// sameBytes runs `qemu-img compare` (through backing chains; a shorter
// image compares as if zero-filled to the longer one's size).
func sameBytes(t *testing.T, a, fa, b, fb string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "compare", "-f", fa, "-F", fb, a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", filepath.Base(a), filepath.Base(b), err, out)
	}
}

// TestGlusterFSThroughPipeline is issue #3's demonstration: `ember serve`
// with a glusterfs backend on a real single-node GlusterFS volume
// (deploy/testenv/glusterfs.sh), FUSE-mounted by the driver. A volume,
// three snapshots with data written between them, the middle one deleted,
// a volume from the newest, an extend; the data (qemu-io pattern reads,
// qemu-img compare), volume-<id>.info and `qemu-img info --backing-chain`
// checked after each step. Then backup → restore and upload → create from
// the image, byte for byte, and a migration from a file backend.
func TestGlusterFSThroughPipeline(t *testing.T) {
	needStorage(t, "GlusterFS")
	for _, bin := range []string{"glusterd", "gluster", "qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (deploy/testenv/install.sh installs it): %v", bin, err)
		}
	}
	tmp, err := os.MkdirTemp("", "ember-e2e-glusterfs-")
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(tmp, "gluster")
	// glusterd is one per host: wait for drivers/glusterfs's tests, which
	// may run at the same time. Released last (cleanups run in reverse).
	unlock, err := testenv.Exclusive("glusterfs", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	t.Cleanup(func() { // unmounts every mount under work, also the driver's, then stops glusterd
		if out, err := runScript(nil, 2*time.Minute, "glusterfs.sh", "down", work); err != nil {
			t.Errorf("glusterfs.sh down: %v\n%s", err, out)
			return // never remove through a mount that is still there
		}
		os.RemoveAll(tmp)
	})
	began := time.Now()
	out, err := runScript(nil, 2*time.Minute, "glusterfs.sh", "up", work)
	if err != nil {
		t.Fatalf("cannot start GlusterFS (deploy/testenv/glusterfs.sh up %s): %v\n%s\nlogs: %s/log", work, err, out, work)
	}
	fields := strings.Fields(out)
	share := fields[len(fields)-1]
	t.Logf("glusterfs up in %s, share %s", time.Since(began).Round(time.Millisecond), share)
	base := filepath.Join(work, "mnts")
	mp := remotefs.MountPoint(base, share) // where the driver mounts the share
	localDir, backups, images := t.TempDir(), t.TempDir(), t.TempDir()

	s := newEmberStack(t, emberStackConfig{
		backends: fmt.Sprintf(`  - {name: gluster-1, driver: glusterfs, host: local, options: {shares: [%q], mount_point_base: %q, volume_format: raw, target_helper: none}}
  - {name: local, driver: file, host: local, options: {dir: %q, format: raw, target_helper: none}}`, share, base, localDir),
		extra: fmt.Sprintf("default_backend: gluster-1\nbackups: {dir: %q}\nimages: {dir: %q, allowed_prefixes: [%q]}\n",
			backups, images, "file://"+images+"/"),
		types: []string{events.VolumeRequested, events.VolumeDeleted, events.VolumeExtendRequested,
			events.SnapshotRequested, events.SnapshotDeleted, events.VolumeMigrateRequested,
			events.BackupRequested, events.BackupRestoreRequested, events.VolumeUploadRequested},
	})

	a, b := uuid.NewString(), uuid.NewString()
	s1, s2, s3 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	volA := "volume-" + a
	f := func(suffix string) string { return volA + suffix }
	p := func(name string) string { return filepath.Join(mp, name) }
	expectInfo := func(step string, want map[string]string) {
		t.Helper()
		raw, err := os.ReadFile(p(f(".info")))
		if want == nil {
			if !os.IsNotExist(err) {
				t.Fatalf("%s: %s: want none, got %q (%v)", step, f(".info"), raw, err)
			}
			return
		}
		var got map[string]string
		if err != nil || json.Unmarshal(raw, &got) != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %s: want %v, got %q (%v)", step, f(".info"), want, raw, err)
		}
	}
	// expectChain checks `qemu-img info --backing-chain` of the chain's top:
	// the files, qcow2 overlays over a raw base, and the virtual sizes.
	expectChain := func(step string, sizes []int64, want ...string) {
		t.Helper()
		names, formats, got := chaintest.Chain(t, p(want[0]))
		if !reflect.DeepEqual(names, want) {
			t.Fatalf("%s: backing chain %v, want %v", step, names, want)
		}
		for i, fm := range formats {
			if i < len(formats)-1 && fm != "qcow2" || i == len(formats)-1 && fm != "raw" {
				t.Fatalf("%s: backing chain %v has formats %v", step, names, formats)
			}
		}
		if !reflect.DeepEqual(got, sizes) {
			t.Fatalf("%s: backing chain %v has virtual sizes %v, want %v", step, names, got, sizes)
		}
	}
	expectGone := func(step string, paths ...string) {
		t.Helper()
		for _, n := range paths {
			if _, err := os.Stat(n); !os.IsNotExist(err) {
				t.Fatalf("%s: %s: want gone, got %v", step, n, err)
			}
		}
	}
	expectSnaps := func(step, vol string, want ...string) {
		t.Helper()
		rec := s.record(vol)
		if rec == nil || len(rec.Snapshots) != len(want) {
			t.Fatalf("%s: registry of %s: %+v, want snapshots %v", step, vol, rec, want)
		}
		for _, id := range want {
			if sn, ok := rec.Snapshots[id]; !ok || sn.Status != "available" {
				t.Fatalf("%s: registry of %s: snapshots %+v, want %v available", step, vol, rec.Snapshots, want)
			}
		}
	}
	gib := int64(drivers.GiB)

	// A volume, then data.
	r := s.do(events.VolumeRequested, createReq(a, 1, "gluster-1"), events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.ProviderLocation != share || r.Data.Host != "gluster-1" || r.Data.Size != 1 {
		t.Fatalf("volume.create.end: %+v", r.Data)
	}
	expectInfo("after create", nil)
	expectChain("after create", []int64{gib}, volA)
	writeStage(t, p(volA), "raw", 0)

	// Three snapshots, data written to the active file after each.
	snaps := []string{s1, s2, s3}
	for k, id := range snaps {
		r = s.do(events.SnapshotRequested, map[string]any{"snapshot_id": id, "volume_id": a, "name": fmt.Sprintf("s%d", k+1)}, events.PhaseEnd)
		if r.Data.Status != "available" || r.Data.SnapshotID != id || r.Data.VolumeSize != 1 || r.Data.ProviderLocation != share {
			t.Fatalf("snapshot.create.end: %+v", r.Data)
		}
		step := fmt.Sprintf("after snapshot %d", k+1)
		info := map[string]string{"active": f("." + id)}
		chain := []string{}
		sizes := []int64{}
		for j := k; j >= 0; j-- {
			info[snaps[j]] = f("." + snaps[j])
			chain = append(chain, f("."+snaps[j]))
			sizes = append(sizes, gib)
		}
		expectInfo(step, info)
		expectChain(step, append(sizes, gib), append(chain, volA)...)
		writeStage(t, p(f("."+id)), "qcow2", k+1)
	}
	expectSnaps("after three snapshots", a, s1, s2, s3)
	expectStage(t, p(f("."+s3)), "qcow2", 3) // the volume now
	expectStage(t, p(f("."+s2)), "qcow2", 2) // snapshot 3's image
	expectStage(t, p(f("."+s1)), "qcow2", 1) // snapshot 2's image
	expectStage(t, p(volA), "raw", 0)        // snapshot 1's image

	// Delete the middle snapshot: its overlay is committed (commit -d on
	// the FUSE mount) into snapshot 1's, and the active overlay rebased.
	r = s.do(events.SnapshotDeleted, map[string]any{"snapshot_id": s2, "volume_id": a}, events.PhaseEnd)
	if r.Data.Status != "deleted" || r.Data.SnapshotID != s2 {
		t.Fatalf("snapshot.delete.end: %+v", r.Data)
	}
	expectInfo("after deleting the middle snapshot", map[string]string{"active": f("." + s3), s1: f("." + s1), s3: f("." + s3)})
	expectChain("after deleting the middle snapshot", []int64{gib, gib, gib}, f("."+s3), f("."+s1), volA)
	expectGone("after deleting the middle snapshot", p(f("."+s2)))
	expectSnaps("after deleting the middle snapshot", a, s1, s3)
	expectStage(t, p(f("."+s3)), "qcow2", 3)
	expectStage(t, p(f("."+s1)), "qcow2", 2) // snapshot 3's image now
	expectStage(t, p(volA), "raw", 0)

	// A volume from the newest snapshot: its point-in-time image (the
	// backing file of its overlay, A.s1 over A) converted to one raw file.
	from := createReq(b, 1, "")
	from["source"] = map[string]any{"kind": "snapshot", "id": s3}
	r = s.do(events.VolumeRequested, from, events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.Host != "gluster-1" || r.Data.ProviderLocation != share {
		t.Fatalf("volume.create.end from snapshot: %+v", r.Data)
	}
	volB := "volume-" + b
	expectChain("volume from snapshot", []int64{gib}, volB)
	expectStage(t, p(volB), "raw", 2)
	sameBytes(t, p(volB), "raw", p(f("."+s1)), "qcow2")
	expectInfo("after a volume from a snapshot", map[string]string{"active": f("." + s3), s1: f("." + s1), s3: f("." + s3)})

	// Extend it.
	r = s.do(events.VolumeExtendRequested, map[string]any{"volume_id": b, "new_size_gb": 2}, events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.Size != 2 {
		t.Fatalf("volume.resize.end: %+v", r.Data)
	}
	expectChain("after extend", []int64{2 * gib}, volB)
	expectStage(t, p(volB), "raw", 2)
	qemuIO(t, p(volB), "raw", true, fmt.Sprintf("read -P 0 %d 1M", gib), fmt.Sprintf("read -P 0 %d 1M", 2*gib-oneMiB))
	sameBytes(t, p(volB), "raw", p(f("."+s1)), "qcow2") // the grown part reads as zeros
	if rec := s.record(b); rec == nil || rec.SizeGB != 2 || rec.Status != "available" {
		t.Fatalf("registry after extend: %+v", rec)
	}

	// A volume with snapshots is busy; its snapshots go first (the oldest,
	// then the newest: the other two of Cinder's three cases).
	r = s.do(events.VolumeDeleted, map[string]any{"volume_id": a}, events.PhaseError)
	if r.Data.Error == nil || r.Data.Error.Code != "volume_busy" {
		t.Fatalf("delete of a volume with snapshots: %+v", r.Data)
	}
	s.do(events.SnapshotDeleted, map[string]any{"snapshot_id": s1, "volume_id": a}, events.PhaseEnd)
	expectInfo("after deleting the oldest snapshot", map[string]string{"active": f("." + s3), s3: f("." + s3)})
	expectChain("after deleting the oldest snapshot", []int64{gib, gib}, f("."+s3), volA)
	expectGone("after deleting the oldest snapshot", p(f("."+s1)))
	expectStage(t, p(f("."+s3)), "qcow2", 3)
	expectStage(t, p(volA), "raw", 2)
	s.do(events.SnapshotDeleted, map[string]any{"snapshot_id": s3, "volume_id": a}, events.PhaseEnd)
	expectInfo("after deleting the newest snapshot", map[string]string{"active": volA})
	expectChain("after deleting the newest snapshot", []int64{gib}, volA)
	expectGone("after deleting the newest snapshot", p(f("."+s3)))
	expectStage(t, p(volA), "raw", 3)
	expectSnaps("after deleting every snapshot", a)

	// Backup → restore into another volume: byte-equal.
	bk, c := uuid.NewString(), uuid.NewString()
	r = s.do(events.BackupRequested, map[string]any{"backup_id": bk, "volume_id": a}, events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.BackupID != bk {
		t.Fatalf("backup.create.end: %+v", r.Data)
	}
	s.do(events.VolumeRequested, createReq(c, 1, "gluster-1"), events.PhaseEnd)
	r = s.do(events.BackupRestoreRequested, map[string]any{"backup_id": bk, "volume_id": c}, events.PhaseEnd)
	if r.Data.Status != "available" {
		t.Fatalf("backup.restore.end: %+v", r.Data)
	}
	sameBytes(t, p("volume-"+c), "raw", p(volA), "raw")
	expectStage(t, p("volume-"+c), "raw", 3)

	// Upload → a volume from that image: byte-equal.
	img, e := uuid.NewString(), uuid.NewString()
	r = s.do(events.VolumeUploadRequested, map[string]any{"volume_id": a, "image_id": img, "disk_format": "raw"}, events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.ImageID != img {
		t.Fatalf("volume.upload.end: %+v", r.Data)
	}
	imgPath := filepath.Join(images, img+".raw")
	sameBytes(t, imgPath, "raw", p(volA), "raw")
	fromImage := createReq(e, 1, "gluster-1")
	fromImage["source"] = map[string]any{"kind": "image", "id": img, "url": "file://" + imgPath}
	s.do(events.VolumeRequested, fromImage, events.PhaseEnd)
	sameBytes(t, p("volume-"+e), "raw", p(volA), "raw")

	// Migrate a volume from the file backend to glusterfs: the bytes move,
	// the record follows, the old copy goes.
	m := uuid.NewString()
	volM := "volume-" + m
	r = s.do(events.VolumeRequested, createReq(m, 1, "local"), events.PhaseEnd)
	if r.Data.Host != "local" {
		t.Fatalf("volume.create.end on local: %+v", r.Data)
	}
	writeStage(t, filepath.Join(localDir, volM), "raw", 0)
	writeStage(t, filepath.Join(localDir, volM), "raw", 1)
	r = s.do(events.VolumeMigrateRequested, map[string]any{"volume_id": m, "dest_backend": "gluster-1"}, events.PhaseEnd)
	if r.Data.Status != "available" || r.Data.Host != "gluster-1" || r.Data.ProviderLocation != share {
		t.Fatalf("volume.migrate.end: %+v", r.Data)
	}
	if rec := s.record(m); rec == nil || rec.Backend != "gluster-1" || rec.ProviderLocation != share || rec.Migration != nil || rec.Status != "available" {
		t.Fatalf("registry after migration: %+v", rec)
	}
	expectGone("after migration", filepath.Join(localDir, volM))
	expectChain("after migration", []int64{gib}, volM)
	expectStage(t, p(volM), "raw", 1)
	r = s.do(events.VolumeDeleted, map[string]any{"volume_id": m}, events.PhaseEnd)
	if r.Data.Host != "gluster-1" {
		t.Fatalf("volume.delete.end of the migrated volume: %+v", r.Data)
	}
	expectGone("after deleting the migrated volume", p(volM))

	// Delete the rest: nothing of them is left on the share.
	for _, vol := range []string{a, b, c, e} {
		s.do(events.VolumeDeleted, map[string]any{"volume_id": vol}, events.PhaseEnd)
		expectGone("after delete", p("volume-"+vol), p("volume-"+vol+".info"))
	}
	entries, err := os.ReadDir(mp)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if !strings.HasPrefix(en.Name(), ".") {
			t.Errorf("left on the share: %s", en.Name())
		}
	}
}
