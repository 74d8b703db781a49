package remotefs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs/chaintest"
)

const (
	vid  = chaintest.Vol
	sid1 = chaintest.Snap1
	sid2 = chaintest.Snap2
)

// local is the base on a temp directory, with real qemu-img.
func local(t *testing.T, format string) (*Driver, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := New(Config{Driver: "test", Shares: []string{dir}, Dir: func(string) string { return dir },
		Format: format, MaxOverSubscriptionRatio: 20}, drivers.LocalExecutor{})
	if err != nil {
		t.Fatal(err)
	}
	return d, dir
}

func sh(t *testing.T, dir string, args ...string) {
	t.Helper()
	c := exec.Command(args[0], args[1:]...)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// withSnapshots makes volume vid with snapshots sid1 and sid2 and data in
// each layer: 0x11 at 0 in the base, 0x22 at 1M after sid1, 0x33 at 2M
// after sid2.
func withSnapshots(t *testing.T, d *Driver, dir string) {
	t.Helper()
	ctx := context.Background()
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	b := "volume-" + vid
	chaintest.QemuIO(t, filepath.Join(dir, b), "", "write -P 0x11 0 64k")
	for i, s := range []string{sid1, sid2} {
		if _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: s, VolumeID: vid}); err != nil {
			t.Fatal(err)
		}
		chaintest.QemuIO(t, filepath.Join(dir, b+"."+s), "", []string{"write -P 0x22 1M 64k", "write -P 0x33 2M 64k"}[i])
	}
}

// A retried delete finishes what a crashed one began, at each crash point.
func TestDeleteSnapshotResumes(t *testing.T) {
	b := "volume-" + vid
	for _, tc := range []struct {
		name  string
		snap  string
		crash func(t *testing.T, dir string) // what the crashed attempt did
	}{
		{"middle: after commit and rebase, before .info", sid1, func(t *testing.T, dir string) {
			sh(t, dir, "qemu-img", "commit", "-d", b+"."+sid1)
			sh(t, dir, "qemu-img", "rebase", "-u", "-F", "raw", "-b", b, b+"."+sid2)
		}},
		{"middle: after commit, before rebase", sid1, func(t *testing.T, dir string) {
			sh(t, dir, "qemu-img", "commit", "-d", b+"."+sid1)
		}},
		{"newest: after .info, before the file was removed", sid2, func(t *testing.T, dir string) {
			sh(t, dir, "qemu-img", "commit", "-d", b+"."+sid2)
			info := `{"active": "` + b + "." + sid1 + `", "` + sid1 + `": "` + b + "." + sid1 + `"}`
			if err := os.WriteFile(filepath.Join(dir, b+".info"), []byte(info), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dir := local(t, "raw")
			withSnapshots(t, d, dir)
			tc.crash(t, dir)
			if err := d.DeleteSnapshot(context.Background(), drivers.Snapshot{ID: tc.snap, VolumeID: vid}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, b+"."+tc.snap)); !os.IsNotExist(err) {
				t.Fatalf("snapshot file left: %v", err)
			}
			info, err := d.readInfo(context.Background(), volume{id: vid, dir: dir, name: b})
			if err != nil || len(info) != 2 {
				t.Fatalf(".info: %v %v", info, err)
			}
			chaintest.QemuIO(t, filepath.Join(dir, info[activeKey]), "qcow2", "read -P 0x11 0 64k", "read -P 0x22 1M 64k", "read -P 0x33 2M 64k")
		})
	}
}

// A snapshot create that died after making its overlay, before writing
// .info, is simply done again.
func TestCreateSnapshotAfterCrash(t *testing.T) {
	d, dir := local(t, "qcow2")
	ctx := context.Background()
	b := "volume-" + vid
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	sh(t, dir, "qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", b, b+"."+sid1)
	if _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: sid1, VolumeID: vid}); err != nil {
		t.Fatal(err)
	}
	names, _, _ := chaintest.Chain(t, filepath.Join(dir, b+"."+sid1))
	if len(names) != 2 {
		t.Fatalf("chain %v", names)
	}
}

// A guest can write anything into a raw volume, a qcow2 header naming a
// host file or another volume as its backing file included. The base of a
// raw backend is opened as raw, always: the header is bytes of the disk,
// read back as they are, and a snapshot's overlay sits on them as raw.
// (drivers/file runs every operation on such a volume against an HTTP
// server that must see nothing.)
func TestGuestHeaderIsRawBytes(t *testing.T) {
	d, dir := local(t, "raw")
	ctx := context.Background()
	v := drivers.Volume{ID: vid, SizeGB: 1}
	if _, err := d.CreateVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	for _, backing := range []string{"/etc/passwd", "../volume-" + chaintest.Clone, "volume-" + chaintest.Clone} {
		evil := filepath.Join(t.TempDir(), "evil.qcow2")
		sh(t, dir, "qemu-img", "create", "-f", "qcow2", "-u", "-F", "raw", "-b", backing, evil, "1G")
		hdr, err := os.ReadFile(evil)
		if err != nil {
			t.Fatal(err)
		}
		// What the guest wrote: the header, over the start of the disk.
		f, err := os.OpenFile(filepath.Join(dir, "volume-"+vid), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(hdr, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		head := &prefixWriter{want: hdr}
		if err := d.ReadVolume(ctx, v, head); err != nil || head.n != drivers.GiB || head.err != nil {
			t.Fatalf("backing %s: read %d bytes, %v, %v", backing, head.n, err, head.err)
		}
		s := drivers.Snapshot{ID: sid1, VolumeID: vid}
		if _, err := d.CreateSnapshot(ctx, s); err != nil {
			t.Fatalf("backing %s: snapshot: %v", backing, err)
		}
		names, formats, _ := chaintest.Chain(t, filepath.Join(dir, "volume-"+vid+"."+sid1))
		if len(names) != 2 || formats[1] != "raw" {
			t.Fatalf("backing %s: chain %v %v", backing, names, formats)
		}
		if err := d.DeleteSnapshot(ctx, s); err != nil {
			t.Fatalf("backing %s: delete snapshot: %v", backing, err)
		}
	}
}

// prefixWriter checks that what it is written starts with want, and counts.
type prefixWriter struct {
	want []byte
	n    int64
	err  error
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if p.n < int64(len(p.want)) {
		w := p.want[p.n:]
		if len(w) > len(b) {
			w = w[:len(b)]
		}
		if !bytes.Equal(b[:len(w)], w) && p.err == nil {
			p.err = fmt.Errorf("bytes at %d differ from what the guest wrote", p.n)
		}
	}
	p.n += int64(len(b))
	return len(b), nil
}

// A .info that names another volume's file is refused before use.
func TestForeignInfoRefused(t *testing.T) {
	d, dir := local(t, "raw")
	ctx := context.Background()
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	for _, info := range []string{
		`{"active": "volume-` + chaintest.Clone + `"}`,
		`{"active": "../../etc/passwd"}`,
		`{"active": "volume-` + vid + `", "../x": "volume-` + vid + `.` + sid1 + `"}`,
		`{"active": "volume-` + vid + `", "` + sid1 + `": "volume-` + vid + `"}`,
		`{"` + sid1 + `": "volume-` + vid + `.` + sid1 + `"}`,
		`not json`,
	} {
		if err := os.WriteFile(filepath.Join(dir, "volume-"+vid+".info"), []byte(info), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteSnapshot(ctx, drivers.Snapshot{ID: sid1, VolumeID: vid}); !drivers.IsKind(err, drivers.KindBackend) {
			t.Errorf(".info %s: want backend_error, got %v", info, err)
		}
	}
}

// The .info file is byte-compatible with Cinder's json.dump(indent=1,
// sort_keys=True).
func TestInfoFileFormat(t *testing.T) {
	d, dir := local(t, "raw")
	withSnapshots(t, d, dir)
	got, err := os.ReadFile(filepath.Join(dir, "volume-"+vid+".info"))
	if err != nil {
		t.Fatal(err)
	}
	b := "volume-" + vid
	want := "{\n \"" + sid1 + "\": \"" + b + "." + sid1 + "\",\n \"" + sid2 + "\": \"" + b + "." + sid2 + "\",\n \"active\": \"" + b + "." + sid2 + "\"\n}"
	if string(got) != want {
		t.Fatalf(".info:\n%s\nwant:\n%s", got, want)
	}
}

func TestMountPointIsCinders(t *testing.T) {
	// python3 -c 'import hashlib; print(hashlib.md5(b"127.0.0.1:/gv0").hexdigest())'
	if got, want := MountPoint("/var/lib/ember/mnt", "127.0.0.1:/gv0"), "/var/lib/ember/mnt/c9670a2b2a19da244c8eb1e71cbf1bff"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
