package nfs

// This machine's kernel has no NFS client, so these are transcript tests:
// the commands the driver runs and the answers of real util-linux findmnt
// and mount.nfs (exit 32 is mount's "mount failure"; the messages are
// mount.nfs's, and the "unknown filesystem type" one was recorded here).

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
	"github.com/ember-storage/ember/drivers/remotefs"
)

const (
	share = "nfs1.example.com:/srv/cinder"
	base  = "/var/lib/ember/mnt"
	vid   = "0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10"
)

var mp = remotefs.MountPoint(base, share) // /var/lib/ember/mnt/<md5(share)>

// script fills MP and VOL into a transcript.
func script(s string) []exectest.Step {
	s = strings.ReplaceAll(s, "MP", mp)
	s = strings.ReplaceAll(s, "VOL", "volume-"+vid)
	return exectest.Parse(s)
}

func open(t *testing.T, ex drivers.Executor) drivers.Driver {
	t.Helper()
	d, err := drivers.Open(drivers.Backend{Name: "nfs-1", Driver: "nfs", Options: map[string]any{
		"shares": []string{share}, "mount_point_base": base, "mount_options": "vers=4.1,proto=tcp",
	}}, ex)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// deleteGone is an operation that touches the share and finds nothing: a
// delete of a volume that is already gone.
func deleteGone(d drivers.Driver) error {
	return d.DeleteVolume(context.Background(), drivers.Volume{ID: vid, ProviderLocation: share})
}

const notThere = `
$ test -e MP/VOL
? 1
`

const mountedJSON = `
$ findmnt -J -o SOURCE,FSTYPE,TARGET --mountpoint MP
{
   "filesystems": [
      {
         "source": "nfs1.example.com:/srv/cinder",
         "fstype": "nfs4",
         "target": "MP"
      }
   ]
}
`

func TestMount(t *testing.T) {
	tr := exectest.New(t, script(`
# nothing mounted yet: findmnt exits 1 and prints nothing
$ findmnt -J -o SOURCE,FSTYPE,TARGET --mountpoint MP
? 1
$ mkdir -p -- MP
$ mount -t nfs -o vers=4.1,proto=tcp nfs1.example.com:/srv/cinder MP
`+notThere)...)
	if err := deleteGone(open(t, tr)); err != nil {
		t.Fatal(err)
	}
}

func TestMountIdempotent(t *testing.T) {
	tr := exectest.New(t, script(mountedJSON+notThere)...)
	if err := deleteGone(open(t, tr)); err != nil {
		t.Fatal(err)
	}
}

// Another Ember on the host mounted the share between our findmnt and our
// mount: mount.nfs refuses, findmnt shows the share, and that is success.
func TestMountRace(t *testing.T) {
	tr := exectest.New(t, script(`
$ findmnt -J -o SOURCE,FSTYPE,TARGET --mountpoint MP
? 1
$ mkdir -p -- MP
$ mount -t nfs -o vers=4.1,proto=tcp nfs1.example.com:/srv/cinder MP
! mount.nfs: MP is busy or already mounted
? 32
`+mountedJSON+notThere)...)
	if err := deleteGone(open(t, tr)); err != nil {
		t.Fatal(err)
	}
}

func TestMountFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stderr string
		kind   drivers.Kind
	}{
		{"server down", "mount.nfs: Connection timed out", drivers.KindUnavailable},
		{"refused", "mount.nfs: Connection refused", drivers.KindUnavailable},
		{"export not allowed", "mount.nfs: access denied by server while mounting nfs1.example.com:/srv/cinder", drivers.KindBackend},
		// Recorded on this machine, which has no NFS client (util-linux 2.38).
		{"no nfs client", "mount: MP: unknown filesystem type 'nfs'.\n!        dmesg(1) may have more information after failed mount system call.", drivers.KindBackend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := exectest.New(t, script(`
$ findmnt -J -o SOURCE,FSTYPE,TARGET --mountpoint MP
? 1
$ mkdir -p -- MP
$ mount -t nfs -o vers=4.1,proto=tcp nfs1.example.com:/srv/cinder MP
! `+tc.stderr+`
? 32
$ findmnt -J -o SOURCE,FSTYPE,TARGET --mountpoint MP
? 1
`)...)
			err := deleteGone(open(t, tr))
			if !drivers.IsKind(err, tc.kind) {
				t.Fatalf("want %s, got %v", tc.kind, err)
			}
			ce, ok := drivers.AsCommandError(err)
			first := strings.SplitN(strings.ReplaceAll(tc.stderr, "MP", mp), "\n", 2)[0]
			if !ok || ce.ExitCode != 32 || !strings.Contains(ce.Stderr, first) || !strings.Contains(err.Error(), "mount -t nfs") {
				t.Fatalf("the error must keep the command, exit 32 and stderr: %v", err)
			}
		})
	}
}

// Something else on the mount point is never mounted over.
func TestMountPointTaken(t *testing.T) {
	tr := exectest.New(t, script(`
$ findmnt -J -o SOURCE,FSTYPE,TARGET --mountpoint MP
{
   "filesystems": [
      {"source": "tmpfs", "fstype": "tmpfs", "target": "MP"}
   ]
}
`)...)
	err := deleteGone(open(t, tr))
	if !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("want conflict, got %v", err)
	}
}

func TestOptions(t *testing.T) {
	for _, opts := range []map[string]any{
		{},
		{"shares": []string{"-oremount:/x"}},
		{"shares": []string{"host:/a b"}},
		{"shares": []string{"/no/host"}},
		{"shares": []string{share}, "mount_point_base": "relative"},
		{"shares": []string{share}, "mount_options": "vers=4 ro"},
		{"shares": []string{share}, "volume_format": "vmdk"},
		{"shares": []string{share}, "nfs_shares_config": "/etc/cinder/shares"},
	} {
		if _, err := drivers.Open(drivers.Backend{Name: "n", Driver: "nfs", Options: opts}, nil); err == nil {
			t.Errorf("options %v: want an error", opts)
		}
	}
	if _, err := drivers.Open(drivers.Backend{Name: "n", Driver: "nfs", Options: map[string]any{"shares": []string{share}}}, nil); err != nil {
		t.Fatal(fmt.Errorf("defaults: %w", err))
	}
}

// A volume tgt cannot serve raw (qcow2) gets Cinder's nfs connection_info,
// with the share's mount options for the attaching host's mount.
func TestInitializeConnectionQcow2(t *testing.T) {
	tr := exectest.New(t, script(mountedJSON+`
$ test -e MP/VOL
$ cat -- MP/VOL.info
! cat: MP/VOL.info: No such file or directory
? 1
$ prlimit --cpu=30 --as=1073741824 -- qemu-img info --output=json -f qcow2 MP/VOL
{
    "virtual-size": 1073741824,
    "filename": "MP/VOL",
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
`)...)
	d, err := drivers.Open(drivers.Backend{Name: "nfs-1", Driver: "nfs", Options: map[string]any{
		"shares": []string{share}, "mount_point_base": base, "mount_options": "vers=4.1,proto=tcp",
		"volume_format": "qcow2", "use_chap_auth": true,
	}}, tr)
	if err != nil {
		t.Fatal(err)
	}
	info, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: share}, "", drivers.Connector{})
	if err != nil {
		t.Fatal(err)
	}
	if info.DriverVolumeType != "nfs" || info.Data["export"] != share || info.Data["name"] != "volume-"+vid ||
		info.Data["format"] != "qcow2" || info.Data["options"] != "vers=4.1,proto=tcp" {
		t.Fatalf("connection_info %+v", info)
	}
}

func TestAttachOptions(t *testing.T) {
	for _, o := range []map[string]any{
		{"target_helper": "iet"},
		{"target_portal": "nfs1:3260"},
		{"volumes_dir": "targets"},
		{"tgt_control_port": 99999},
	} {
		o["shares"] = []string{share}
		if _, err := drivers.Open(drivers.Backend{Name: "n", Driver: "nfs", Options: o}, nil); err == nil {
			t.Errorf("options %v: want an error", o)
		}
	}
	ok := map[string]any{"shares": []string{share}, "target_helper": "none", "target_portal": "10.0.0.1:3260",
		"volumes_dir": "/var/lib/ember/targets", "use_chap_auth": true, "tgt_control_port": 2}
	if _, err := drivers.Open(drivers.Backend{Name: "n", Driver: "nfs", Options: ok}, nil); err != nil {
		t.Fatal(err)
	}
}
