package lvm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
	"github.com/ember-storage/ember/drivers/tgt"
)

// Attach and detach through tgt, as transcripts: tgtadm's and tgt-admin's
// output is tgt 1.0.85's (as in drivers/tgt's transcripts). The real
// volume group of these tests has activation off, so no LV device exists
// for a real tgtd to serve; drivers/file exports a real file through a
// real tgtd instead.

const (
	tIQN     = "iqn.2010-10.org.openstack:volume-" + vid
	tDev     = "/dev/cinder-volumes/volume-" + vid
	tVolsDir = "/srv/ember/targets"
	tFile    = tVolsDir + "/volume-" + vid
	tTmp     = tVolsDir + "/.volume-" + vid + ".tmp"
	tPortal  = "192.0.2.10:3260"
	// tgtdC is the argv prefix of tgtadm and tgt-admin with tgt_control_port 7.
	tgtdC = " -C 7 "
)

var attachOpts = map[string]any{
	"target_portal": tPortal, "volumes_dir": tVolsDir, "tgt_control_port": 7, "use_chap_auth": true,
}

// chapSeen stands between the driver and a transcript: it keeps the target
// file the driver writes (tee's stdin) and puts the CHAP username it holds
// where the transcript's tgtadm output says CHAPUSER, since the driver
// generates a fresh account that no transcript can know in advance.
type chapSeen struct {
	ex     drivers.Executor
	mu     sync.Mutex
	stanza string
}

var incomingRE = regexp.MustCompile(`incominguser (\S+) (\S+)`)

func (s *chapSeen) Run(ctx context.Context, c drivers.Command) (drivers.Output, error) {
	if c.Args[0] == "tee" && c.Stdin != nil {
		b, _ := io.ReadAll(c.Stdin)
		s.mu.Lock()
		s.stanza = string(b)
		s.mu.Unlock()
		c.Stdin = bytes.NewReader(b)
	}
	out, err := s.ex.Run(ctx, c)
	if user, _ := s.chap(); user != "" {
		out.Stdout = bytes.ReplaceAll(out.Stdout, []byte("CHAPUSER"), []byte(user))
	}
	return out, err
}

func (s *chapSeen) chap() (user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := incomingRE.FindStringSubmatch(s.stanza); m != nil {
		return m[1], m[2]
	}
	return "", ""
}

func openAttach(t *testing.T, opts map[string]any, steps ...exectest.Step) (*Driver, *chapSeen) {
	t.Helper()
	tr := exectest.New(t, steps...).RequireEnv("LC_ALL=C")
	seen := &chapSeen{ex: tr}
	d, err := New(drivers.Backend{Name: "lvm-1", Driver: "lvm", Options: opts}, seen)
	if err != nil {
		t.Fatal(err)
	}
	return d, seen
}

// tgtStep is a tgtadm or tgt-admin command with the control port.
func tgtStep(prog, args, stdout string) exectest.Step {
	return step(prog+tgtdC+args, stdout)
}

func showCmd(stdout string) exectest.Step {
	return tgtStep("tgtadm", "--lld iscsi --op show --mode target", stdout)
}

// liveTarget is tgtadm's listing of the volume's target serving dev as
// LUN 1, with account bound unless it is "".
func liveTarget(dev, account string) string {
	s := `Target 1: ` + tIQN + `
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            Backing store type: null
            Backing store path: None
            Backing store flags: 
        LUN: 1
            Type: disk
            Size: 1074 MB, Block size: 512
            Backing store type: rdwr
            Backing store path: ` + dev + `
            Backing store flags: 
    Account information:
`
	if account != "" {
		s += "        " + account + "\n"
	}
	return s + "    ACL information:\n        ALL\n"
}

func exportSteps(dev, account string) []exectest.Step {
	return []exectest.Step{
		fail("cat "+tFile, 1, "cat: "+tFile+": No such file or directory\n"),
		step("mkdir -p "+tVolsDir, ""),
		step("install -m 0600 /dev/null "+tTmp, ""),
		step("tee "+tTmp, ""),
		step("mv -fT "+tTmp+" "+tFile, ""),
		tgtStep("tgt-admin", "-c "+tFile+" --update "+tIQN, ""),
		showCmd(liveTarget(dev, account)),
	}
}

func TestInitializeConnectionExportsLVWithCHAP(t *testing.T) {
	pub, priv, err := tgt.GenerateSealKey()
	if err != nil {
		t.Fatal(err)
	}
	d, seen := openAttach(t, attachOpts, append([]exectest.Step{lookup("volume-"+vid, vol1G)},
		exportSteps(tDev, "CHAPUSER")...)...)
	info, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1},
		"a0000000-0000-4000-8000-000000000001", drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:c1", PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := seen.chap()
	if user == "" || !strings.Contains(seen.stanza, "backing-store "+tDev+"\n") || !strings.Contains(seen.stanza, "<target "+tIQN+">") {
		t.Fatalf("target file written:\n%s", seen.stanza)
	}
	want := map[string]any{
		"target_discovered": false, "target_iqn": tIQN, "target_portal": tPortal, "target_lun": 1,
		"volume_id": vid, "auth_method": "CHAP", "auth_username": user, "auth_password_seal": tgt.SealScheme,
	}
	if info.DriverVolumeType != "iscsi" {
		t.Errorf("driver_volume_type %q, want iscsi", info.DriverVolumeType)
	}
	for k, v := range want {
		if info.Data[k] != v {
			t.Errorf("data[%s] = %#v, want %#v", k, info.Data[k], v)
		}
	}
	sealed, _ := info.Data["auth_password_sealed"].(string)
	if got, err := tgt.OpenSealed(priv, sealed); err != nil || got != pass {
		t.Errorf("sealed password opens to %q, %v; want the target file's", got, err)
	}
	if b, _ := json.Marshal(info); bytes.Contains(b, []byte(pass)) {
		t.Errorf("connection_info holds the password in plain text: %s", b)
	}
}

// A second attachment (or a redelivered attach) finds the target file and
// hands out the credentials in force; without a key the password is left out.
func TestInitializeConnectionAgainKeepsCredentials(t *testing.T) {
	const user, pass = "QZJBISG9AL954FNF4DXY", "P68EE7U9EFQDGEXD28DQABCDEF"
	stanza := "<target " + tIQN + ">\n    backing-store " + tDev + "\n    driver iscsi\n    incominguser " + user + " " + pass + "\n    write-cache on\n</target>\n"
	d, _ := openAttach(t, attachOpts,
		lookup("volume-"+vid, vol1G),
		step("cat "+tFile, stanza),
		tgtStep("tgt-admin", "-c "+tFile+" --update "+tIQN, ""),
		showCmd(liveTarget(tDev, user)),
	)
	info, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1},
		"a0000000-0000-4000-8000-000000000002", drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:c2"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Data["auth_username"] != user || info.Data["target_iqn"] != tIQN {
		t.Errorf("connection_info %v, want the target file's account %s", info.Data, user)
	}
	if _, ok := info.Data["auth_password_sealed"]; ok {
		t.Error("a password without a key to seal it to")
	}
	if b, _ := json.Marshal(info); bytes.Contains(b, []byte(pass)) {
		t.Errorf("connection_info holds the password: %s", b)
	}
}

// An inactive LV has no device node; it is activated before the export.
// Without use_chap_auth the target has no account; default argv (no -C).
func TestInitializeConnectionActivatesInactiveLV(t *testing.T) {
	inactive := lvRowJSON("volume-"+vid, "1073741824", "Vwi---tz-k", "", "cinder-volumes-pool", "0.00", "")
	file := "/var/lib/ember/targets/volume-" + vid
	tmp := "/var/lib/ember/targets/.volume-" + vid + ".tmp"
	d, seen := openAttach(t, map[string]any{"lvm_type": "thin"},
		lookup("volume-"+vid, inactive),
		step("lvchange -a y --yes -K cinder-volumes/volume-"+vid, ""),
		fail("cat "+file, 1, "cat: "+file+": No such file or directory\n"),
		step("mkdir -p /var/lib/ember/targets", ""),
		step("install -m 0600 /dev/null "+tmp, ""),
		step("tee "+tmp, ""),
		step("mv -fT "+tmp+" "+file, ""),
		step("tgt-admin -c "+file+" --update "+tIQN, ""),
		step("tgtadm --lld iscsi --op show --mode target", liveTarget(tDev, "")),
	)
	info, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}, "", drivers.Connector{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(seen.stanza, "incominguser") {
		t.Errorf("CHAP without use_chap_auth:\n%s", seen.stanza)
	}
	if _, ok := info.Data["auth_method"]; ok || info.Data["target_portal"] != tgt.DefaultPortal {
		t.Errorf("connection_info %v", info.Data)
	}
}

func TestInitializeConnectionMissingLV(t *testing.T) {
	d, _ := openAttach(t, attachOpts, lookupNone("volume-"+vid))
	_, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}, "", drivers.Connector{})
	if !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("want not_found, got %v", err)
	}
}

// A key that cannot be sealed to is refused before anything is exported.
func TestInitializeConnectionBadKeyExportsNothing(t *testing.T) {
	d, _ := openAttach(t, attachOpts, lookup("volume-"+vid, vol1G))
	_, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}, "",
		drivers.Connector{PublicKey: "bm90IGEga2V5"})
	if !drivers.IsKind(err, drivers.KindInvalid) {
		t.Fatalf("want invalid, got %v", err)
	}
}

func TestTerminateConnectionRemovesTarget(t *testing.T) {
	const user = "QZJBISG9AL954FNF4DXY"
	stanza := "<target " + tIQN + ">\n    backing-store " + tDev + "\n    driver iscsi\n    incominguser " + user + " P68EE7U9EFQDGEXD28DQABCDEF\n    write-cache on\n</target>\n"
	d, _ := openAttach(t, attachOpts,
		step("cat "+tFile, stanza),
		showCmd(liveTarget(tDev, user)),
		tgtStep("tgt-admin", "--force --delete "+tIQN, ""),
		showCmd(""),
		tgtStep("tgtadm", "--lld iscsi --op delete --mode account --user "+user, ""),
		step("rm -f "+tFile, ""),
		// Again: the target is gone, and that is success.
		fail("cat "+tFile, 1, "cat: "+tFile+": No such file or directory\n"),
		showCmd(""),
	)
	for i := range 2 {
		if err := d.TerminateConnection(context.Background(), drivers.Volume{ID: vid}, "a0000000-0000-4000-8000-000000000001", drivers.Connector{}); err != nil {
			t.Fatalf("terminate #%d: %v", i+1, err)
		}
	}
}

func TestTargetHelperNone(t *testing.T) {
	d, _ := openAttach(t, map[string]any{"target_helper": "none"})
	ctx := context.Background()
	if _, err := d.InitializeConnection(ctx, drivers.Volume{ID: vid, SizeGB: 1}, "", drivers.Connector{}); !drivers.IsKind(err, drivers.KindNotSupported) {
		t.Errorf("attach: want not_supported, got %v", err)
	}
	if err := d.TerminateConnection(ctx, drivers.Volume{ID: vid}, "", drivers.Connector{}); !drivers.IsKind(err, drivers.KindNotSupported) {
		t.Errorf("detach: want not_supported, got %v", err)
	}
}

func TestAttachOptions(t *testing.T) {
	for _, opts := range []map[string]any{
		{"target_helper": "lioadm"},
		{"target_portal": "localhost:3260"},
		{"target_portal": "192.0.2.1"},
		{"volumes_dir": "relative/dir"},
		{"volumes_dir": "/with space"},
		{"tgt_control_port": -1},
		{"tgt_control_port": 40000},
		{"use_chap_auth": "yes"},
		{"iscsi_helper": "tgtadm"},
	} {
		if _, err := New(drivers.Backend{Name: "l", Driver: "lvm", Options: opts}, drivers.LocalExecutor{}); err == nil {
			t.Errorf("options %v: want an error", opts)
		}
	}
	for _, opts := range []map[string]any{attachOpts, {"target_helper": "tgt"}, {"target_helper": "none"}, {"target_portal": "[::1]:3260"}} {
		if _, err := New(drivers.Backend{Name: "l", Driver: "lvm", Options: opts}, drivers.LocalExecutor{}); err != nil {
			t.Errorf("options %v: %v", opts, err)
		}
	}
}
