package sheepdog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
)

// These tests play transcripts of `dog`: they run without Sheepdog and
// keep what one host cannot show (three-node output, an older collie's
// formats, a full cluster). sheepdog_real_test.go runs the driver on real
// nodes, and TestRealOutputMatchesTranscripts there checks the outputs
// below marked "real" against the real dog's. Where the others come from:
//
//   - cluster states, the VDI/snapshot error messages: Cinder's
//     cinder/tests/unit/volume/drivers/test_sheepdog.py (DOG_CLUSTER_RUNNING,
//     COLLIE_CLUSTER_INFO_0_5, DOG_CLUSTER_INFO_WAITING_OTHER_NODES,
//     DOG_CLUSTER_INFO_SHUTTING_DOWN, COLLIE_NODE_INFO);
//   - `dog vdi list -r` lines: sheepdog's dog/vdi.c print_vdi_list, raw
//     branch ("%c %s %d %s %s %s %s %x %s %s %d");
//   - `dog node info -r`: sheepdog's dog/node.c node_info ("%d %s %s %s %d%%"
//     per node, "Total %s %s %s %d%% %s");
//   - reasons of sd_strerror in sheepdog's lib/sd.c ("Server has no space
//     for new objects", "Cannot get information from any nodes").

const (
	idA = "0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10"
	idB = "1c6ddf5f-9a1b-4d2f-8e6d-3a2b8b4dae21"
	idS = "3e8ffb71-bc3d-4f41-a08f-5c4dad6fc043"

	nameA = "volume-" + idA
	nameB = "volume-" + idB
	tagS  = "snapshot-" + idS

	running = `$ dog cluster info AP
Cluster status: running, auto-recovery enabled

Cluster created at Thu Jun 18 17:24:56 2015

Epoch Time           Version [Host:Port:V-Nodes,,,]
2015-06-18 17:24:56      1 [127.0.0.1:7000:128, 127.0.0.1:7001:128, 127.0.0.1:7002:128]
`
	connectFailure = `! failed to connect to 127.0.0.1:7000: Connection refused
! failed to connect to 127.0.0.1:7000: Connection refused
! Failed to get node list
? 2`
)

// dog's answers as the real dog gives them (TestRealOutputMatchesTranscripts
// provokes each one on a real node), in exectest.Parse's notation.
func vdiExistsAlready(name string) string {
	return "! Failed to create VDI " + name + ": VDI exists already\n? 1"
}

// openFailed is `dog vdi delete`'s answer for a VDI or tag it cannot find:
// on stderr only, exit 0.
func openFailed(name, tag, reason string) string {
	return "! Failed to open VDI " + name + " (snapshot id: 0 snapshot tag: " + tag + "): " + reason
}

func snapshotTagExists(name, tag string) string {
	return "! Failed to create snapshot for " + name + ", maybe snapshot id (0) or tag (" + tag + ") is existed\n? 1"
}

func snapshotNoVDI(name string) string {
	return "! Failed to create snapshot for " + name + ": No VDI found\n? 1"
}

// resizeRefused is `dog vdi resize`'s answer to a size it refuses: usage
// on stdout, the reason on stderr, exit 64 (EXIT_USAGE).
func resizeRefused(reason string) string {
	return `Usage: dog vdi resize [-a address] [-p port] [-h] [-T] <vdiname> <new size>
Options:
  -a, --address           specify the daemon address (default: localhost)
  -p, --port              specify the daemon port
  -h, --help              display this help and exit
  -T, --time              show elapsed time
! ` + reason + `
? 64`
}

const (
	shrinkRefused = "Shrinking VDIs is not implemented"
	tooLarge      = "New VDI size is too large. This volume's max size is 4398046511104"
	notFormatted  = "Cluster status: Waiting for cluster to be formatted\n\n"
	// nodeInfo is `dog node info -r` of dog 1.0 (one node line per node).
	nodeInfo = `0 107287605248 3623897354 103663707894 3%
Total 107287605248 3623897354 103663707894 3% 54760833024`
	// vdiLine is a `dog vdi list -r` line of a VDI without a tag.
	vdiLine = "= " + nameA + " 0 1073741824 0 0 1467037106 fd32fc 3  22"
)

// script expands AP to the address and port every dog command carries.
func script(s string) []exectest.Step {
	return exectest.Parse(strings.ReplaceAll(s, " AP", " -a 127.0.0.1 -p 7000"))
}

func newDriver(t *testing.T, s string) (*Driver, *exectest.Transcript) {
	t.Helper()
	// dog's messages are read in English, as Cinder reads them.
	tr := exectest.New(t, script(s)...).RequireEnv("LC_ALL=C", "LANG=C")
	d, err := Open(drivers.Backend{Name: "sheep-1", Driver: "sheepdog"}, tr)
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Driver), tr
}

var (
	ctx = context.Background()
	vA  = drivers.Volume{ID: idA, SizeGB: 1}
	vB  = drivers.Volume{ID: idB, SizeGB: 2}
	sS  = drivers.Snapshot{ID: idS, VolumeID: idA, VolumeSizeGB: 1}
)

func TestOperations(t *testing.T) {
	tests := []struct {
		name   string
		script string
		call   func(*Driver) error
		want   drivers.Kind // "" for success
	}{
		{"create", running + `
$ dog vdi list AP -r ` + nameA + `
$ dog vdi create AP ` + nameA + ` 1G`, create(vA), ""},

		{"create again with the same size", running + `
$ dog vdi list AP -r ` + nameA + `
= ` + nameA + ` 0 1073741824 0 0 1467037106 fd32fc 3  22`, create(vA), ""},

		{"create again with another size", running + `
$ dog vdi list AP -r ` + nameA + `
= ` + nameA + ` 0 1073741824 0 0 1467037106 fd32fc 3  22`, create(drivers.Volume{ID: idA, SizeGB: 2}), drivers.KindConflict},

		{"create racing another delivery", running + `
$ dog vdi list AP -r ` + nameA + `
$ dog vdi create AP ` + nameA + ` 1G
` + vdiExistsAlready(nameA) + `
$ dog vdi list AP -r ` + nameA + `
= ` + nameA + ` 0 1073741824 0 0 1467037106 fd32fc 3  22`, create(vA), ""},

		{"create without space", running + `
$ dog vdi list AP -r ` + nameA + `
$ dog vdi create AP ` + nameA + ` 1G
! Failed to create VDI ` + nameA + `: Server has no space for new objects
? 1`, create(vA), drivers.KindNoCapacity},

		{"create on a dog that cannot connect", `
$ dog cluster info AP
` + connectFailure, create(vA), drivers.KindUnavailable},

		{"create on a cluster waiting to be formatted", `
$ dog cluster info AP
` + notFormatted, create(vA), drivers.KindBackend},

		{"delete", `
$ dog vdi delete AP ` + nameA, del(vA), ""},

		{"delete of a VDI already gone (exit 0)", `
$ dog vdi delete AP ` + nameA + `
` + openFailed(nameA, "", "No VDI found"), del(vA), ""},

		{"delete of a VDI already gone, exit 1 (dog before 1.0; 1.0 exits 0)", `
$ dog vdi delete AP ` + nameA + `
! Failed to open VDI ` + nameA + ` (snapshot id: 0 snapshot tag: ): No VDI found
? 1`, del(vA), ""},

		{"delete whose dog cannot connect (exit 0)", `
$ dog vdi delete AP ` + nameA + `
! failed to connect to 127.0.0.1:7000: Connection refused
! failed to connect to 127.0.0.1:7000: Connection refused
` + openFailed(nameA, "", "I/O error"), del(vA), drivers.KindUnavailable},

		// dog vdi delete exits 0 whatever happens (do_vdi_delete in
		// dog/vdi.c returns EXIT_SUCCESS): stderr is the only report.
		{"delete failing otherwise (exit 0)", `
$ dog vdi delete AP ` + nameA + `
! Failed to delete ` + nameA + `: System error`, del(vA), drivers.KindBackend},

		{"delete on a cluster waiting to be formatted (exit 0)", `
$ dog vdi delete AP ` + nameA + `
` + openFailed(nameA, "", "Waiting for cluster to be formatted"), del(vA), drivers.KindBackend},

		{"delete whose inode cannot be read (exit 0)", `
$ dog vdi delete AP ` + nameA + `
! failed to read inode object: 00fd32fc00000000`, del(vA), drivers.KindBackend},

		{"snapshot", running + `
$ dog vdi snapshot AP -s ` + tagS + ` ` + nameA, snap(sS), ""},

		{"snapshot taken before", running + `
$ dog vdi snapshot AP -s ` + tagS + ` ` + nameA + `
` + snapshotTagExists(nameA, tagS), snap(sS), ""},

		{"snapshot of a missing volume", running + `
$ dog vdi snapshot AP -s ` + tagS + ` ` + nameA + `
` + snapshotNoVDI(nameA), snap(sS), drivers.KindNotFound},

		{"delete snapshot", `
$ dog vdi delete AP -s ` + tagS + ` ` + nameA, delSnap(sS), ""},

		{"delete snapshot whose tag is gone", `
$ dog vdi delete AP -s ` + tagS + ` ` + nameA + `
` + openFailed(nameA, tagS, "Failed to find requested tag"), delSnap(sS), ""},

		{"delete snapshot whose volume is gone", `
$ dog vdi delete AP -s ` + tagS + ` ` + nameA + `
` + openFailed(nameA, tagS, "No VDI found"), delSnap(sS), ""},

		{"delete snapshot on a cluster waiting to be formatted", `
$ dog vdi delete AP -s ` + tagS + ` ` + nameA + `
` + openFailed(nameA, tagS, "Waiting for cluster to be formatted"), delSnap(sS), drivers.KindBackend},

		{"volume from snapshot, larger", running + `
$ dog vdi list AP -r ` + nameB + `
$ dog vdi clone AP -s ` + tagS + ` ` + nameA + ` ` + nameB + `
$ dog vdi resize AP ` + nameB + ` 2147483648`, fromSnap(vB, sS), ""},

		{"volume from snapshot redelivered after the clone", running + `
$ dog vdi list AP -r ` + nameB + `
c ` + nameB + ` 0 1073741824 0 1073741824 1467037106 fd32fd 3  22
$ dog vdi resize AP ` + nameB + ` 2147483648`, fromSnap(vB, sS), ""},

		{"volume from snapshot redelivered when done", running + `
$ dog vdi list AP -r ` + nameB + `
c ` + nameB + ` 0 2147483648 0 1073741824 1467037106 fd32fd 3  22`, fromSnap(vB, sS), ""},

		{"volume from snapshot over another volume", running + `
$ dog vdi list AP -r ` + nameB + `
= ` + nameB + ` 0 1073741824 0 0 1467037106 fd32fd 3  22`, fromSnap(vB, sS), drivers.KindConflict},

		{"volume from a snapshot that is gone", running + `
$ dog vdi list AP -r ` + nameB + `
$ dog vdi clone AP -s ` + tagS + ` ` + nameA + ` ` + nameB + `
` + openFailed(nameA, tagS, "Failed to find requested tag") + `
? 1`, fromSnap(vB, sS), drivers.KindNotFound},

		{"clone of a volume", running + `
$ dog vdi snapshot AP -s temp-snapshot-` + nameB + ` ` + nameA + `
$ dog vdi list AP -r ` + nameB + `
$ dog vdi clone AP -s temp-snapshot-` + nameB + ` ` + nameA + ` ` + nameB + `
$ dog vdi resize AP ` + nameB + ` 2147483648
$ dog vdi delete AP -s temp-snapshot-` + nameB + ` ` + nameA, cloned(vB, vA), ""},

		{"failed clone of a volume still deletes its snapshot", running + `
$ dog vdi snapshot AP -s temp-snapshot-` + nameB + ` ` + nameA + `
$ dog vdi list AP -r ` + nameB + `
$ dog vdi clone AP -s temp-snapshot-` + nameB + ` ` + nameA + ` ` + nameB + `
! Failed to create VDI ` + nameB + `: Server has no space for new objects
? 1
$ dog vdi delete AP -s temp-snapshot-` + nameB + ` ` + nameA, cloned(vB, vA), drivers.KindNoCapacity},

		{"extend", `
$ dog vdi list AP -r ` + nameA + `
= ` + nameA + ` 0 1073741824 0 0 1467037106 fd32fc 3  22
s ` + nameA + ` 1 1073741824 0 0 1467037000 fd32fb 3 ` + tagS + ` 22
$ dog vdi resize AP ` + nameA + ` 2147483648`, extend(vA, 2), ""},

		{"extend redelivered", `
$ dog vdi list AP -r ` + nameA + `
= ` + nameA + ` 0 2147483648 0 0 1467037106 fd32fc 3  22`, extend(vA, 2), ""},

		{"shrink", `
$ dog vdi list AP -r ` + nameA + `
= ` + nameA + ` 0 2147483648 0 0 1467037106 fd32fc 3  22`, extend(vA, 1), drivers.KindConflict},

		{"extend of a missing volume", `
$ dog vdi list AP -r ` + nameA + `
` + running, extend(vA, 2), drivers.KindNotFound},

		// dog vdi list exits 0 and lists nothing before the format.
		{"extend on a cluster waiting to be formatted", `
$ dog vdi list AP -r ` + nameA + `
$ dog cluster info AP
` + notFormatted, extend(vA, 2), drivers.KindBackend},

		{"extend past the VDI's maximum", `
$ dog vdi list AP -r ` + nameA + `
= ` + nameA + ` 0 1073741824 0 0 1467037106 fd32fc 3  22
$ dog vdi resize AP ` + nameA + ` 5497558138880
` + resizeRefused(tooLarge), extend(vA, 5120), drivers.KindInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDriver(t, tc.script)
			err := tc.call(d)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if got := drivers.KindOf(err); got != tc.want {
				t.Fatalf("want %s, got %s: %v", tc.want, got, err)
			}
			if _, ok := drivers.AsCommandError(err); ok && !strings.Contains(err.Error(), "dog ") {
				t.Fatalf("error lost its command: %v", err)
			}
		})
	}
}

func create(v drivers.Volume) func(*Driver) error {
	return func(d *Driver) error { _, err := d.CreateVolume(ctx, v); return err }
}
func del(v drivers.Volume) func(*Driver) error {
	return func(d *Driver) error { return d.DeleteVolume(ctx, v) }
}
func snap(s drivers.Snapshot) func(*Driver) error {
	return func(d *Driver) error { _, err := d.CreateSnapshot(ctx, s); return err }
}
func delSnap(s drivers.Snapshot) func(*Driver) error {
	return func(d *Driver) error { return d.DeleteSnapshot(ctx, s) }
}
func fromSnap(v drivers.Volume, s drivers.Snapshot) func(*Driver) error {
	return func(d *Driver) error { _, err := d.CreateVolumeFromSnapshot(ctx, v, s); return err }
}
func cloned(v, src drivers.Volume) func(*Driver) error {
	return func(d *Driver) error { _, err := d.CreateClonedVolume(ctx, v, src); return err }
}
func extend(v drivers.Volume, size int) func(*Driver) error {
	return func(d *Driver) error { return d.ExtendVolume(ctx, v, size) }
}

// The cluster must say "running" before anything is created; the two
// waiting states Cinder names are errors, one for an operator (format) and
// one that passes (nodes joining).
func TestClusterStates(t *testing.T) {
	tests := []struct {
		name, info string
		want       drivers.Kind
		retryable  bool
	}{
		{"running, sheepdog 0.5", `Cluster status: running

Cluster created at Tue Jun 25 19:51:41 2013

Epoch Time           Version
2013-06-25 19:51:41      1 [127.0.0.1:7000, 127.0.0.1:7001, 127.0.0.1:7002]`, "", false},
		{"not formatted", notFormatted, drivers.KindBackend, false},
		{"waiting for nodes", `Cluster status: Waiting for other nodes to join cluster

Cluster created at Thu Jun 18 17:24:56 2015

Epoch Time           Version [Host:Port:V-Nodes,,,]
2015-06-18 17:24:56      1 [127.0.0.1:7000:128, 127.0.0.1:7001:128]`, drivers.KindUnavailable, true},
		{"shutting down", `Cluster status: System is shutting down`, drivers.KindUnavailable, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := "$ dog cluster info AP\n" + tc.info
			if tc.want == "" {
				s += "\n$ dog vdi list AP -r " + nameA + "\n$ dog vdi create AP " + nameA + " 1G"
			}
			d, _ := newDriver(t, s)
			_, err := d.CreateVolume(ctx, vA)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if drivers.KindOf(err) != tc.want || drivers.KindOf(err).Retryable() != tc.retryable {
				t.Fatalf("want %s (retryable %v), got %v", tc.want, tc.retryable, err)
			}
			if !strings.Contains(err.Error(), strings.SplitN(tc.info, "\n", 2)[0]) {
				t.Fatalf("error does not say the cluster status: %v", err)
			}
		})
	}
}

func TestStats(t *testing.T) {
	list := `$ dog vdi list AP -r
` + vdiLine + `
s ` + nameA + ` 1 1073741824 0 0 1467037000 fd32fb 3 ` + tagS + ` 22
c ` + nameB + ` 0 2147483648 0 1073741824 1467037106 fd32fd 3  22
= glance-image 0 10737418240 0 0 1467037106 fd3300 3  22`
	for _, tc := range []struct{ name, nodeInfo string }{
		{"dog 1.0 (avail column)", nodeInfo},
		{"collie (no avail column)", `0 107287605248 3623897354 3%
Total 107287605248 3623897354 3% 54760833024`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDriver(t, running+"$ dog node info AP -r\n"+tc.nodeInfo+"\n"+list)
			s, err := d.GetVolumeStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := drivers.Stats{TotalCapacityGB: 99.92, FreeCapacityGB: 96.54, ProvisionedCapacityGB: 13,
				ThinProvisioningSupport: true, MaxOverSubscriptionRatio: 1, TotalVolumes: 2, LocationInfo: "sheepdog:127.0.0.1:7000"}
			if s.TotalCapacityGB != want.TotalCapacityGB || s.FreeCapacityGB != want.FreeCapacityGB || s.ProvisionedCapacityGB != want.ProvisionedCapacityGB ||
				s.TotalVolumes != want.TotalVolumes || s.LocationInfo != want.LocationInfo || !s.ThinProvisioningSupport {
				t.Fatalf("stats:\n got %+v\nwant %+v", s, want)
			}
		})
	}
	// A node just killed, still in the cluster's list: dog names it on
	// stderr, exits 0 and totals the node that answered (real output of a
	// two-node cluster, TestRealTwoNodes).
	t.Run("a node gone", func(t *testing.T) {
		d, _ := newDriver(t, running+`$ dog node info AP -r
0 83106848768 20983808 83085864960 0%
Total 83106848768 20983808 83085864960 0% 1073741824
! failed to connect to 127.0.0.1:7001: Connection refused
! failed to connect to 127.0.0.1:7001: Connection refused
`+list)
		s, err := d.GetVolumeStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.TotalCapacityGB != 77.4 || s.Extra["nodes"] != 1 || s.Extra["unreachable_nodes"] != 1 {
			t.Fatalf("stats: %+v", s)
		}
	})
	t.Run("no node answers", func(t *testing.T) {
		d, _ := newDriver(t, running+`$ dog node info AP -r
! Cannot get information from any nodes
? 2`)
		if _, err := d.GetVolumeStats(ctx); !drivers.IsKind(err, drivers.KindUnavailable) {
			t.Fatalf("want unavailable, got %v", err)
		}
	})
}

func TestConnection(t *testing.T) {
	d, _ := newDriver(t, `$ dog vdi list AP -r `+nameA+`
= `+nameA+` 0 1073741824 0 0 1467037106 fd32fc 3  22
$ dog vdi list AP -r `+nameB+"\n"+running)
	ci, err := d.InitializeConnection(ctx, vA, "att-1", drivers.Connector{Host: "compute-1"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ci)
	if string(raw) != `{"driver_volume_type":"sheepdog","data":{"hosts":["127.0.0.1"],"name":"`+nameA+`","ports":["7000"]}}` {
		t.Fatalf("connection info: %s", raw)
	}
	if err := d.TerminateConnection(ctx, vA, "att-1", drivers.Connector{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.InitializeConnection(ctx, vB, "att-2", drivers.Connector{}); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("attach of a missing volume: want not_found, got %v", err)
	}
}

func TestReadWriteStream(t *testing.T) {
	small := `$ dog vdi list AP -r ` + nameA + `
= ` + nameA + ` 0 16 0 0 1467037106 fd32fc 3  22
`
	d, tr := newDriver(t, `$ dog vdi read AP `+nameA+`
0123456789abcde
`+small+`$ dog vdi write AP `+nameA+`
`+small+`$ dog vdi write AP `+nameA)
	var out bytes.Buffer
	if err := d.ReadVolume(ctx, vA, &out); err != nil || out.String() != "0123456789abcde\n" {
		t.Fatalf("read: %q %v", out.String(), err)
	}
	if err := d.WriteVolume(ctx, vA, strings.NewReader("sixteen bytes!!!")); err != nil {
		t.Fatal(err)
	}
	if got := string(tr.Stdin[2]); got != "sixteen bytes!!!" {
		t.Fatalf("dog vdi write was fed %q", got)
	}
	err := d.WriteVolume(ctx, vA, io.MultiReader(strings.NewReader("sixteen bytes!!!"), strings.NewReader("+1")))
	if !drivers.IsKind(err, drivers.KindInvalid) {
		t.Fatalf("input longer than the VDI: want invalid, got %v", err)
	}
}

func TestBadInputRunsNothing(t *testing.T) {
	d, _ := newDriver(t, "")
	for _, id := range []string{"../etc/passwd", "x; rm -rf /", "-rf", "", "0B5CBF4E-8F0A-4C1E-9D5C-2F1A7A3C9E10"} {
		if _, err := d.CreateVolume(ctx, drivers.Volume{ID: id, SizeGB: 1}); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("create %q: want invalid, got %v", id, err)
		}
		if err := d.DeleteSnapshot(ctx, drivers.Snapshot{ID: id, VolumeID: idA}); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("delete snapshot %q: want invalid, got %v", id, err)
		}
	}
	for _, o := range []map[string]any{{"address": "-a"}, {"port": 70000}, {"adress": "typo"}} {
		if _, err := Open(drivers.Backend{Name: "x", Driver: "sheepdog", Options: o}, nil); err == nil {
			t.Errorf("options %v accepted", o)
		}
	}
}
