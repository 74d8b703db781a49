package file

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/tgt"

	"github.com/ember-storage/ember/drivers/tgt/tgttest"
)

// Attach through the real tgtd that TestMain started, read from the
// initiator side with libiscsi and qemu's iSCSI client, as an attaching
// host would.

const (
	attachA = "a1111111-1111-4111-8111-111111111111"
	attachB = "b2222222-2222-4222-8222-222222222222"
	snapID  = "c3333333-3333-4333-8333-333333333333"
)

func openAttach(t *testing.T, format string) (*Driver, string) {
	t.Helper()
	if tgtd == nil {
		t.Skip("-short: no tgtd")
	}
	dir := t.TempDir()
	d, err := Open(drivers.Backend{Name: "t", Driver: "file", Options: map[string]any{
		"dir": dir, "format": format,
		"use_chap_auth": true, "target_portal": tgtd.Portal, "tgt_control_port": tgtd.ControlPort,
	}}, drivers.LocalExecutor{DefaultTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Driver), dir
}

func lunURL(info drivers.ConnectionInfo, user, pass string) string {
	return tgttest.LUNURL(info.Data["target_portal"].(string), info.Data["target_iqn"].(string), info.Data["target_lun"].(int), user, pass)
}

// credentials checks the CHAP part of info and opens the sealed password.
func credentials(t *testing.T, info drivers.ConnectionInfo, priv string) (user, pass string) {
	t.Helper()
	user, _ = info.Data["auth_username"].(string)
	sealed, _ := info.Data["auth_password_sealed"].(string)
	if info.Data["auth_method"] != "CHAP" || user == "" || sealed == "" || info.Data["auth_password_seal"] != tgt.SealScheme {
		t.Fatalf("connection_info has no sealed CHAP credentials: %v", info.Data)
	}
	pass, err := tgt.OpenSealed(priv, sealed)
	if err != nil {
		t.Fatalf("open sealed password: %v", err)
	}
	if b, _ := json.Marshal(info); bytes.Contains(b, []byte(pass)) {
		t.Fatalf("connection_info holds the password in plain text: %s", b)
	}
	return user, pass
}

func TestAttachRawVolumeOverISCSI(t *testing.T) {
	d, dir := openAttach(t, "raw")
	ctx := context.Background()
	v := drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: dir}
	if _, err := d.CreateVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	// Known bytes at odd offsets, the last ones in the final block, so
	// reading them back proves the right bytes at the right place.
	volFile := filepath.Join(dir, "volume-"+vid)
	f, err := os.OpenFile(volFile, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 5<<20 + 123, drivers.GiB - 100} {
		if _, err := f.WriteAt([]byte("ember-attach-"+rand.Text()), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	pub, priv, err := tgt.GenerateSealKey()
	if err != nil {
		t.Fatal(err)
	}
	conn := drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:ember-test", Host: "compute1", IP: "127.0.0.1", PublicKey: pub}
	info, err := d.InitializeConnection(ctx, v, attachA, conn)
	if err != nil {
		t.Fatalf("InitializeConnection: %v", err)
	}
	iqn := "iqn.2010-10.org.openstack:volume-" + vid
	if info.DriverVolumeType != "iscsi" || info.Data["target_iqn"] != iqn || info.Data["target_portal"] != tgtd.Portal || info.Data["target_lun"] != 1 {
		t.Fatalf("connection_info %+v", info)
	}
	user, pass := credentials(t, info, priv)
	if !strings.Contains(tgtd.Show(t, "target"), "Backing store path: "+volFile+"\n") {
		t.Fatalf("tgtd does not serve %s", volFile)
	}
	targetFile := filepath.Join(dir, "targets", "volume-"+vid)
	if st, err := os.Stat(targetFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("target file %s: %v %v, want mode 0600", targetFile, st, err)
	}
	url := lunURL(info, user, pass)

	t.Run("initiator reads the volume", func(t *testing.T) {
		out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url)
		if err != nil || !strings.Contains(out, "Total size:"+strconv.FormatInt(drivers.GiB, 10)) {
			t.Fatalf("iscsi-readcapacity16: %v\n%s", err, out)
		}
		// The whole LUN, copied out by qemu's iSCSI client, is the file:
		// the markers at their offsets, holes as zeros, nothing more.
		got := filepath.Join(t.TempDir(), "read.raw")
		if out, err := tgttest.Initiator(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", url, got); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		if st, err := os.Stat(got); err != nil || st.Size() != drivers.GiB {
			t.Fatalf("copy of the LUN: %v %v, want %d bytes", st, err, drivers.GiB)
		}
		if out, err := tgttest.Initiator(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", volFile, got); err != nil {
			t.Fatalf("qemu-img compare of the volume file and the LUN's bytes: %v\n%s", err, out)
		}
	})

	t.Run("initiator writes land in the file", func(t *testing.T) {
		if out, err := tgttest.Initiator(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 7M 64k", url); err != nil {
			t.Fatalf("qemu-io write: %v\n%s", err, out)
		}
		f, err := os.Open(volFile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 64<<10)
		if _, err := f.ReadAt(b, 7<<20); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, bytes.Repeat([]byte{0x5a}, 64<<10)) {
			t.Fatal("the write over iSCSI is not in the volume file")
		}
	})

	t.Run("wrong or no password is refused", func(t *testing.T) {
		for _, u := range []string{lunURL(info, user, "WRONGPASSWORDWRONG"), lunURL(info, "", "")} {
			out, err := tgttest.Initiator(t, "iscsi-readcapacity16", u)
			if err == nil || !strings.Contains(out, "Authentication failure") {
				t.Errorf("login to %s: err %v, want an authentication failure\n%s", strings.Replace(u, pass, "…", 1), err, out)
			}
		}
	})

	t.Run("another attachment gets the same target and credentials", func(t *testing.T) {
		pub2, priv2, err := tgt.GenerateSealKey()
		if err != nil {
			t.Fatal(err)
		}
		again, err := d.InitializeConnection(ctx, v, attachB, drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:other", PublicKey: pub2})
		if err != nil {
			t.Fatalf("second InitializeConnection: %v", err)
		}
		u2, p2 := credentials(t, again, priv2)
		if again.Data["target_iqn"] != iqn || u2 != user || p2 != pass {
			t.Fatalf("second attach got %v / %s, want the first target and credentials", again.Data, u2)
		}
		if out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url); err != nil {
			t.Fatalf("first credentials stopped working: %v\n%s", err, out)
		}
	})

	t.Run("terminate removes the target", func(t *testing.T) {
		if err := d.TerminateConnection(ctx, v, attachA, conn); err != nil {
			t.Fatalf("TerminateConnection: %v", err)
		}
		if strings.Contains(tgtd.Show(t, "target"), iqn) {
			t.Errorf("tgtadm still lists %s", iqn)
		}
		if strings.Contains(tgtd.Show(t, "account"), user) {
			t.Errorf("tgtd still has account %s", user)
		}
		if _, err := os.Stat(targetFile); !os.IsNotExist(err) {
			t.Errorf("target file still there: %v", err)
		}
		if out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url); err == nil {
			t.Errorf("initiator still logs in after TerminateConnection:\n%s", out)
		}
		if err := d.TerminateConnection(ctx, v, attachA, conn); err != nil {
			t.Errorf("second TerminateConnection: %v, want success for a target that is gone", err)
		}
		if _, err := os.Stat(volFile); err != nil {
			t.Errorf("the volume file went with the target: %v", err)
		}
	})
}

// A volume with a snapshot reads and writes a qcow2 overlay, which tgt
// would serve as raw bytes: nothing is exported, and the host is told the
// file to open (Cinder's remotefs connection_info).
func TestAttachSnapshottedVolumeIsLocalQcow2(t *testing.T) {
	d, dir := openAttach(t, "raw")
	ctx := context.Background()
	v := drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: dir}
	if _, err := d.CreateVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: snapID, VolumeID: vid, VolumeSizeGB: 1}); err != nil {
		t.Fatal(err)
	}
	info, err := d.InitializeConnection(ctx, v, attachA, drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:ember-test"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"export": dir, "name": "volume-" + vid + "." + snapID, "format": "qcow2", "options": ""}
	if info.DriverVolumeType != "local" || len(info.Data) != len(want) {
		t.Fatalf("connection_info %+v, want local %v", info, want)
	}
	for k, w := range want {
		if info.Data[k] != w {
			t.Errorf("data[%s] = %v, want %v", k, info.Data[k], w)
		}
	}
	if strings.Contains(tgtd.Show(t, "target"), vid) {
		t.Error("a target was made for a qcow2 volume")
	}
	if err := d.TerminateConnection(ctx, v, attachA, drivers.Connector{}); err != nil {
		t.Fatalf("TerminateConnection of a volume without target: %v", err)
	}
}
