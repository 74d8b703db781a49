package tgt

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"

	"github.com/ember-storage/ember/drivers/tgt/tgttest"
)

// These tests run against the real tgtd that TestMain started, and read the
// exported LUN from the initiator side with libiscsi and qemu's iSCSI client,
// as an attaching host would.

func realTarget(t *testing.T) *Target {
	t.Helper()
	if tgtd == nil {
		t.Skip("-short: no tgtd")
	}
	tg, err := New(Config{
		Executor:    drivers.LocalExecutor{DefaultTimeout: 30 * time.Second},
		VolumesDir:  filepath.Join(t.TempDir(), "volumes"),
		Portal:      tgtd.Portal,
		ControlPort: tgtd.ControlPort,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// volumeFile makes a 16 MiB raw volume with a random marker at an odd
// offset, so that reading it back proves the right bytes at the right place.
func volumeFile(t *testing.T) (string, []byte) {
	t.Helper()
	content := make([]byte, 16<<20)
	marker := []byte("ember-tgt-" + rand.Text())
	copy(content[5<<20+123:], marker)
	p := filepath.Join(t.TempDir(), "volume.raw")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, content
}

func lunURL(e Export, user, pass string) string {
	return tgttest.LUNURL(e.Portal, e.IQN, e.LUN, user, pass)
}

func TestExportCHAPServesTheVolume(t *testing.T) {
	tg := realTarget(t)
	ctx := context.Background()
	id := "0c3a7f2e-5b1d-4e8a-9f60-2d7c1b9e4a51"
	dev, content := volumeFile(t)
	chap := NewCHAP()

	e, err := tg.Export(ctx, id, dev, &chap)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	wantIQN := "iqn.2010-10.org.openstack:volume-" + id
	if e.IQN != wantIQN || e.Portal != tgtd.Portal || e.LUN != 1 || e.AuthMethod != "CHAP" || e.CHAP == nil || *e.CHAP != chap {
		t.Fatalf("Export = %#v, want %s on %s LUN 1 with CHAP %s", e, wantIQN, tgtd.Portal, chap.Username)
	}
	if !strings.Contains(tgtd.Show(t, "target"), "Target "+strconv.Itoa(e.TID)+": "+wantIQN) {
		t.Fatalf("tgtadm does not list %s as tid %d", wantIQN, e.TID)
	}

	// The persistent file is Cinder's stanza, readable by root alone.
	file := filepath.Join(tg.cfg.VolumesDir, "volume-"+id)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("target file mode %v, want 0600: it holds the CHAP secret", st.Mode().Perm())
	}
	text, _ := os.ReadFile(file)
	for _, line := range []string{"<target " + wantIQN + ">", "backing-store " + dev, "driver iscsi",
		"incominguser " + chap.Username + " " + chap.Password, "write-cache on", "</target>"} {
		if !strings.Contains(string(text), line) {
			t.Errorf("target file lacks %q:\n%s", line, text)
		}
	}

	url := lunURL(e, chap.Username, chap.Password)
	t.Run("initiator reads size and bytes", func(t *testing.T) {
		out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url)
		if err != nil || !strings.Contains(out, "Total size:"+strconv.Itoa(len(content))) {
			t.Fatalf("iscsi-readcapacity16: %v\n%s", err, out)
		}
		got := filepath.Join(t.TempDir(), "read.raw")
		if out, err := tgttest.Initiator(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", url, got); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		b, err := os.ReadFile(got)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, content) {
			t.Fatalf("bytes read over iSCSI differ from the volume's (%d vs %d bytes)", len(b), len(content))
		}
	})

	t.Run("wrong or no password is refused", func(t *testing.T) {
		for _, u := range []string{lunURL(e, chap.Username, "WRONGPASSWORDWRONG"), lunURL(e, "", "")} {
			out, err := tgttest.Initiator(t, "iscsi-readcapacity16", u)
			if err == nil || !strings.Contains(out, "Authentication failure") {
				t.Errorf("login to %s: err %v, want an authentication failure\n%s", strings.Replace(u, chap.Password, "…", 1), err, out)
			}
		}
	})

	t.Run("re-export returns the same target and credentials", func(t *testing.T) {
		other := NewCHAP()
		again, err := tg.Export(ctx, id, dev, &other)
		if err != nil {
			t.Fatalf("second Export: %v", err)
		}
		if again.IQN != e.IQN || again.TID != e.TID || again.CHAP == nil || *again.CHAP != chap {
			t.Fatalf("second Export = %#v, want %#v", again, e)
		}
		if out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url); err != nil {
			t.Fatalf("first credentials stopped working after re-export: %v\n%s", err, out)
		}
	})

	t.Run("remove takes target, account and file away", func(t *testing.T) {
		if err := tg.Remove(ctx, id); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if strings.Contains(tgtd.Show(t, "target"), wantIQN) {
			t.Errorf("tgtadm still lists %s", wantIQN)
		}
		if strings.Contains(tgtd.Show(t, "account"), chap.Username) {
			t.Errorf("tgtd still has account %s", chap.Username)
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("target file still there: %v", err)
		}
		if out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url); err == nil {
			t.Errorf("initiator still logs in after Remove:\n%s", out)
		}
		if err := tg.Remove(ctx, id); err != nil {
			t.Errorf("second Remove: %v, want success for what is gone", err)
		}
	})
}

func TestExportWithoutCHAP(t *testing.T) {
	tg := realTarget(t)
	ctx := context.Background()
	id := "5e0d8c41-7a2b-4f3c-8d9e-0a1b2c3d4e5f"
	dev, content := volumeFile(t)
	e, err := tg.Export(ctx, id, dev, nil)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	t.Cleanup(func() { _ = tg.Remove(ctx, id) })
	if e.AuthMethod != "" || e.CHAP != nil {
		t.Errorf("Export without CHAP = %#v", e)
	}
	out, err := tgttest.Initiator(t, "iscsi-readcapacity16", lunURL(e, "", ""))
	if err != nil || !strings.Contains(out, "Total size:"+strconv.Itoa(len(content))) {
		t.Fatalf("iscsi-readcapacity16 without auth: %v\n%s", err, out)
	}
}

// tgt-admin creates a target and exits 0 when the backing store is missing;
// Export must say so and leave nothing behind.
func TestExportMissingDeviceFailsClean(t *testing.T) {
	tg := realTarget(t)
	ctx := context.Background()
	id := "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	chap := NewCHAP()
	_, err := tg.Export(ctx, id, filepath.Join(t.TempDir(), "no-such-volume"), &chap)
	if err == nil {
		t.Fatal("Export of a missing device succeeded")
	}
	for _, want := range []string{"volume-" + id, "no LUN 1", "tgtadm", "exit 22", "invalid request"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(tgtd.Show(t, "target"), id) {
		t.Error("a target without LUN stayed behind")
	}
	if strings.Contains(tgtd.Show(t, "account"), chap.Username) {
		t.Error("its account stayed behind")
	}
	if _, err := os.Stat(filepath.Join(tg.cfg.VolumesDir, "volume-"+id)); !os.IsNotExist(err) {
		t.Errorf("target file stayed behind: %v", err)
	}
}
