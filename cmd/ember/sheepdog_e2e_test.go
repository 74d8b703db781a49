package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/events"
)

// TestSheepdogThroughPipeline: `ember serve` with a sheepdog backend on a
// real one-node Sheepdog cluster, built from the last upstream source and
// started by deploy/testenv/sheepdog.sh. create → snapshot → volume from
// snapshot → clone → extend → backup → restore → deletes, with `dog vdi
// list -r` checked after each step, the bytes read back with `dog vdi
// read`, and backend.stats read from Kafka.
func TestSheepdogThroughPipeline(t *testing.T) {
	needStorage(t, "Sheepdog cluster")
	out, err := runScript(nil, 10*time.Minute, "sheepdog.sh", "build")
	if err != nil {
		t.Fatalf("cannot build Sheepdog (deploy/testenv/sheepdog.sh build): %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n") // the build's messages, then the prefix
	bin := filepath.Join(lines[len(lines)-1], "bin")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	t.Cleanup(func() {
		if out, err := runScript(nil, time.Minute, "sheepdog.sh", "down", dir); err != nil {
			t.Errorf("sheepdog.sh down: %v\n%s", err, out)
		}
	})
	if out, err := runScript(nil, time.Minute, "sheepdog.sh", "up", dir, strconv.Itoa(port)); err != nil {
		t.Fatalf("cannot start a sheep (deploy/testenv/sheepdog.sh up): %v\n%s", err, out)
	}
	if out, err := runScript(nil, time.Minute, "sheepdog.sh", "format", strconv.Itoa(port), "1"); err != nil {
		t.Fatalf("sheepdog.sh format: %v\n%s", err, out)
	}
	pathEnv := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
	dog := func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "dog"), append(args, "-a", "127.0.0.1", "-p", strconv.Itoa(port))...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("dog %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out
	}
	// ls is `dog vdi list -r`, as "<type> <name> <size> <tag>", sorted
	// (dog lists in the order of the VDIs' ids, hashes of their names).
	ls := func() []string {
		var l []string
		for _, line := range strings.Split(strings.TrimSpace(string(dog(nil, "vdi", "list", "-r"))), "\n") {
			if f := strings.Split(line, " "); len(f) >= 10 {
				l = append(l, strings.Join([]string{f[0], f[1], f[3], f[9]}, " "))
			}
		}
		sort.Strings(l)
		return l
	}
	expectLs := func(step string, want ...string) {
		t.Helper()
		sort.Strings(want)
		if got := ls(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("%s: dog vdi list shows\n  %q\nwant\n  %q", step, got, want)
		}
	}
	// expectBytes reads the start of a VDI with `dog vdi read <name> 0 <len>`.
	expectBytes := func(name string, want []byte) {
		t.Helper()
		if got := dog(nil, "vdi", "read", name, "0", strconv.Itoa(len(want))); !bytes.Equal(got, want) {
			t.Fatalf("%s: its first %d bytes differ from what was written", name, len(want))
		}
	}

	// sum is the sha256 of a whole VDI, streamed from `dog vdi read`.
	sum := func(name string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "dog"), "vdi", "read", name, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
		h := sha256.New()
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = h, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("dog vdi read %s: %v: %s", name, err, stderr.Bytes())
		}
		return hex.EncodeToString(h.Sum(nil))
	}

	backups := t.TempDir()
	s := newEmberStack(t, emberStackConfig{
		backends: fmt.Sprintf(`  - {name: sheep-1, driver: sheepdog, host: local, options: {address: 127.0.0.1, port: %d}}`, port),
		extra:    fmt.Sprintf("backups: {dir: %q}\n", backups),
		env:      pathEnv,
		types: []string{events.VolumeRequested, events.VolumeDeleted, events.VolumeExtendRequested,
			events.SnapshotRequested, events.SnapshotDeleted, events.BackupRequested, events.BackupRestoreRequested},
	})
	loc := fmt.Sprintf("sheepdog:127.0.0.1:%d", port)
	const one, two = "1073741824", "2147483648"

	a, b, c, r, snap := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	va, vb, vc, vr := "volume-"+a, "volume-"+b, "volume-"+c, "volume-"+r
	tag := "snapshot-" + snap
	// dog vdi write writes whole 4 MiB objects: input that ends on an
	// object's boundary is followed by one object of zeros (dog/vdi.c
	// vdi_write pads the empty read that ends its input).
	before, after := dataPattern(1, 12<<20), dataPattern(2, 4<<20)

	res := s.do(events.VolumeRequested, createReq(a, 1, "sheep-1"), events.PhaseEnd)
	if res.Data.Status != "available" || res.Data.ProviderLocation != loc || res.Data.Host != "sheep-1" {
		t.Fatalf("volume.create.end: %+v", res.Data)
	}
	expectLs("after create", "= "+va+" "+one+" ")
	dog(before, "vdi", "write", va) // as an attached client would write it

	res = s.do(events.SnapshotRequested, map[string]any{"snapshot_id": snap, "volume_id": a}, events.PhaseEnd)
	if res.Data.Status != "available" || res.Data.SnapshotID != snap {
		t.Fatalf("snapshot.create.end: %+v", res.Data)
	}
	expectLs("after snapshot", "s "+va+" "+one+" "+tag, "= "+va+" "+one+" ")
	dog(after, "vdi", "write", va)

	// A volume from the snapshot, larger than it: a clone, resized.
	fromSnap := createReq(b, 2, "")
	fromSnap["source"] = map[string]any{"kind": "snapshot", "id": snap}
	res = s.do(events.VolumeRequested, fromSnap, events.PhaseEnd)
	if res.Data.Status != "available" || res.Data.Host != "sheep-1" || res.Data.Size != 2 {
		t.Fatalf("volume.create.end from snapshot: %+v", res.Data)
	}
	expectBytes(vb, before)
	// A clone of the source: its data now; the temporary snapshot is gone.
	clone := createReq(c, 1, "")
	clone["source"] = map[string]any{"kind": "volume", "id": a}
	s.do(events.VolumeRequested, clone, events.PhaseEnd)
	current := append(append(append([]byte{}, after...), make([]byte, 4<<20)...), before[8<<20:]...)
	expectBytes(vc, current)
	expectLs("after the clones", "s "+va+" "+one+" "+tag, "= "+va+" "+one+" ", "c "+vb+" "+two+" ", "c "+vc+" "+one+" ")

	res = s.do(events.VolumeExtendRequested, map[string]any{"volume_id": c, "new_size_gb": 2}, events.PhaseEnd)
	if res.Data.Status != "available" || res.Data.Size != 2 {
		t.Fatalf("volume.resize.end: %+v", res.Data)
	}
	// Shrinking is refused before dog is asked.
	res = s.do(events.VolumeExtendRequested, map[string]any{"volume_id": c, "new_size_gb": 1}, events.PhaseError)
	if res.Data.Error == nil {
		t.Fatalf("shrink: %+v", res.Data)
	}
	expectLs("after extend", "s "+va+" "+one+" "+tag, "= "+va+" "+one+" ", "c "+vb+" "+two+" ", "c "+vc+" "+two+" ")

	// Backup (dog vdi read) → restore into a new volume (dog vdi write):
	// byte-equal. 1 GiB: a restore writes every byte, zeros too, and that
	// is most of this test's time.
	bk := uuid.NewString()
	res = s.do(events.BackupRequested, map[string]any{"backup_id": bk, "volume_id": a}, events.PhaseEnd)
	if res.Data.Status != "available" || res.Data.BackupID != bk {
		t.Fatalf("backup.create.end: %+v", res.Data)
	}
	s.do(events.VolumeRequested, createReq(r, 1, "sheep-1"), events.PhaseEnd)
	res = s.do(events.BackupRestoreRequested, map[string]any{"backup_id": bk, "volume_id": r}, events.PhaseEnd)
	if res.Data.Status != "available" {
		t.Fatalf("backup.restore.end: %+v", res.Data)
	}
	if ha, hr := sum(va), sum(vr); ha != hr {
		t.Fatalf("%s restored from a backup of %s differs from it (sha256 %s, %s)", vr, va, hr, ha)
	}

	// Deletes: the volumes, the snapshot, the source; a delete again
	// (dog: "No VDI found", exit 0) ends as deleted too.
	for _, v := range []string{b, c, r} {
		if res := s.do(events.VolumeDeleted, map[string]any{"volume_id": v}, events.PhaseEnd); res.Data.Status != "deleted" {
			t.Fatalf("volume.delete.end: %+v", res.Data)
		}
	}
	res = s.do(events.SnapshotDeleted, map[string]any{"snapshot_id": snap, "volume_id": a}, events.PhaseEnd)
	if res.Data.Status != "deleted" {
		t.Fatalf("snapshot.delete.end: %+v", res.Data)
	}
	expectLs("after deleting the snapshot", "= "+va+" "+one+" ")
	expectBytes(va, current)
	s.do(events.VolumeDeleted, map[string]any{"volume_id": a}, events.PhaseEnd)
	expectLs("after deleting the source")
	if rec := s.record(a); rec == nil || rec.Status != "deleted" || len(rec.Snapshots) != 0 {
		t.Fatalf("registry of %s at the end: %+v", a, rec)
	}
}
