package remotefs

import (
	"context"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
)

// Real output of GNU df 9.1 (`df -B1 --output=size,avail DIR`), recorded
// on this machine: ext4 (/), tmpfs (/dev/shm), devtmpfs (/dev), proc, a
// full ext4 on a loop device (root filled its reserve too: Avail 0, not
// negative) and a full 1 MiB tmpfs. df right-aligns each column to its
// widest entry, header included.
const (
	dfExt4     = "   1B-blocks       Avail\n270553174016 82864152576\n"
	dfTmpfs    = "  1B-blocks       Avail\n25276502016 25276502016\n"
	dfDevtmpfs = "  1B-blocks       Avail\n12630487040 12630487040\n"
	dfProc     = "1B-blocks Avail\n        0     0\n"
	dfFullExt4 = "1B-blocks Avail\n 57381888     0\n"
	dfFullTmp  = "1B-blocks Avail\n  1048576     0\n"
)

func TestParseDF(t *testing.T) {
	for _, tc := range []struct {
		name        string
		out         string
		total, free int64
	}{
		{"ext4", dfExt4, 270553174016, 82864152576},
		{"tmpfs", dfTmpfs, 25276502016, 25276502016},
		{"devtmpfs", dfDevtmpfs, 12630487040, 12630487040},
		{"proc: no figures", dfProc, 0, 0},
		{"full ext4", dfFullExt4, 57381888, 0},
		{"full tmpfs", dfFullTmp, 1048576, 0},
	} {
		total, free, err := parseDF(tc.out)
		if err != nil || total != tc.total || free != tc.free {
			t.Errorf("%s: got %d, %d, %v; want %d, %d", tc.name, total, free, err, tc.total, tc.free)
		}
	}
	for _, bad := range []string{
		"",
		"   1B-blocks       Avail\n",
		"270553174016 82864152576\n", // no header: not df's output
		// df without --output (recorded here): another format entirely.
		"Filesystem        1B-blocks        Used   Available Use% Mounted on\n/dev/vda       270553174016 15926001664 81867292672  17% /\n",
		// a third column (--output=size,avail,target, recorded here)
		"   1B-blocks       Avail Mounted on\n270553174016 81867288576 /\n",
		"1B-blocks Avail\n        - 1000\n", // df prints - for a figure it does not know
		"1B-blocks Avail\n     100    -\n",
		"1B-blocks Avail\n    1e12 1000\n",
		"1B-blocks Avail\n99999999999999999999 1\n",
	} {
		if total, free, err := parseDF(bad); err == nil {
			t.Errorf("parseDF(%q) = %d, %d; want an error", bad, total, free)
		}
	}
}

func TestFits(t *testing.T) {
	d := &Driver{cfg: Config{MaxOverSubscriptionRatio: 2, ReservedPercentage: 10}}
	for _, tc := range []struct {
		name string
		c    shareCapacity
		size int64
		fits bool
	}{
		{"empty share", shareCapacity{total: 100, free: 100}, 50, true},
		{"within the ratio", shareCapacity{total: 100, free: 50, provisioned: 150}, 30, true},
		{"beyond the ratio", shareCapacity{total: 100, free: 50, provisioned: 150}, 31, false},
		{"free only in the reserve", shareCapacity{total: 100, free: 10}, 1, false},
		{"no figures (total 0)", shareCapacity{}, 1, false},
	} {
		if got := d.fits(tc.c, tc.size); got != tc.fits {
			t.Errorf("%s: fits=%v, want %v", tc.name, got, tc.fits)
		}
	}
}

// shareDir is where the transcripts' shares are mounted.
func shareDir(share string) string { return MountPoint("/var/lib/ember/mnt", share) }

// capacitySteps is what capacity runs on one share: df, then find of the
// volume files, which answers "size name" lines.
func capacitySteps(share, df, files string) []exectest.Step {
	dir := shareDir(share)
	return []exectest.Step{
		{Args: []string{"df", "-B1", "--output=size,avail", dir}, Stdout: df},
		{Args: []string{"find", dir, "-ignore_readdir_race", "-maxdepth", "1", "-type", "f",
			"-regextype", "posix-extended", "-regex", `.*/volume-[0-9a-f-]{36}(\.[0-9a-f-]{36})?`, "-printf", "%s %f\n"},
			Stdout: files},
	}
}

func sharesDriver(t *testing.T, shares []string, reserved int, ratio float64, steps []exectest.Step) *Driver {
	t.Helper()
	d, err := New(Config{Driver: "glusterfs", Shares: shares, Dir: shareDir, Format: "raw",
		MaxOverSubscriptionRatio: ratio, ReservedPercentage: reserved}, exectest.New(t, steps...))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// chooseShare reads every share's figures and picks the one with the most
// free space among those the volume fits on, whatever their order.
func TestChooseShare(t *testing.T) {
	const (
		s1, s2, s3 = "gfs1.example.com:/gv0", "gfs2.example.com:/gv1", "gfs3.example.com:/gv2"
		other      = "volume-7d1f3e2a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
	)
	type share struct{ name, df, files string }
	for _, tc := range []struct {
		name     string
		shares   []share
		reserved int
		ratio    float64
		want     string // "" when none fits
	}{
		{"the second has more free space", []share{{s1, dfTmpfs, ""}, {s2, dfExt4, ""}}, 5, 20, s2},
		{"the first has more free space", []share{{s1, dfExt4, ""}, {s2, dfTmpfs, ""}}, 5, 20, s1},
		{"equal free space: the first listed", []share{{s1, dfDevtmpfs, ""}, {s2, dfDevtmpfs, ""}}, 5, 20, s1},
		{"full shares are skipped", []share{{s1, dfFullExt4, ""}, {s2, dfDevtmpfs, ""}, {s3, dfFullTmp, ""}}, 5, 20, s2},
		// 40% of 270 GB is more than its 82 GB free; tmpfs keeps 15 of its 25.
		{"the most free space, all of it in the reserve", []share{{s1, dfExt4, ""}, {s2, dfTmpfs, ""}}, 40, 20, s2},
		// 255 GB of volume files on s1 leave less than 1 GiB within 0.95 × 270 GB.
		{"the most free space, over-subscribed", []share{{s1, dfExt4, "255000000000 " + other + "\n1073741824 " + other + ".11111111-1111-4111-8111-111111111111\n"},
			{s2, dfTmpfs, ""}, {s3, dfDevtmpfs, ""}}, 5, 1, s2},
		{"none fits", []share{{s1, dfFullExt4, ""}, {s2, dfProc, ""}, {s3, dfFullTmp, ""}}, 5, 20, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names []string
			var steps []exectest.Step
			for _, s := range tc.shares {
				names = append(names, s.name)
				steps = append(steps, capacitySteps(s.name, s.df, s.files)...)
			}
			d := sharesDriver(t, names, tc.reserved, tc.ratio, steps)
			got, err := d.chooseShare(context.Background(), drivers.GiB)
			if tc.want == "" {
				if !drivers.IsKind(err, drivers.KindNoCapacity) {
					t.Fatalf("want no_capacity, got %q %v", got, err)
				}
				for _, s := range names { // the error says why each share was left
					if !strings.Contains(err.Error(), s+": ") {
						t.Fatalf("error does not name %s: %v", s, err)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %s", got, err, tc.want)
			}
		})
	}
}

// A share whose figures cannot be read fails the placement, as unavailable
// (retried): place has just looked for the volume on every share, so a
// dead mount would have failed that first.
func TestChooseShareUnreadable(t *testing.T) {
	const s1, s2 = "gfs1.example.com:/gv0", "gfs2.example.com:/gv1"
	steps := capacitySteps(s1, dfTmpfs, "")
	steps = append(steps, exectest.Step{Args: []string{"df", "-B1", "--output=size,avail", shareDir(s2)},
		Stderr: "df: " + shareDir(s2) + ": Transport endpoint is not connected\n", ExitCode: 1})
	d := sharesDriver(t, []string{s1, s2}, 5, 20, steps)
	if got, err := d.chooseShare(context.Background(), drivers.GiB); !drivers.IsKind(err, drivers.KindUnavailable) {
		t.Fatalf("want unavailable, got %q %v", got, err)
	}
}

// A new volume lands on the chosen share: looked for on every share first
// (a retried create must not make a second copy), then made there.
func TestCreateVolumeOnTheShareWithMostFreeSpace(t *testing.T) {
	const s1, s2 = "gfs1.example.com:/gv0", "gfs2.example.com:/gv1"
	base1, base2 := shareDir(s1)+"/volume-"+vid, shareDir(s2)+"/volume-"+vid
	steps := exectest.Parse(`
$ test -e ` + base1 + `
? 1
$ test -e ` + base2 + `
? 1
`)
	steps = append(steps, capacitySteps(s1, dfTmpfs, "")...)
	steps = append(steps, capacitySteps(s2, dfExt4, "")...)
	steps = append(steps, exectest.Parse(`
$ qemu-img create -f raw `+base2+`.tmp-create 1073741824
Formatting '`+base2+`.tmp-create', fmt=raw size=1073741824
$ mv -f -T -- `+base2+`.tmp-create `+base2+`
`)...)
	d := sharesDriver(t, []string{s1, s2}, 5, 20, steps)
	mu, err := d.CreateVolume(context.Background(), drivers.Volume{ID: vid, SizeGB: 1})
	if err != nil || mu.ProviderLocation != s2 {
		t.Fatalf("create: %+v %v, want it on %s", mu, err, s2)
	}
}
