package rbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
)

// Transcript tests: the error paths a healthy test cluster cannot produce
// on demand (watchers, ENOSPC, an unreachable cluster). Outputs follow what
// rbd and ceph 16.2 print: the "rbd: <what>: (<errno>) <strerror>" lines and
// exit codes are those seen from the real tools here (ENOENT, EEXIST, EBUSY,
// ENOTEMPTY, the "couldn't connect" and "RADOS timed out" failures were run
// against the test cluster or a dead monitor address); ENOSPC and EDQUOT
// take the same form with their own errno.

// script expands $RBD and $CEPH to the driver's command prefixes.
func script(s string) []exectest.Step {
	return exectest.Parse(strings.NewReplacer(
		"$RBD", "$ rbd --id admin --conf /etc/ceph/ceph.conf --pool volumes",
		"$CEPH", "$ ceph --id admin --conf /etc/ceph/ceph.conf",
	).Replace(s))
}

func transcriptDriver(t *testing.T, s string) (*Driver, *exectest.Transcript) {
	t.Helper()
	// LC_ALL=C: classify reads rbd's and ceph's English messages.
	tr := exectest.New(t, script(s)...).RequireEnv("LC_ALL=C")
	d, err := Open(drivers.Backend{Name: "ceph-1", Driver: "rbd"}, tr)
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Driver), tr
}

const (
	infoA = `{"name":"volume-0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10","id":"102e8e236f02","size":1073741824,"objects":256,"order":22,"object_size":4194304,"snapshot_count":0,"block_name_prefix":"rbd_data.102e8e236f02","format":2,"features":["layering"],"op_features":[],"flags":[]}`
	// infoSmall is an 8 MiB image: big enough for two diff chunks, small
	// enough for the transcript to hold what import-diff is fed.
	infoSmall = `{"name":"volume-0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10","size":8388608,"features":["layering"]}`
	noA       = `! rbd: error opening image volume-0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10: (2) No such file or directory
? 2`
)

func TestTranscriptErrorKinds(t *testing.T) {
	vA := drivers.Volume{ID: idA, SizeGB: 1}
	vB := drivers.Volume{ID: idB, SizeGB: 1}
	sS := drivers.Snapshot{ID: idS, VolumeID: idA, VolumeSizeGB: 1}
	tests := []struct {
		name   string
		script string
		call   func(*Driver) error
		want   drivers.Kind // "" for success
	}{
		{"create without space", `
$RBD info --format json volume-` + idA + `
` + noA + `
$RBD create --no-progress --size 1024 --image-feature layering volume-` + idA + `
! rbd: create error: (28) No space left on device
? 28`, func(d *Driver) error { _, err := d.CreateVolume(context.Background(), vA); return err }, drivers.KindNoCapacity},

		{"create over the pool quota", `
$RBD info --format json volume-` + idA + `
` + noA + `
$RBD create --no-progress --size 1024 --image-feature layering volume-` + idA + `
! rbd: create error: (122) Disk quota exceeded
? 122`, func(d *Driver) error { _, err := d.CreateVolume(context.Background(), vA); return err }, drivers.KindNoCapacity},

		{"create racing another delivery", `
$RBD info --format json volume-` + idA + `
` + noA + `
$RBD create --no-progress --size 1024 --image-feature layering volume-` + idA + `
! 2026-11-25T09:19:41.668+0000 7fa39ecdb380 -1 librbd: rbd image volume-` + idA + ` already exists
! rbd: create error: (17) File exists
? 17
$RBD info --format json volume-` + idA + `
` + infoA, func(d *Driver) error { _, err := d.CreateVolume(context.Background(), vA); return err }, ""},

		{"delete of an open volume", `
$RBD snap ls --format json volume-` + idA + `
[]
$RBD info --format json volume-` + idA + `
` + infoA + `
$RBD rm --no-progress volume-` + idA + `
! 2026-11-25T09:40:01.100+0000 7f74446a8380 -1 librbd::api::Image: remove: image has watchers - not removing
! rbd: error: image still has watchers
! This means the image is still open or the client using it crashed. Try again after closing/unmapping it or waiting 30s for the crashed client to timeout.
? 16`, func(d *Driver) error { return d.DeleteVolume(context.Background(), vA) }, drivers.KindBusy},

		{"delete of a volume with snapshots removes nothing", `
$RBD snap ls --format json volume-` + idA + `
[{"id":4,"name":"snapshot-` + idS + `","size":1073741824,"protected":"false","timestamp":"Wed Nov 25 09:21:26 2026"}]`,
			func(d *Driver) error { return d.DeleteVolume(context.Background(), vA) }, drivers.KindBusy},

		{"delete of a volume already gone", `
$RBD snap ls --format json volume-` + idA + `
` + noA, func(d *Driver) error { return d.DeleteVolume(context.Background(), vA) }, ""},

		{"delete in a pool that does not exist is no success", `
$RBD snap ls --format json volume-` + idA + `
! rbd: error opening pool 'volumes': (2) No such file or directory
? 2`, func(d *Driver) error { return d.DeleteVolume(context.Background(), vA) }, drivers.KindBackend},

		{"delete of a snapshot with a clone", `
$RBD snap ls --format json volume-` + idA + `
[{"id":4,"name":"snapshot-` + idS + `","size":1073741824,"protected":"true","timestamp":"Wed Nov 25 09:21:26 2026"}]
$RBD children --format json volume-` + idA + `@snapshot-` + idS + `
[{"pool":"volumes","pool_namespace":"","image":"volume-` + idB + `"}]`,
			func(d *Driver) error { return d.DeleteSnapshot(context.Background(), sS) }, drivers.KindBusy},

		{"unprotect racing a new clone", `
$RBD snap ls --format json volume-` + idA + `
[{"id":4,"name":"snapshot-` + idS + `","size":1073741824,"protected":"true","timestamp":"Wed Nov 25 09:21:26 2026"}]
$RBD children --format json volume-` + idA + `@snapshot-` + idS + `
[]
$RBD snap unprotect volume-` + idA + `@snapshot-` + idS + `
! rbd: unprotecting snap failed: (16) Device or resource busy
? 16`, func(d *Driver) error { return d.DeleteSnapshot(context.Background(), sS) }, drivers.KindBusy},

		{"volume from a snapshot that is gone", `
$RBD info --format json volume-` + idB + `
! rbd: error opening image volume-` + idB + `: (2) No such file or directory
? 2
$RBD snap ls --format json volume-` + idA + `
[]`, func(d *Driver) error { _, err := d.CreateVolumeFromSnapshot(context.Background(), vB, sS); return err }, drivers.KindNotFound},

		{"extend of a volume that is gone", `
$RBD info --format json volume-` + idA + `
` + noA, func(d *Driver) error { return d.ExtendVolume(context.Background(), vA, 2) }, drivers.KindNotFound},

		{"cluster unreachable", `
$RBD info --format json volume-` + idA + `
! 2026-11-25T09:22:05.180+0000 7f778b948380  0 monclient(hunting): authenticate timed out after 300
! rbd: couldn't connect to the cluster!
? 110`, func(d *Driver) error { _, err := d.CreateVolume(context.Background(), vA); return err }, drivers.KindUnavailable},

		{"ceph df without monitors", `
$CEPH df --format json
! 2026-11-25T09:22:11.340+0000 7f2f203ff6c0  0 monclient(hunting): authenticate timed out after 300
! [errno 110] RADOS timed out (error connecting to the cluster)
? 1`, func(d *Driver) error { _, err := d.GetVolumeStats(context.Background()); return err }, drivers.KindUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := transcriptDriver(t, tc.script)
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
			// The error names the command, its exit code and its stderr.
			if ce, ok := drivers.AsCommandError(err); ok && (!strings.Contains(err.Error(), ce.Args[0]) || !strings.Contains(err.Error(), fmt.Sprintf("exit %d", ce.ExitCode))) {
				t.Fatalf("error lost the command or its exit code: %v", err)
			}
			if tc.want == drivers.KindUnavailable && !tc.want.Retryable() {
				t.Fatal("unavailable must be retryable")
			}
		})
	}
}

// The commands a clone of a volume runs, in order, on a cluster where
// nothing of it exists yet.
func TestTranscriptClonedVolume(t *testing.T) {
	snap := "volume-" + idA + "@volume-" + idC + ".clone_snap"
	d, _ := transcriptDriver(t, `
$RBD info --format json volume-`+idC+`
! rbd: error opening image volume-`+idC+`: (2) No such file or directory
? 2
$RBD snap ls --format json volume-`+idA+`
[]
$RBD snap create --no-progress `+snap+`
$RBD snap protect `+snap+`
$RBD clone --image-feature layering volumes/`+snap+` volumes/volume-`+idC+`
$RBD info --format json volume-`+idC+`
{"name":"volume-`+idC+`","size":1073741824,"parent":{"pool":"volumes","pool_namespace":"","image":"volume-`+idA+`","id":"102e8e236f02","snapshot":"volume-`+idC+`.clone_snap","trash":false,"overlap":1073741824}}
$RBD resize --no-progress --size 2048 volume-`+idC)
	if _, err := d.CreateClonedVolume(context.Background(), drivers.Volume{ID: idC, SizeGB: 2}, drivers.Volume{ID: idA, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestTranscriptWriteVolumeSendsDiff(t *testing.T) {
	d, tr := transcriptDriver(t, `
$RBD info --format json volume-`+idA+`
`+infoSmall+`
$RBD import-diff --no-progress - volume-`+idA)
	data := append(bytes.Repeat([]byte{0}, diffChunk), bytes.Repeat([]byte{7}, diffChunk/2+5)...)
	if err := d.WriteVolume(context.Background(), drivers.Volume{ID: idA, SizeGB: 1}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	img, size := applyDiff(t, tr.Stdin[1], 8<<20)
	if size != 8<<20 || !bytes.Equal(img[:len(data)], data) || bytes.Count(img[len(data):], []byte{0}) != len(img)-len(data) {
		t.Fatalf("diff stream does not rebuild the input (size %d)", size)
	}
}

func TestTranscriptWriteVolumeTooLong(t *testing.T) {
	d, _ := transcriptDriver(t, `
$RBD info --format json volume-`+idA+`
`+infoSmall+`
$RBD import-diff --no-progress - volume-`+idA)
	r := io.LimitReader(neverZero{}, 8<<20+1)
	if err := d.WriteVolume(context.Background(), drivers.Volume{ID: idA, SizeGB: 1}, r); !drivers.IsKind(err, drivers.KindInvalid) {
		t.Fatalf("want invalid, got %v", err)
	}
}

type neverZero struct{}

func (neverZero) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 1
	}
	return len(p), nil
}

// applyDiff decodes an rbd diff v1 stream onto a zero-filled image, failing
// the test on anything import-diff would reject.
func applyDiff(t *testing.T, stream []byte, imageSize int64) ([]byte, int64) {
	t.Helper()
	const header = "rbd diff v1\n"
	if !bytes.HasPrefix(stream, []byte(header)) {
		t.Fatalf("no diff header: %q", stream[:min(len(stream), 16)])
	}
	img := bytes.Repeat([]byte{0xEE}, int(imageSize)) // not zeros: "z" must clear
	s := stream[len(header):]
	size := int64(-1)
	for {
		if len(s) == 0 {
			t.Fatal("diff stream ends without an 'e' record")
		}
		tag := s[0]
		s = s[1:]
		switch tag {
		case 's':
			size = int64(binary.LittleEndian.Uint64(s))
			s = s[8:]
		case 'w', 'z':
			off, n := binary.LittleEndian.Uint64(s), binary.LittleEndian.Uint64(s[8:])
			s = s[16:]
			if off+n > uint64(imageSize) {
				t.Fatalf("record past the image end: %d+%d", off, n)
			}
			if tag == 'w' {
				copy(img[off:off+n], s[:n])
				s = s[n:]
			} else {
				clear(img[off : off+n])
			}
		case 'e':
			if len(s) != 0 {
				t.Fatalf("%d bytes after the 'e' record", len(s))
			}
			return img, size
		default:
			t.Fatalf("unknown diff record %q", tag)
		}
	}
}

func TestTranscriptReadVolumeStreams(t *testing.T) {
	d, _ := transcriptDriver(t, `
$RBD export --no-progress volume-`+idA+` -
raw bytes`)
	var buf bytes.Buffer
	if err := d.ReadVolume(context.Background(), drivers.Volume{ID: idA, SizeGB: 1}, &buf); err != nil || buf.String() != "raw bytes\n" {
		t.Fatalf("read: %q %v", buf.String(), err)
	}
}

func TestTranscriptStats(t *testing.T) {
	d, _ := transcriptDriver(t, `
$CEPH df --format json
{"stats":{"total_bytes":2147483648,"total_avail_bytes":2147439870,"total_used_bytes":43778},"pools":[{"name":"device_health_metrics","id":1,"stats":{"stored":0,"objects":0,"kb_used":0,"bytes_used":0,"percent_used":0,"max_avail":2040065408}},{"name":"volumes","id":2,"stats":{"stored":1073741824,"objects":260,"kb_used":1048577,"bytes_used":1073741824,"percent_used":0.3,"max_avail":3221225472}}]}
$CEPH osd pool get-quota volumes --format json
{"pool_name":"volumes","pool_id":2,"quota_max_objects":0,"current_num_objects":260,"quota_max_bytes":2147483648,"current_num_bytes":1073741824}
$RBD ls -l --format json
[{"image":"volume-`+idA+`","id":"102e8e236f02","size":1073741824,"format":2},{"image":"volume-`+idA+`","id":"102e8e236f02","snapshot":"snapshot-`+idS+`","snapshot_id":4,"size":1073741824,"format":2,"protected":"true"},{"image":"volume-`+idB+`","id":"1042d82970a7","size":2147483648,"parent":{"pool":"volumes","pool_namespace":"","image":"volume-`+idA+`","snapshot":"snapshot-`+idS+`"},"format":2},{"image":"volume-`+idC+`.deleted","id":"105e19077a39","size":1073741824,"format":2}]
$CEPH mon dump --format json
{"epoch":1,"fsid":"b6a5ebab-9557-4b68-8026-acedd1894bbc","mons":[{"rank":0,"name":"a","public_addrs":{"addrvec":[{"type":"v2","addr":"127.0.0.1:3300","nonce":0}]},"addr":"127.0.0.1:3300/0","public_addr":"127.0.0.1:3300/0"}],"quorum":[0]}`)
	s, err := d.GetVolumeStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The 2 GiB quota caps the pool: 1 GiB stored, 1 GiB left of it.
	want := drivers.Stats{TotalCapacityGB: 2, FreeCapacityGB: 1, ProvisionedCapacityGB: 4, ThinProvisioningSupport: true,
		MaxOverSubscriptionRatio: 20, TotalVolumes: 2, LocationInfo: "rbd:b6a5ebab-9557-4b68-8026-acedd1894bbc:volumes"}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Fatalf("stats:\n got %+v\nwant %+v", s, want)
	}
}

// A configured cephx user and keyring reach every command (rbd and ceph)
// and the connection_info; the key itself never does.
func TestTranscriptCephxUser(t *testing.T) {
	auth := "--id cinder --conf /etc/ceph/ceph.conf --keyring /etc/ceph/ceph.client.cinder.keyring"
	steps := exectest.Parse(`
$ rbd ` + auth + ` --pool volumes info --format json volume-` + idA + `
` + infoA + `
$ ceph ` + auth + ` mon dump --format json
{"epoch":1,"fsid":"b6a5ebab-9557-4b68-8026-acedd1894bbc","mons":[{"rank":0,"name":"a","addr":"10.0.0.5:6789/0","public_addr":"10.0.0.5:6789/0"}],"quorum":[0]}`)
	tr := exectest.New(t, steps...).RequireEnv("LC_ALL=C")
	d, err := Open(drivers.Backend{Name: "ceph-1", Driver: "rbd", Options: map[string]any{
		"user": "cinder", "keyring": "/etc/ceph/ceph.client.cinder.keyring", "secret_uuid": "457eb676-33da-42ec-9a8c-9293d545c337"}}, tr)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := d.InitializeConnection(context.Background(), drivers.Volume{ID: idA, SizeGB: 1}, "att-1", drivers.Connector{Host: "compute-1"})
	if err != nil {
		t.Fatal(err)
	}
	if ci.DriverVolumeType != "rbd" || ci.Data["auth_username"] != "cinder" || ci.Data["secret_uuid"] != "457eb676-33da-42ec-9a8c-9293d545c337" ||
		fmt.Sprint(ci.Data["hosts"]) != "[10.0.0.5]" || fmt.Sprint(ci.Data["ports"]) != "[6789]" {
		t.Fatalf("connection info %s %+v", ci.DriverVolumeType, ci.Data)
	}
	if _, ok := ci.Data["keyring"]; ok {
		t.Fatalf("connection info names the keyring: %+v", ci.Data)
	}
}

func TestBadIDRunsNothing(t *testing.T) {
	d, _ := transcriptDriver(t, "")
	ctx := context.Background()
	for _, id := range []string{"../etc/passwd", "x; rm -rf /", "-rf", "", "0B5CBF4E-8F0A-4C1E-9D5C-2F1A7A3C9E10"} {
		good := drivers.Volume{ID: idA, SizeGB: 1}
		calls := []error{
			func() error { _, err := d.CreateVolume(ctx, drivers.Volume{ID: id, SizeGB: 1}); return err }(),
			d.DeleteVolume(ctx, drivers.Volume{ID: id}),
			func() error { _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: id, VolumeID: idA}); return err }(),
			func() error { _, err := d.CreateClonedVolume(ctx, good, drivers.Volume{ID: id, SizeGB: 1}); return err }(),
			d.WriteVolume(ctx, drivers.Volume{ID: id, SizeGB: 1}, strings.NewReader("x")),
		}
		for i, err := range calls {
			if !drivers.IsKind(err, drivers.KindInvalid) {
				t.Errorf("id %q, call %d: want invalid, got %v", id, i, err)
			}
		}
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	for _, o := range []map[string]any{
		{"pool": "-rf"}, {"user": "a b"}, {"conf": "ceph.conf"}, {"keyring": "rel/keyring"},
		{"max_over_subscription_ratio": 0.5}, {"reserved_percentage": 101}, {"poool": "typo"},
	} {
		if _, err := Open(drivers.Backend{Name: "x", Driver: "rbd", Options: o}, nil); err == nil {
			t.Errorf("options %v accepted", o)
		}
	}
}

func TestTranscriptWriteVolumeInputFails(t *testing.T) {
	d, _ := transcriptDriver(t, `
$RBD info --format json volume-`+idA+`
`+infoSmall+`
$RBD import-diff --no-progress - volume-`+idA)
	r := io.MultiReader(bytes.NewReader(make([]byte, 100)), failingReader{})
	err := d.WriteVolume(context.Background(), drivers.Volume{ID: idA, SizeGB: 1}, r)
	if err == nil || !strings.Contains(err.Error(), "backup store went away") {
		t.Fatalf("want the input's error, got %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, fmt.Errorf("backup store went away") }
