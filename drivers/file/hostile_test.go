package file

import (
	"bytes"
	"context"
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
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs/chaintest"
)

// Hostile images, with real qemu-img on the real file backend: a volume
// file whose qcow2 header names an HTTP server this test runs on loopback
// (standing for http://169.254.169.254/…) as its backing file. Every
// operation that reads the volume's chain runs on it; the server must
// receive nothing, and each operation either works on the raw bytes or
// answers a clear error that does not echo the URL.

// metadataServer counts the requests it receives.
func metadataServer(t *testing.T) (backing string, hits *atomic.Int64) {
	t.Helper()
	hits = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "instance credentials", http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/latest/meta-data/iam/security-credentials/", hits
}

// qcow2Header is the header of a qcow2 image whose backing file is backing.
func qcow2Header(t *testing.T, backing string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "evil.qcow2")
	qemuImgRun(t, "create", "-f", "qcow2", "-u", "-F", "raw", "-b", backing, p, "1G")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func qemuImgRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// writeAt puts b at offset 0 of the file p, as a guest writes its disk.
func writeAt(t *testing.T, p string, b []byte) {
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

// headWriter keeps the first len(want) bytes written and counts them all.
type headWriter struct {
	head []byte
	max  int
	n    int64
}

func (h *headWriter) Write(b []byte) (int, error) {
	if room := h.max - len(h.head); room > 0 {
		h.head = append(h.head, b[:min(room, len(b))]...)
	}
	h.n += int64(len(b))
	return len(b), nil
}

// openHostile opens a file backend of format in a fresh directory, with
// attach through this package's tgtd when it runs.
func openHostile(t *testing.T, format string) (*Driver, string) {
	t.Helper()
	dir := t.TempDir()
	opts := map[string]any{"dir": dir, "format": format, "target_helper": "none"}
	if tgtd != nil {
		opts = map[string]any{"dir": dir, "format": format, "target_portal": tgtd.Portal, "tgt_control_port": tgtd.ControlPort}
	}
	d, err := Open(drivers.Backend{Name: "t", Driver: "file", Options: opts}, drivers.LocalExecutor{DefaultTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Driver), dir
}

// A raw volume is raw bytes whatever they say: a qcow2 header the guest
// wrote is read, copied, snapshotted, extended and exported as data.
func TestGuestQcow2HeaderInRawVolume(t *testing.T) {
	backing, hits := metadataServer(t)
	hdr := qcow2Header(t, backing)
	d, dir := openHostile(t, "raw")
	ctx := context.Background()
	v := drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: dir}
	base := filepath.Join(dir, "volume-"+vid)
	if _, err := d.CreateVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	writeAt(t, base, hdr)
	snap := drivers.Snapshot{ID: chaintest.Snap1, VolumeID: vid, VolumeSizeGB: 1, ProviderLocation: dir}
	conn := drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:ember-test", Host: "compute1", IP: "127.0.0.1"}

	steps := []struct {
		name string
		run  func() error
	}{
		{"read (backup, upload, migrate)", func() error {
			h := &headWriter{max: len(hdr)}
			if err := d.ReadVolume(ctx, v, h); err != nil {
				return err
			}
			if h.n != drivers.GiB || !bytes.Equal(h.head, hdr) {
				return fmt.Errorf("read %d bytes starting %q, want the guest's header and 1 GiB", h.n, h.head[:8])
			}
			return nil
		}},
		{"write (restore, download)", func() error {
			if err := d.WriteVolume(ctx, v, bytes.NewReader(hdr)); err != nil {
				return err
			}
			startsWith(t, base, hdr)
			return nil
		}},
		{"attach", func() error {
			if tgtd == nil {
				return nil // -short: no tgtd
			}
			info, err := d.InitializeConnection(ctx, v, attachA, conn)
			if err != nil {
				return err
			}
			if info.DriverVolumeType != "iscsi" {
				return fmt.Errorf("connection_info %+v, want the raw file exported over iSCSI", info)
			}
			return d.TerminateConnection(ctx, v, attachA, conn)
		}},
		{"extend", func() error { return d.ExtendVolume(ctx, v, 2) }},
		{"create snapshot", func() error { _, err := d.CreateSnapshot(ctx, snap); return err }},
		{"attach with a snapshot", func() error {
			if tgtd == nil {
				return nil
			}
			info, err := d.InitializeConnection(ctx, v, attachA, conn)
			if err != nil {
				return err
			}
			if info.DriverVolumeType != "local" || info.Data["name"] != "volume-"+vid+"."+snap.ID {
				return fmt.Errorf("connection_info %+v, want the overlay", info)
			}
			return d.TerminateConnection(ctx, v, attachA, conn)
		}},
		{"read through the snapshot", func() error {
			h := &headWriter{max: len(hdr)}
			if err := d.ReadVolume(ctx, v, h); err != nil {
				return err
			}
			if h.n != 2*drivers.GiB || !bytes.Equal(h.head, hdr) {
				return fmt.Errorf("read %d bytes, want the guest's header and 2 GiB", h.n)
			}
			return nil
		}},
		{"create volume from snapshot", func() error {
			if _, err := d.CreateVolumeFromSnapshot(ctx, drivers.Volume{ID: chaintest.FromS3, SizeGB: 2}, snap); err != nil {
				return err
			}
			startsWith(t, filepath.Join(dir, "volume-"+chaintest.FromS3), hdr)
			return nil
		}},
		{"clone", func() error {
			if _, err := d.CreateClonedVolume(ctx, drivers.Volume{ID: chaintest.Clone, SizeGB: 2}, v); err != nil {
				return err
			}
			startsWith(t, filepath.Join(dir, "volume-"+chaintest.Clone), hdr)
			return nil
		}},
		{"write under the snapshot", func() error { return d.WriteVolume(ctx, v, bytes.NewReader(hdr)) }},
		{"delete snapshot", func() error { return d.DeleteSnapshot(ctx, snap) }},
		{"delete volumes", func() error {
			for _, id := range []string{vid, chaintest.FromS3, chaintest.Clone} {
				if err := d.DeleteVolume(ctx, drivers.Volume{ID: id, ProviderLocation: dir}); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if n := hits.Load(); n != 0 {
			t.Fatalf("%s: the server received %d requests", s.name, n)
		}
	}
	probedReachesServer(t, hdr, hits)
}

// probedReachesServer is the control: qemu-img left to probe such a file,
// as Ember did before formats were pinned, does reach the server, so the
// zero counts above mean something.
func probedReachesServer(t *testing.T, hdr []byte, hits *atomic.Int64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probed")
	if err := os.WriteFile(p, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("qemu-img", "info", "--output=json", "--backing-chain", p).Run()
	if hits.Load() == 0 {
		t.Fatal("control: qemu-img probing the header did not reach the server; the test proves nothing")
	}
}

// dropBackingFormat turns the qcow2 header extension that records the
// backing file's format (magic 0xe2792aca) into an unknown one, which qemu
// ignores.
func dropBackingFormat(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 4096)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(hdr, []byte{0xe2, 0x79, 0x2a, 0xca})
	if i < 0 {
		t.Fatal("no backing format extension in the header")
	}
	if _, err := f.WriteAt([]byte{0, 0, 0xab, 0xcd}, int64(i)); err != nil {
		t.Fatal(err)
	}
}

// Files Ember made as qcow2 have headers no guest can write; one that
// names a URL anyway (tampering on the storage host) stops every
// operation on the volume with a clear error, before qemu-img opens it.
func TestTamperedQcow2ChainRefused(t *testing.T) {
	backing, hits := metadataServer(t)
	u, err := url.Parse(backing)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string) // rewrites a header to name backing
	}{
		{"base names a URL", func(t *testing.T, dir string) {
			qemuImgRun(t, "rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", backing, filepath.Join(dir, "volume-"+vid))
		}},
		{"overlay names a URL", func(t *testing.T, dir string) {
			qemuImgRun(t, "rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", backing, filepath.Join(dir, "volume-"+vid+"."+chaintest.Snap1))
		}},
		{"overlay names the base without a format", func(t *testing.T, dir string) {
			// qemu-img would then probe the base, whose content a guest
			// wrote: refused as well. qemu-img no longer writes such a
			// header, so the backing format extension is renamed to one
			// qemu skips.
			dropBackingFormat(t, filepath.Join(dir, "volume-"+vid+"."+chaintest.Snap1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dir := openHostile(t, "qcow2")
			ctx := context.Background()
			v := drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: dir}
			snap := drivers.Snapshot{ID: chaintest.Snap1, VolumeID: vid, VolumeSizeGB: 1, ProviderLocation: dir}
			if _, err := d.CreateVolume(ctx, v); err != nil {
				t.Fatal(err)
			}
			if _, err := d.CreateSnapshot(ctx, snap); err != nil {
				t.Fatal(err)
			}
			tc.tamper(t, dir)
			conn := drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:ember-test"}
			for _, op := range []struct {
				name string
				run  func() error
			}{
				{"read", func() error { return d.ReadVolume(ctx, v, &headWriter{}) }},
				{"write", func() error { return d.WriteVolume(ctx, v, strings.NewReader("data")) }},
				{"extend", func() error { return d.ExtendVolume(ctx, v, 2) }},
				{"create snapshot", func() error {
					_, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: chaintest.Snap2, VolumeID: vid, ProviderLocation: dir})
					return err
				}},
				{"create volume from snapshot", func() error {
					_, err := d.CreateVolumeFromSnapshot(ctx, drivers.Volume{ID: chaintest.FromS3, SizeGB: 1}, snap)
					return err
				}},
				{"clone", func() error {
					_, err := d.CreateClonedVolume(ctx, drivers.Volume{ID: chaintest.Clone, SizeGB: 1}, v)
					return err
				}},
				{"attach", func() error {
					if tgtd == nil {
						return drivers.Errorf(drivers.KindBackend, "", "-short: skipped")
					}
					_, err := d.InitializeConnection(ctx, v, attachA, conn)
					return err
				}},
				{"delete snapshot", func() error { return d.DeleteSnapshot(ctx, snap) }},
			} {
				err := op.run()
				t.Logf("%s: %v", op.name, err)
				if !drivers.IsKind(err, drivers.KindBackend) {
					t.Errorf("%s: want a backend_error, got %v", op.name, err)
				} else if msg := err.Error(); strings.Contains(msg, u.Host) || strings.Contains(msg, "://") {
					t.Errorf("%s: the error names the URL: %s", op.name, msg)
				}
				if n := hits.Load(); n != 0 {
					t.Fatalf("%s: the server received %d requests", op.name, n)
				}
			}
			// Delete asks for the snapshots first; purge removes it all.
			if err := d.DeleteVolume(ctx, v); !drivers.IsKind(err, drivers.KindBusy) {
				t.Errorf("delete: want volume_busy, got %v", err)
			}
			if err := d.PurgeVolume(ctx, v); err != nil {
				t.Errorf("purge: %v", err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "volume-*")); len(left) != 0 {
				t.Errorf("files left: %v", left)
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("the server received %d requests", n)
			}
		})
	}
}
