package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/tgt"
	"github.com/ember-storage/ember/drivers/tgt/tgttest"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/internal/testenv"
)

// TestISCSIAttachThroughPipeline is issue #3's attach demonstration:
// `ember serve` with a raw file backend exporting through a real tgtd
// (drivers/tgt/tgttest) with CHAP. The requester puts an X25519 public key
// in its connector and opens the sealed CHAP password from
// volume.attach.end with its private key; libiscsi and qemu's iSCSI client
// then read the volume as an attaching host would, a wrong password is
// refused, and detach takes the target away.
func TestISCSIAttachThroughPipeline(t *testing.T) {
	needStorage(t, "tgtd")
	// Control ports 2000 + pid%4000: below drivers/tgt's (10000..) and
	// drivers/file's (30000..) daemons, which may run at the same time.
	tgtd := tgttest.Start(t, 2000+os.Getpid()%4000, "iscsi-readcapacity16", "iscsi-ls", "qemu-img", "qemu-io")
	dir := t.TempDir()
	s := newEmberStack(t, emberStackConfig{
		backends: fmt.Sprintf(`  - {name: iscsi-1, driver: file, host: local, options: {dir: %q, format: raw, target_helper: tgt, use_chap_auth: true, target_portal: %q, tgt_control_port: %d}}`,
			dir, tgtd.Portal, tgtd.ControlPort),
		// Debug, so that the check for the password in the log below
		// covers everything ember logs.
		env:   []string{"EMBER_LOG_LEVEL=debug"},
		types: []string{events.VolumeRequested, events.VolumeDeleted, events.VolumeAttachRequested, events.VolumeDetachRequested},
	})

	vol := uuid.NewString()
	r := s.do(events.VolumeRequested, createReq(vol, 1, "iscsi-1"), events.PhaseEnd)
	expectStatus(t, r, "available")
	volFile := filepath.Join(dir, "volume-"+vol)
	// Known bytes at the start, at 1 MiB and in the last 64 KiB, so that
	// reading them back over iSCSI proves the right bytes at the right place.
	writeStage(t, volFile, "raw", 0)
	lastOff := fmt.Sprintf("%d", drivers.GiB-64<<10)
	qemuIO(t, volFile, "raw", false, "write -P 0x5a "+lastOff+" 64k")

	pub, priv, err := tgt.GenerateSealKey()
	if err != nil {
		t.Fatal(err)
	}
	att := uuid.NewString()
	connector := map[string]any{"initiator": "iqn.1993-08.org.debian:01:compute1", "host": "compute1", "ip": "127.0.0.1", "public_key": pub}
	attachData := map[string]any{"volume_id": vol, "attachment_id": att, "connector": connector, "project_id": exampleProject}
	attachID := uuid.NewString()
	s.publish(events.VolumeAttachRequested, "/storage-e2e", attachID, attachData)
	r = s.wait(events.VolumeAttachRequested, attachID, events.PhaseEnd)
	expectStatus(t, r, "in-use")
	if r.Data.AttachmentID != att {
		t.Fatalf("volume.attach.end: attachment %q, want %q", r.Data.AttachmentID, att)
	}
	iqn := "iqn.2010-10.org.openstack:volume-" + vol
	ci := iscsiInfo(t, r)
	if ci.IQN != iqn || ci.Portal != tgtd.Portal || ci.LUN != 1 {
		t.Fatalf("volume.attach.end connection_info: %+v, want %s on %s LUN 1", ci, iqn, tgtd.Portal)
	}
	pass := ci.password(t, priv)
	if rec := s.record(vol); rec == nil || rec.Status != "in-use" || rec.Attachments[att] != "compute1" {
		t.Fatalf("registry after attach: %+v", rec)
	}
	targetFile := filepath.Join(dir, "targets", "volume-"+vol)
	if _, err := os.Stat(targetFile); err != nil {
		t.Fatalf("target file: %v", err)
	}
	url := ci.url(ci.User, pass)

	// The initiator reads the volume.
	out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url)
	if err != nil || !strings.Contains(out, "Total size:"+strconv.FormatInt(drivers.GiB, 10)) {
		t.Fatalf("iscsi-readcapacity16: %v\n%s", err, out)
	}
	// Discovery (SendTargets) needs no CHAP here; the login does.
	out, err = tgttest.Initiator(t, "iscsi-ls", "iscsi://"+ci.Portal)
	if err != nil || !strings.Contains(out, "Target:"+iqn+" Portal:"+ci.Portal) {
		t.Fatalf("iscsi-ls does not list %s: %v\n%s", iqn, err, out)
	}
	// Through qemu's iSCSI client: the markers at their offsets, then
	// the whole LUN against the file.
	qemuIO(t, url, "raw", true, "read -P 0x11 0 64k", fmt.Sprintf("read -P 0x11 %d 64k", oneMiB),
		fmt.Sprintf("read -P 0 %d 64k", 2*oneMiB), "read -P 0x5a "+lastOff+" 64k")
	sameBytes(t, volFile, "raw", url, "raw")

	// Wrong or no password is refused.
	for _, u := range []string{ci.url(ci.User, "WRONGPASSWORDWRONG"), ci.url("", "")} {
		out, err := tgttest.Initiator(t, "iscsi-readcapacity16", u)
		if err == nil || !strings.Contains(out, "Authentication failure") {
			t.Errorf("login to %s: err %v, want an authentication failure\n%s", strings.Replace(u, pass, "…", 1), err, out)
		}
	}

	// Attach again, a new request for the same attachment: the same
	// target and credentials, sealed anew.
	again := s.do(events.VolumeAttachRequested, attachData, events.PhaseEnd)
	expectStatus(t, again, "in-use")
	ci2 := iscsiInfo(t, again)
	if ci2.IQN != ci.IQN || ci2.Portal != ci.Portal || ci2.LUN != ci.LUN || ci2.User != ci.User {
		t.Fatalf("second attach: %+v, want %+v", ci2, ci)
	}
	if p2 := ci2.password(t, priv); p2 != pass {
		t.Fatal("second attach handed out another CHAP password than the target's")
	}
	// The same request delivered again: its stored result, the same
	// event with the same bytes.
	s.publish(events.VolumeAttachRequested, "/storage-e2e", attachID, attachData)
	ends := s.results.Wait(t, events.ResultType(events.VolumeAttachRequested, events.PhaseEnd), attachID, 2)
	if ends[1].ID != ends[0].ID || string(ends[1].Value) != string(ends[0].Value) {
		t.Fatalf("redelivered attach answered %s %s, want the first answer %s %s", ends[1].ID, ends[1].Value, ends[0].ID, ends[0].Value)
	}
	if out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url); err != nil {
		t.Fatalf("the credentials stopped working after the second attach: %v\n%s", err, out)
	}

	// Detach removes the target, its account and its file.
	d := s.do(events.VolumeDetachRequested, map[string]any{"volume_id": vol, "attachment_id": att, "connector": connector}, events.PhaseEnd)
	expectStatus(t, d, "available")
	if rec := s.record(vol); rec == nil || rec.Status != "available" || len(rec.Attachments) != 0 {
		t.Fatalf("registry after detach: %+v", rec)
	}
	for _, mode := range []string{"target", "account"} {
		out := tgtd.Show(t, mode)
		if strings.Contains(string(out), iqn) || strings.Contains(string(out), ci.User) {
			t.Errorf("tgtadm show %s after detach still lists the target or its account:\n%s", mode, out)
		}
	}
	// iscsi-ls exits 10 with this message when the portal has no
	// target at all (libiscsi 1.19, seen here); tgtadm above shows
	// tgtd still answers.
	out, err = tgttest.Initiator(t, "iscsi-ls", "iscsi://"+ci.Portal)
	if strings.Contains(out, "Target:") || err != nil && !strings.Contains(out, "Can not reconnect right now") {
		t.Errorf("iscsi-ls after detach: %v, want no target\n%s", err, out)
	}
	if _, err := os.Stat(targetFile); !os.IsNotExist(err) {
		t.Errorf("target file after detach: %v, want it removed", err)
	}
	if out, err := tgttest.Initiator(t, "iscsi-readcapacity16", url); err == nil {
		t.Errorf("the initiator still logs in after detach:\n%s", out)
	}
	if _, err := os.Stat(volFile); err != nil {
		t.Errorf("the volume file went with the target: %v", err)
	}

	r = s.do(events.VolumeDeleted, map[string]any{"volume_id": vol}, events.PhaseEnd)
	expectStatus(t, r, "deleted")
	if _, err := os.Stat(volFile); !os.IsNotExist(err) {
		t.Errorf("volume file after delete: %v", err)
	}

	// The password never left the storage host in plain text: not in any
	// record of any result topic, not in the registry, not in ember's log.
	var records strings.Builder
	for _, typ := range []string{events.VolumeAttachRequested, events.VolumeDetachRequested} {
		for _, topic := range append(events.ResultTypes(typ), typ+".dlq") {
			for _, res := range s.results.Of(topic, "") {
				fmt.Fprintf(&records, "%s %v %s\n", topic, res.Headers, res.Value)
			}
		}
	}
	if !strings.Contains(records.String(), ci.Sealed) {
		t.Fatalf("the attach records read back do not hold its sealed password:\n%s", records.String())
	}
	s.ember.stop(t)
	for where, text := range map[string]string{"result records": records.String(), "registry": redisDump(t, s), "ember log": s.ember.stderr.String()} {
		if strings.Contains(text, pass) {
			t.Errorf("the CHAP password appears in plain text in the %s", where)
		}
	}
}

// iscsiConnection is the iSCSI connection_info of a volume.attach.end as a
// requester reads it from the event's JSON.
type iscsiConnection struct {
	IQN, Portal  string
	LUN          int
	User, Sealed string
}

// iscsiInfo reads r's connection_info, which must be iSCSI with sealed CHAP
// credentials and nothing else secret.
func iscsiInfo(t *testing.T, r testenv.Result) iscsiConnection {
	t.Helper()
	var ev struct {
		ConnectionInfo struct {
			DriverVolumeType string `json:"driver_volume_type"`
			Data             struct {
				IQN        string `json:"target_iqn"`
				Portal     string `json:"target_portal"`
				LUN        int    `json:"target_lun"`
				AuthMethod string `json:"auth_method"`
				User       string `json:"auth_username"`
				Password   string `json:"auth_password"`
				Sealed     string `json:"auth_password_sealed"`
				Seal       string `json:"auth_password_seal"`
			} `json:"data"`
		} `json:"connection_info"`
	}
	if err := json.Unmarshal(r.Value, &ev); err != nil {
		t.Fatalf("%s: %v: %s", r.Type, err, r.Value)
	}
	ci, d := ev.ConnectionInfo, ev.ConnectionInfo.Data
	if ci.DriverVolumeType != "iscsi" || d.AuthMethod != "CHAP" || d.User == "" || d.Sealed == "" || d.Seal != tgt.SealScheme || d.Password != "" {
		t.Fatalf("%s: want iscsi connection_info with sealed CHAP credentials only, got %s", r.Type, r.Value)
	}
	return iscsiConnection{IQN: d.IQN, Portal: d.Portal, LUN: d.LUN, User: d.User, Sealed: d.Sealed}
}

// password opens the sealed CHAP password with the requester's private key.
func (c iscsiConnection) password(t *testing.T, priv string) string {
	t.Helper()
	p, err := tgt.OpenSealed(priv, c.Sealed)
	if err != nil {
		t.Fatalf("open the sealed CHAP password: %v", err)
	}
	return p
}

// url is libiscsi's and qemu's address of the LUN, with CHAP credentials
// unless user is empty.
func (c iscsiConnection) url(user, pass string) string {
	return tgttest.LUNURL(c.Portal, c.IQN, c.LUN, user, pass)
}

// redisDump is every value under the stack's key prefix, as text. JSON
// strings that are base64 (the stored results' record values) are added
// decoded, so that a secret inside them shows.
func redisDump(t *testing.T, s *emberStack) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	iter := s.rdb.Scan(ctx, 0, s.keyPrefix+":*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		typ, err := s.rdb.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var val any
		switch typ {
		case "string":
			val, err = s.rdb.Get(ctx, key).Result()
		case "hash":
			val, err = s.rdb.HGetAll(ctx, key).Result()
		case "list":
			val, err = s.rdb.LRange(ctx, key, 0, -1).Result()
		case "set":
			val, err = s.rdb.SMembers(ctx, key).Result()
		case "zset":
			val, err = s.rdb.ZRange(ctx, key, 0, -1).Result()
		case "none": // expired since the scan
		default:
			t.Fatalf("redis key %s of type %s: not read", key, typ)
		}
		if err != nil {
			t.Fatalf("redis %s %s: %v", typ, key, err)
		}
		fmt.Fprintf(&b, "%s %s %v\n", typ, key, val)
		if text, ok := val.(string); ok {
			var doc any
			if json.Unmarshal([]byte(text), &doc) == nil {
				writeDecoded(&b, doc)
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if b.Len() == 0 {
		t.Fatalf("no redis keys under %s:", s.keyPrefix)
	}
	return b.String()
}

// writeDecoded writes the base64 strings of a JSON document decoded.
func writeDecoded(b *strings.Builder, doc any) {
	switch v := doc.(type) {
	case map[string]any:
		for _, e := range v {
			writeDecoded(b, e)
		}
	case []any:
		for _, e := range v {
			writeDecoded(b, e)
		}
	case string:
		if raw, err := base64.StdEncoding.DecodeString(v); err == nil {
			b.Write(raw)
			b.WriteByte('\n')
		}
	}
}
