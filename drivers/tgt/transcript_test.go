package tgt

import (
	"context"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
)

// Transcript tests: the failure paths a healthy tgtd does not take on its
// own. Output follows tgt 1.0.85's tgtadm and tgt-admin as seen on this
// machine (tgt-admin prints "Command: … exited with code: N." on stdout and
// passes tgtadm's stderr and exit code through). Argv is Cinder's: no
// control port configured.

const (
	vid     = "83c2e877-feed-46be-8435-77884fe55b45"
	iqn     = "iqn.2010-10.org.openstack:volume-" + vid
	dev     = "/dev/cinder-volumes/volume-" + vid
	volsDir = "/var/lib/ember/volumes"
	file    = volsDir + "/volume-" + vid
	tmpFile = volsDir + "/.volume-" + vid + ".tmp"
)

var testCHAP = CHAP{Username: "QZJBISG9AL954FNF4DXY", Password: "P68EE7U9EFQDGEXD28DQABCDEF"}

func transcriptTarget(t *testing.T, script string) (*Target, *exectest.Transcript) {
	t.Helper()
	tr := exectest.New(t, exectest.Parse(script)...)
	tg, err := New(Config{Executor: tr, VolumesDir: volsDir})
	if err != nil {
		t.Fatal(err)
	}
	return tg, tr
}

const noFile = `
$ cat ` + file + `
! cat: ` + file + `: No such file or directory
? 1
`

const writeFile = `
$ mkdir -p ` + volsDir + `
$ install -m 0600 /dev/null ` + tmpFile + `
$ tee ` + tmpFile + `
$ mv -fT ` + tmpFile + ` ` + file + `
`

const stanza = `<target ` + iqn + `>
    backing-store ` + dev + `
    driver iscsi
    incominguser QZJBISG9AL954FNF4DXY P68EE7U9EFQDGEXD28DQABCDEF
    write-cache on
</target>
`

// showTarget is tgtadm's listing of the exported target; lun1 and account
// are left out by passing "".
func showTarget(tid, lun1Path, account string) string {
	s := `Target ` + tid + `: ` + iqn + `
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
`
	if lun1Path != "" {
		s += `        LUN: 1
            Type: disk
            Size: 1074 MB, Block size: 512
            Backing store type: rdwr
            Backing store path: ` + lun1Path + `
            Backing store flags: 
`
	}
	s += "    Account information:\n"
	if account != "" {
		s += "        " + account + "\n"
	}
	return s + "    ACL information:\n        ALL\n"
}

func TestExportUpdateFailureKeepsCommandAndCleansUp(t *testing.T) {
	tg, tr := transcriptTarget(t, noFile+writeFile+`
$ tgt-admin -c `+file+` --update `+iqn+`
Command:
	tgtadm -C 0 --lld iscsi --op new --mode target --tid 1 -T `+iqn+`
exited with code: 107.
! tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected
? 107
$ rm -f `+file)
	c := testCHAP
	_, err := tg.Export(context.Background(), vid, dev, &c)
	if err == nil {
		t.Fatal("Export succeeded with tgtd down")
	}
	if !drivers.IsKind(err, drivers.KindUnavailable) {
		t.Errorf("kind %s, want unavailable (retryable): %v", drivers.KindOf(err), err)
	}
	for _, want := range []string{"tgt-admin -c " + file + " --update " + iqn, "exit 107", "Transport endpoint is not connected"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if got := string(tr.Stdin[3]); got != stanza {
		t.Errorf("tee wrote:\n%s\nwant:\n%s", got, stanza)
	}
}

func TestExportTargetMissingAfterUpdate(t *testing.T) {
	tg, _ := transcriptTarget(t, noFile+writeFile+`
$ tgt-admin -c `+file+` --update `+iqn+`
$ tgtadm --lld iscsi --op show --mode target
`)
	c := testCHAP
	_, err := tg.Export(context.Background(), vid, dev, &c)
	if err == nil || !drivers.IsKind(err, drivers.KindBackend) || !strings.Contains(err.Error(), "lists no such target") {
		t.Fatalf("Export = %v, want a backend error saying tgtd lists no such target", err)
	}
	if strings.Contains(err.Error(), testCHAP.Password) {
		t.Errorf("error leaks the CHAP password: %v", err)
	}
}

func TestExportRecreatesMissingLUN(t *testing.T) {
	tg, _ := transcriptTarget(t, noFile+writeFile+`
$ tgt-admin -c `+file+` --update `+iqn+`
$ tgtadm --lld iscsi --op show --mode target
`+(showTarget("3", "", testCHAP.Username))+`
$ tgtadm --lld iscsi --op new --mode logicalunit --tid 3 --lun 1 -b `+dev+`
$ tgtadm --lld iscsi --op show --mode target
`+(showTarget("3", dev, testCHAP.Username)))
	c := testCHAP
	e, err := tg.Export(context.Background(), vid, dev, &c)
	if err != nil {
		t.Fatal(err)
	}
	if e.TID != 3 || e.LUN != 1 || e.IQN != iqn {
		t.Errorf("Export = %#v", e)
	}
}

func TestExportAgainKeepsCredentialsInForce(t *testing.T) {
	tg, _ := transcriptTarget(t, `
$ cat `+file+`
`+stanza+`$ tgt-admin -c `+file+` --update `+iqn+`
$ tgtadm --lld iscsi --op show --mode target
`+(showTarget("1", dev, testCHAP.Username)))
	other := CHAP{Username: "ANOTHERUSERNAME00000", Password: "ANOTHERPASSWORD0000000000"}
	e, err := tg.Export(context.Background(), vid, dev, &other)
	if err != nil {
		t.Fatal(err)
	}
	if e.CHAP == nil || *e.CHAP != testCHAP || e.TID != 1 {
		t.Errorf("Export = %#v, want the credentials of the target file", e)
	}
}

func TestExportInUseWithOtherDeviceIsConflict(t *testing.T) {
	live := strings.Replace(showTarget("1", "/dev/other-vg/volume-"+vid, testCHAP.Username),
		"    I_T nexus information:\n", "    I_T nexus information:\n        I_T nexus: 1\n            Initiator: iqn.1993-08.org.debian:01:abc alias: compute1\n", 1)
	tg, _ := transcriptTarget(t, `
$ cat `+file+`
`+(strings.Replace(stanza, dev, "/dev/other-vg/volume-"+vid, 1))+writeFile+`
$ tgt-admin -c `+file+` --update `+iqn+`
# Target with tid 1 is in use, it won't be updated.
$ tgtadm --lld iscsi --op show --mode target
`+(live))
	c := testCHAP
	_, err := tg.Export(context.Background(), vid, dev, &c)
	if !drivers.IsKind(err, drivers.KindConflict) || !strings.Contains(err.Error(), "1 sessions") {
		t.Fatalf("Export = %v, want a conflict naming the session", err)
	}
}

func TestRemoveFallsBackToTgtadm(t *testing.T) {
	// tgt's silent failure of --force (Cinder bug 1305343): the target is still listed.
	tg, _ := transcriptTarget(t, `
$ cat `+file+`
`+stanza+`$ tgtadm --lld iscsi --op show --mode target
`+(showTarget("1", dev, testCHAP.Username))+`
$ tgt-admin --force --delete `+iqn+`
$ tgtadm --lld iscsi --op show --mode target
`+(showTarget("1", dev, testCHAP.Username))+`
$ tgtadm --lld iscsi --op delete --force --mode target --tid 1
$ tgtadm --lld iscsi --op show --mode target
$ tgtadm --lld iscsi --op delete --mode account --user `+testCHAP.Username+`
$ rm -f `+file)
	if err := tg.Remove(context.Background(), vid); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveTargetThatWillNotGo(t *testing.T) {
	tg, _ := transcriptTarget(t, noFile+`
$ tgtadm --lld iscsi --op show --mode target
`+(showTarget("1", dev, ""))+`
$ tgt-admin --force --delete `+iqn+`
$ tgtadm --lld iscsi --op show --mode target
`+(showTarget("1", dev, ""))+`
$ tgtadm --lld iscsi --op delete --force --mode target --tid 1
! tgtadm: this target is still active
? 22
`)
	err := tg.Remove(context.Background(), vid)
	if !drivers.IsKind(err, drivers.KindBackend) || !strings.Contains(err.Error(), "--tid 1: exit 22: tgtadm: this target is still active") {
		t.Fatalf("Remove = %v, want the tgtadm failure with its exit code and stderr", err)
	}
}

func TestRemoveWhatIsGone(t *testing.T) {
	tg, _ := transcriptTarget(t, noFile+`
$ tgtadm --lld iscsi --op show --mode target
`)
	if err := tg.Remove(context.Background(), vid); err != nil {
		t.Fatalf("Remove of a volume never exported: %v", err)
	}
}

func TestRemoveToleratesVanishedTargetAndAccount(t *testing.T) {
	// Cinder's non-fatal errors: the target went between show and delete.
	tg, _ := transcriptTarget(t, `
$ cat `+file+`
`+stanza+`$ tgtadm --lld iscsi --op show --mode target
`+(showTarget("2", dev, testCHAP.Username))+`
$ tgt-admin --force --delete `+iqn+`
! tgtadm: can't find the target
? 22
$ tgtadm --lld iscsi --op show --mode target
$ tgtadm --lld iscsi --op delete --mode account --user `+testCHAP.Username+`
! tgtadm: can't find the account
? 22
$ rm -f `+file)
	if err := tg.Remove(context.Background(), vid); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidInputRunsNothing(t *testing.T) {
	tg, _ := transcriptTarget(t, "")
	ctx := context.Background()
	bad := CHAP{Username: "user name", Password: "short"}
	for name, call := range map[string]func() error{
		"id":           func() error { _, err := tg.Export(ctx, "../../etc/passwd", dev, nil); return err },
		"path":         func() error { _, err := tg.Export(ctx, vid, "/dev/vg/a b", nil); return err },
		"relative":     func() error { _, err := tg.Export(ctx, vid, "dev/vg/x", nil); return err },
		"unclean":      func() error { _, err := tg.Export(ctx, vid, "/dev/vg/../x", nil); return err },
		"chap":         func() error { _, err := tg.Export(ctx, vid, dev, &bad); return err },
		"remove id":    func() error { return tg.Remove(ctx, "VOLUME") },
		"stanza break": func() error { _, err := tg.Export(ctx, vid, "/dev/x>\n<target", nil); return err },
	} {
		if err := call(); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tr := exectest.New(t)
	for name, c := range map[string]Config{
		"no executor":   {VolumesDir: volsDir},
		"relative dir":  {Executor: tr, VolumesDir: "volumes"},
		"bad prefix":    {Executor: tr, VolumesDir: volsDir, IQNPrefix: "iqn.2010-10.org.openstack:x y:"},
		"bad portal":    {Executor: tr, VolumesDir: volsDir, Portal: "localhost"},
		"bad cache":     {Executor: tr, VolumesDir: volsDir, WriteCache: "yes"},
		"control range": {Executor: tr, VolumesDir: volsDir, ControlPort: 40000},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
	tg, err := New(Config{Executor: tr, VolumesDir: volsDir})
	if err != nil {
		t.Fatal(err)
	}
	if tg.cfg.IQNPrefix != DefaultIQNPrefix || tg.cfg.Portal != DefaultPortal || tg.cfg.WriteCache != "on" {
		t.Errorf("defaults not filled: %+v", tg.cfg)
	}
}
