package remotefs

import (
	"context"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
)

// Attach of the base, as transcripts: qemu-img info's JSON is qemu 7.2's,
// tgtadm's and tgt-admin's output tgt 1.0.85's. drivers/file runs the raw
// path against a real tgtd.

const (
	cShare   = "gfs1.example.com:/gv0"
	cDir     = "/var/lib/ember/mnt/0123456789abcdef0123456789abcdef"
	cBase    = cDir + "/volume-" + vid
	cIQN     = "iqn.2010-10.org.openstack:volume-" + vid
	cTargets = "/var/lib/ember/targets"
	cFile    = cTargets + "/volume-" + vid
	cTmp     = cTargets + "/.volume-" + vid + ".tmp"
)

func transcriptDriver(t *testing.T, format string, extra func(*Config), script string) *Driver {
	t.Helper()
	tr := exectest.New(t, exectest.Parse(script)...)
	cfg := Config{Driver: "glusterfs", Shares: []string{cShare}, Dir: func(string) string { return cDir },
		Format: format, MaxOverSubscriptionRatio: 20, MountOptions: "backup-volfile-servers=gfs2:gfs3"}
	if extra != nil {
		extra(&cfg)
	}
	d, err := New(cfg, tr)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const rawBase = `
$ test -e ` + cBase + `
$ cat -- ` + cBase + `.info
! cat: ` + cBase + `.info: No such file or directory
? 1
$ prlimit --cpu=30 --as=1073741824 -- qemu-img info --output=json -f raw ` + cBase + `
{
    "virtual-size": 1073741824,
    "filename": "` + cBase + `",
    "format": "raw",
    "actual-size": 4096,
    "dirty-flag": false
}
`

const liveTarget = `Target 1: ` + cIQN + `
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
            Backing store path: ` + cBase + `
            Backing store flags: 
    Account information:
    ACL information:
        ALL
`

// A raw volume without snapshots: its file is the backing store.
func TestInitializeConnectionRawExportsFile(t *testing.T) {
	d := transcriptDriver(t, "raw", nil, rawBase+`
$ cat `+cFile+`
! cat: `+cFile+`: No such file or directory
? 1
$ mkdir -p `+cTargets+`
$ install -m 0600 /dev/null `+cTmp+`
$ tee `+cTmp+`
$ mv -fT `+cTmp+` `+cFile+`
$ tgt-admin -c `+cFile+` --update `+cIQN+`
$ tgtadm --lld iscsi --op show --mode target
`+liveTarget)
	info, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: cShare}, "", drivers.Connector{})
	if err != nil {
		t.Fatal(err)
	}
	if info.DriverVolumeType != "iscsi" || info.Data["target_iqn"] != cIQN || info.Data["target_lun"] != 1 || info.Data["target_portal"] != "127.0.0.1:3260" {
		t.Fatalf("connection_info %+v", info)
	}
}

// A volume with snapshots reads and writes its qcow2 overlay: Cinder's
// remotefs connection_info, and nothing exported.
func TestInitializeConnectionSnapshotChainIsRemoteFS(t *testing.T) {
	overlay := "volume-" + vid + "." + sid1
	d := transcriptDriver(t, "raw", nil, `
$ test -e `+cBase+`
$ cat -- `+cBase+`.info
{
 "`+sid1+`": "`+overlay+`",
 "active": "`+overlay+`"
}
$ prlimit --cpu=30 --as=1073741824 -- qemu-img info --output=json -f qcow2 `+cDir+`/`+overlay+`
{
    "backing-filename-format": "raw",
    "virtual-size": 1073741824,
    "filename": "`+cDir+`/`+overlay+`",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": false,
            "refcount-bits": 16,
            "corrupt": false,
            "extended-l2": false
        }
    },
    "full-backing-filename": "`+cBase+`",
    "backing-filename": "volume-`+vid+`",
    "dirty-flag": false
}
$ prlimit --cpu=30 --as=1073741824 -- qemu-img info --output=json -f raw `+cBase+`
{
    "virtual-size": 1073741824,
    "filename": "`+cBase+`",
    "format": "raw",
    "actual-size": 4096,
    "dirty-flag": false
}
`)
	info, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: cShare}, "", drivers.Connector{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"export": cShare, "name": overlay, "format": "qcow2", "options": "backup-volfile-servers=gfs2:gfs3"}
	if info.DriverVolumeType != "glusterfs" || len(info.Data) != len(want) {
		t.Fatalf("connection_info %+v, want glusterfs %v", info, want)
	}
	for k, v := range want {
		if info.Data[k] != v {
			t.Errorf("data[%s] = %v, want %v", k, info.Data[k], v)
		}
	}
}

const qcow2Base = `
$ test -e ` + cBase + `
$ cat -- ` + cBase + `.info
! cat: ` + cBase + `.info: No such file or directory
? 1
$ prlimit --cpu=30 --as=1073741824 -- qemu-img info --output=json -f qcow2 ` + cBase + `
{
    "virtual-size": 1073741824,
    "filename": "` + cBase + `",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": false,
            "refcount-bits": 16,
            "corrupt": false,
            "extended-l2": false
        }
    },
    "dirty-flag": false
}
`

func TestInitializeConnectionQcow2VolumeIsRemoteFS(t *testing.T) {
	d := transcriptDriver(t, "qcow2", func(c *Config) { c.VolumeType = "local"; c.MountOptions = "" }, qcow2Base)
	info, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}, "", drivers.Connector{})
	if err != nil {
		t.Fatal(err)
	}
	if info.DriverVolumeType != "local" || info.Data["name"] != "volume-"+vid || info.Data["format"] != "qcow2" || info.Data["export"] != cShare {
		t.Fatalf("connection_info %+v", info)
	}
}

func TestInitializeConnectionMissingVolume(t *testing.T) {
	d := transcriptDriver(t, "raw", nil, `
$ test -e `+cBase+`
? 1
`)
	_, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: cShare}, "", drivers.Connector{})
	if !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("want not_found, got %v", err)
	}
}

// Detach removes the target without looking at the volume's files; a
// volume that never had one (qcow2) or lost it detaches too.
func TestTerminateConnection(t *testing.T) {
	d := transcriptDriver(t, "raw", func(c *Config) {
		c.Target.VolumesDir = "/etc/tgt/ember"
		c.Target.ControlPort = 3
	}, `
$ test -e `+cBase+`
? 1
$ cat /etc/tgt/ember/volume-`+vid+`
<target `+cIQN+`>
    backing-store `+cBase+`
    driver iscsi
    write-cache on
</target>
$ tgtadm -C 3 --lld iscsi --op show --mode target
`+liveTarget+`
$ tgt-admin -C 3 --force --delete `+cIQN+`
$ tgtadm -C 3 --lld iscsi --op show --mode target
$ rm -f /etc/tgt/ember/volume-`+vid+`
$ test -e `+cBase+`
? 1
$ cat /etc/tgt/ember/volume-`+vid+`
! cat: /etc/tgt/ember/volume-`+vid+`: No such file or directory
? 1
$ tgtadm -C 3 --lld iscsi --op show --mode target
`)
	for i := range 2 {
		if err := d.TerminateConnection(context.Background(), drivers.Volume{ID: vid, ProviderLocation: cShare}, "", drivers.Connector{}); err != nil {
			t.Fatalf("terminate #%d: %v", i+1, err)
		}
	}
}

func TestConnectionTargetHelperNone(t *testing.T) {
	d := transcriptDriver(t, "raw", func(c *Config) { c.Target.TargetHelper = "none" }, "")
	ctx := context.Background()
	if _, err := d.InitializeConnection(ctx, drivers.Volume{ID: vid, SizeGB: 1}, "", drivers.Connector{}); !drivers.IsKind(err, drivers.KindNotSupported) {
		t.Errorf("attach: want not_supported, got %v", err)
	}
	if err := d.TerminateConnection(ctx, drivers.Volume{ID: vid}, "", drivers.Connector{}); !drivers.IsKind(err, drivers.KindNotSupported) {
		t.Errorf("detach: want not_supported, got %v", err)
	}
}

// A qcow2 volume was never exported: its detach asks tgtd nothing (tgtd
// need not run), which the transcript enforces by having no tgt step.
func TestTerminateConnectionQcow2AsksNoTarget(t *testing.T) {
	d := transcriptDriver(t, "qcow2", func(c *Config) { c.VolumeType = "local"; c.MountOptions = "" }, qcow2Base)
	if err := d.TerminateConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}, "", drivers.Connector{}); err != nil {
		t.Fatal(err)
	}
}
