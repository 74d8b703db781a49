package lvm

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
)

// Transcript tests cover what no machine here can run (snapshots, thin
// pools, data copies need device-mapper). The outputs below are LVM's: the
// JSON report layout, the error messages and the success lines (saysCreated
// and the like, checked by TestRealOutputMatchesTranscripts) were captured
// from lvm2 2.03.16 (`--reportformat json`, LC_ALL=C); attr strings follow
// lvs(8). Mirrors cannot be made here at all ("Can't create mirror without
// using device-mapper kernel driver"): their lvcreate prints the same
// success line, and the --nosync warning is lvm2's own wording.

const (
	vid  = "0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10"
	vid2 = "7d1f3e2a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
	sid  = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
)

// lvRowJSON is one row of `lvs --reportformat json -o lvFields`.
func lvRowJSON(name, size, attr, origin, pool, dataPercent, tags string) string {
	return fmt.Sprintf(`{"vg_name":"cinder-volumes", "lv_name":%q, "lv_size":%q, "lv_attr":%q, "origin":%q, "pool_lv":%q, "data_percent":%q, "lv_tags":%q}`,
		name, size, attr, origin, pool, dataPercent, tags)
}

func lvsJSON(rows ...string) string {
	return "  {\n      \"report\": [\n          {\n              \"lv\": [\n                  " +
		strings.Join(rows, ",\n                  ") + "\n              ]\n          }\n      ]\n  }\n"
}

func vgsJSON(fields string) string {
	return "  {\n      \"report\": [\n          {\n              \"vg\": [\n                  {" + fields + "}\n              ]\n          }\n      ]\n  }\n"
}

// step is one command; args split on spaces like exectest.Parse.
func step(args, stdout string) exectest.Step {
	return exectest.Step{Args: strings.Fields(args), Stdout: stdout}
}

func fail(args string, code int, stderr string) exectest.Step {
	return exectest.Step{Args: strings.Fields(args), ExitCode: code, Stderr: stderr}
}

const lvsB = "lvs --reportformat json --units b --nosuffix -o " + lvFields + " "

func lookupNone(name string) exectest.Step {
	return fail(lvsB+"cinder-volumes/"+name, 5,
		"  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n  Failed to find logical volume \"cinder-volumes/"+name+"\"\n")
}

func lookup(name, row string) exectest.Step {
	return step(lvsB+"cinder-volumes/"+name, lvsJSON(row))
}

func freeB(bytes string) exectest.Step {
	return step("vgs --reportformat json --units b --nosuffix -o vg_name,vg_free cinder-volumes",
		vgsJSON(`"vg_name":"cinder-volumes", "vg_free":"`+bytes+`"`))
}

// What lvm2 2.03.16 prints on stdout when a command succeeds (LC_ALL=C);
// TestRealOutputMatchesTranscripts checks them against the loop-device VG.
func saysCreated(name string) string { return "  Logical volume \"" + name + "\" created.\n" }
func saysChanged(vg, name string) string {
	return "  Logical volume " + vg + "/" + name + " changed.\n"
}
func saysRemoved(name string) string {
	return "  Logical volume \"" + name + "\" successfully removed.\n"
}
func saysRenamed(vg, from, to string) string {
	return "  Renamed \"" + from + "\" to \"" + to + "\" in volume group \"" + vg + "\"\n"
}

// saysResized is lvextend's report; sizes in GiB, extents of 4 MiB.
func saysResized(vg, name string, fromGB, toGB int) string {
	return fmt.Sprintf("  Size of logical volume %s/%s changed from %d.00 GiB (%d extents) to %d.00 GiB (%d extents).\n"+
		"  Logical volume %s/%s successfully resized.\n", vg, name, fromGB, fromGB*256, toGB, toGB*256, vg, name)
}

// lvremove's --config value holds spaces: it is one argument.
func lvremove(config, target string) []string {
	return []string{"lvremove", "--config", config, "-f", target}
}

func open(t *testing.T, opts map[string]any, steps ...exectest.Step) (*Driver, *exectest.Transcript) {
	t.Helper()
	// LC_ALL=C: the error messages the driver reads are LVM's English ones.
	tr := exectest.New(t, steps...).RequireEnv("LC_ALL=C")
	d, err := New(drivers.Backend{Name: "lvm-1", Driver: "lvm", Options: opts}, tr)
	if err != nil {
		t.Fatal(err)
	}
	return d, tr
}

var (
	vol1G  = lvRowJSON("volume-"+vid, "1073741824", "-wi-a-----", "", "", "", "")
	snap1G = lvRowJSON("_snapshot-"+sid, "1073741824", "swi-a-s---", "volume-"+vid, "", "0.01", "")
)

func TestCreateVolumeArgv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		thin    bool
		mirrors int
		sizeGB  int
		want    string
	}{
		{"thick", false, 0, 1, "lvcreate -n volume-x cinder-volumes -L 1g"},
		{"thin", true, 0, 10, "lvcreate -T -V 10g -n volume-x cinder-volumes/cinder-volumes-pool"},
		{"mirror small", false, 1, 100, "lvcreate -n volume-x cinder-volumes -L 100g --type=mirror -m 1 --nosync --mirrorlog mirrored"},
		// Cinder: from 1.5 TiB the region size is the next power of two of the size in TiB.
		{"mirror 1.5T", false, 2, 1536, "lvcreate -n volume-x cinder-volumes -L 1536g --type=mirror -m 2 --nosync --mirrorlog mirrored -R 2"},
		{"mirror 5T", false, 1, 5120, "lvcreate -n volume-x cinder-volumes -L 5120g --type=mirror -m 1 --nosync --mirrorlog mirrored -R 8"},
	} {
		vg := &volumeGroup{name: "cinder-volumes", thin: tc.thin}
		if got := strings.Join(vg.createArgs("volume-x", tc.sizeGB, tc.mirrors), " "); got != tc.want {
			t.Errorf("%s:\n  got  %s\n  want %s", tc.name, got, tc.want)
		}
	}
}

func TestRename(t *testing.T) {
	a, b := "volume-"+vid, "volume-"+vid2
	d, _ := open(t, nil,
		// lvm2 2.03.16's words, as on the loop-device VG
		step("lvrename cinder-volumes "+a+" "+b, saysRenamed("cinder-volumes", a, b)),
		fail("lvrename cinder-volumes "+a+" "+b, 5, "  Existing logical volume \""+a+"\" not found in volume group \"cinder-volumes\"\n"),
	)
	ctx := context.Background()
	if err := d.vg.rename(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	if err := d.vg.rename(ctx, a, b); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("rename of a missing LV: want not_found, got %v", err)
	}
	// Names that could read as options, or are not LVM's, run nothing.
	for _, pair := range [][2]string{{"-f", b}, {a, "--yes"}, {a, "x y"}, {"", b}, {a, a}} {
		if err := d.vg.rename(ctx, pair[0], pair[1]); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("rename %q to %q: want invalid, got %v", pair[0], pair[1], err)
		}
	}
}

func TestThinCreateMakesPoolFirst(t *testing.T) {
	d, _ := open(t, map[string]any{"lvm_type": "thin"},
		lookupNone("cinder-volumes-pool"),
		step("vgs --reportformat json --units g --nosuffix -o "+vgFields+" cinder-volumes",
			vgsJSON(`"vg_name":"cinder-volumes", "vg_size":"10.00", "vg_free":"10.00", "lv_count":"0", "vg_uuid":"Lw8Ll5-OBCp-vHQm-Ly6Z-KFUk-Qvk9-kUZYA3"`)),
		// 95% of the free space, as Cinder's _calculate_thin_pool_size.
		step("lvcreate -T -L 9.5g cinder-volumes/cinder-volumes-pool", ""),
		lookupNone("volume-"+vid),
		step("lvcreate -T -V 20g -n volume-"+vid+" cinder-volumes/cinder-volumes-pool", ""),
		// the pool is known now: a second volume asks for it no more
		lookupNone("volume-"+vid2),
		step("lvcreate -T -V 1g -n volume-"+vid2+" cinder-volumes/cinder-volumes-pool", ""),
	)
	ctx := context.Background()
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 20}); err != nil { // oversubscribed: thin
		t.Fatal(err)
	}
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid2, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestMirroredCreateChecksSpaceForEveryCopy(t *testing.T) {
	d, _ := open(t, map[string]any{"lvm_mirrors": 1},
		lookupNone("volume-"+vid),
		freeB("3221225472"), // 3 GiB free: 2 GiB x 2 copies do not fit
	)
	_, err := d.CreateVolume(context.Background(), drivers.Volume{ID: vid, SizeGB: 2})
	if !drivers.IsKind(err, drivers.KindNoCapacity) || !strings.Contains(err.Error(), "2 copies") {
		t.Fatalf("want no_capacity naming the copies, got %v", err)
	}
}

// A mirrored create reaches lvcreate with Cinder's mirror arguments, and
// from 1.5 TiB with a region size: the next power of two of the size in
// TiB, in MiB (-R), so the mirror log stays within LVM's limits.
func TestMirroredCreate(t *testing.T) {
	small, large := "volume-"+vid, "volume-"+vid2
	// lvm2 warns on stderr that a --nosync mirror starts unsynchronised.
	nosync := "  WARNING: New mirror won't be synchronised. Don't read what you didn't write!\n"
	d, _ := open(t, map[string]any{"lvm_mirrors": 1},
		lookupNone(small),
		freeB("5368709120"), // 5 GiB: 2 GiB x 2 copies fit
		exectest.Step{Args: strings.Fields("lvcreate -n " + small + " cinder-volumes -L 2g --type=mirror -m 1 --nosync --mirrorlog mirrored"),
			Stdout: saysCreated(small), Stderr: nosync},
		// redelivered: the mirror is there with its size, nothing is made
		lookup(small, lvRowJSON(small, "2147483648", "mwi-a-m---", "", "", "", "")),
		lookupNone(large),
		freeB("5497558138880"), // 5 TiB: 2 TiB x 2 copies fit
		exectest.Step{Args: strings.Fields("lvcreate -n " + large + " cinder-volumes -L 2048g --type=mirror -m 1 --nosync --mirrorlog mirrored -R 2"),
			Stdout: saysCreated(large), Stderr: nosync},
	)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if mu, err := d.CreateVolume(ctx, drivers.Volume{ID: vid, SizeGB: 2}); err != nil || mu.ProviderLocation != "cinder-volumes" {
			t.Fatalf("create #%d: %+v %v", i+1, mu, err)
		}
	}
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: vid2, SizeGB: 2048}); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotCreateIdempotentAndConflict(t *testing.T) {
	d, _ := open(t, nil,
		lookupNone("_snapshot-"+sid),
		lookup("volume-"+vid, vol1G),
		step("lvcreate --name _snapshot-"+sid+" --snapshot cinder-volumes/volume-"+vid+" -L 1g", saysCreated("_snapshot-"+sid)),
		lookup("_snapshot-"+sid, snap1G), // redelivery: same origin
		lookup("_snapshot-"+sid, snap1G), // another volume's snapshot with this id
		lookupNone("_snapshot-"+sid),
		lookupNone("volume-"+vid2),
	)
	ctx := context.Background()
	s := drivers.Snapshot{ID: sid, VolumeID: vid, VolumeSizeGB: 1}
	for i := 0; i < 2; i++ {
		if _, err := d.CreateSnapshot(ctx, s); err != nil {
			t.Fatalf("snapshot #%d: %v", i+1, err)
		}
	}
	if _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: sid, VolumeID: vid2}); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("same snapshot id, other volume: want conflict, got %v", err)
	}
	if _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: sid, VolumeID: vid2}); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("snapshot of a missing volume: want not_found, got %v", err)
	}
}

func TestThinSnapshotHasNoSize(t *testing.T) {
	thinVol := lvRowJSON("volume-"+vid, "1073741824", "Vwi-a-tz--", "", "cinder-volumes-pool", "0.00", "")
	d, _ := open(t, map[string]any{"lvm_type": "thin"},
		lookupNone("_snapshot-"+sid),
		lookup("volume-"+vid, thinVol),
		step("lvcreate --name _snapshot-"+sid+" --snapshot cinder-volumes/volume-"+vid, ""),
	)
	if _, err := d.CreateSnapshot(context.Background(), drivers.Snapshot{ID: sid, VolumeID: vid}); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteVolumeWithSnapshotIsBusy(t *testing.T) {
	origin := lvRowJSON("volume-"+vid, "1073741824", "owi-a-s---", "", "", "", "")
	d, _ := open(t, nil, step(lvsB+"cinder-volumes", lvsJSON(origin, snap1G)))
	err := d.DeleteVolume(context.Background(), drivers.Volume{ID: vid, SizeGB: 1})
	if !drivers.IsKind(err, drivers.KindBusy) || !strings.Contains(err.Error(), "_snapshot-"+sid) {
		t.Fatalf("want volume_busy naming the snapshot, got %v", err)
	}
}

func TestThinDeleteIgnoresClonesButNotSnapshots(t *testing.T) {
	thinVol := lvRowJSON("volume-"+vid, "1073741824", "Vwi-a-tz--", "", "cinder-volumes-pool", "1.00", "")
	thinClone := lvRowJSON("volume-"+vid2, "1073741824", "Vwi-a-tz--", "volume-"+vid, "cinder-volumes-pool", "1.00", "")
	thinSnap := lvRowJSON("_snapshot-"+sid, "1073741824", "Vwi---tz-k", "volume-"+vid, "cinder-volumes-pool", "1.00", "")
	d, _ := open(t, map[string]any{"lvm_type": "thin"},
		step(lvsB+"cinder-volumes", lvsJSON(thinVol, thinClone, thinSnap)),
		step(lvsB+"cinder-volumes", lvsJSON(thinVol, thinClone)),
		// thin: no zeroing, the pool hands out zeroed blocks
		exectest.Step{Args: lvremove(removeConfig, "cinder-volumes/volume-"+vid)},
	)
	ctx := context.Background()
	if err := d.DeleteVolume(ctx, drivers.Volume{ID: vid}); !drivers.IsKind(err, drivers.KindBusy) {
		t.Fatalf("thin volume with a snapshot: want busy, got %v", err)
	}
	if err := d.DeleteVolume(ctx, drivers.Volume{ID: vid}); err != nil {
		t.Fatalf("thin volume with only a clone: %v", err)
	}
}

func TestDeleteZeroesThenRetriesLvremoveAsCinder(t *testing.T) {
	dev := "/dev/cinder-volumes/volume-" + vid
	d, _ := open(t, nil,
		step(lvsB+"cinder-volumes", lvsJSON(vol1G)),
		step("dd count=0 if=/dev/zero of="+dev+" oflag=direct", ""),
		step("dd if=/dev/zero of="+dev+" count=1073741824 bs=1M iflag=count_bytes oflag=direct", ""),
		exectest.Step{Args: lvremove(removeConfig, "cinder-volumes/volume-"+vid), ExitCode: 5,
			Stderr: "  Logical volume cinder-volumes/volume-" + vid + " in use.\n"},
		step("udevadm settle", ""),
		exectest.Step{Args: lvremove("activation { retry_deactivation = 1} devices { ignore_suspended_devices = 1}", "cinder-volumes/volume-"+vid),
			Stdout: saysRemoved("volume-" + vid)},
		// redelivered delete: gone is success
		step(lvsB+"cinder-volumes", lvsJSON()),
	)
	for i := 0; i < 2; i++ {
		if err := d.DeleteVolume(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
}

func TestClearSizeAndBufferedDevice(t *testing.T) {
	dev := "/dev/cinder-volumes/volume-" + vid
	d, _ := open(t, map[string]any{"volume_clear_size": 100},
		step(lvsB+"cinder-volumes", lvsJSON(vol1G)),
		fail("dd count=0 if=/dev/zero of="+dev+" oflag=direct", 1, "dd: failed to open '"+dev+"': Invalid argument\n"),
		// no O_DIRECT: the zeroes must reach the disk before the LV goes
		step("dd if=/dev/zero of="+dev+" count=104857600 bs=1M iflag=count_bytes conv=fdatasync", ""),
		exectest.Step{Args: lvremove(removeConfig, "cinder-volumes/volume-"+vid)},
	)
	if err := d.DeleteVolume(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteSnapshotZeroesCowDevice(t *testing.T) {
	cow := "/dev/mapper/cinder--volumes-_snapshot--" + strings.ReplaceAll(sid, "-", "--") + "-cow"
	d, _ := open(t, nil,
		lookup("_snapshot-"+sid, snap1G),
		step("dd count=0 if=/dev/zero of="+cow+" oflag=direct", ""),
		step("dd if=/dev/zero of="+cow+" count=1073741824 bs=1M iflag=count_bytes oflag=direct", ""),
		exectest.Step{Args: lvremove(removeConfig, "cinder-volumes/_snapshot-"+sid)},
		lookupNone("_snapshot-"+sid),
	)
	for i := 0; i < 2; i++ {
		if err := d.DeleteSnapshot(context.Background(), drivers.Snapshot{ID: sid, VolumeID: vid}); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
}

func TestVolumeFromSnapshotCopiesAndResumes(t *testing.T) {
	snapDev, volDev := "/dev/cinder-volumes/_snapshot-"+sid, "/dev/cinder-volumes/volume-"+vid2
	pending := lvRowJSON("volume-"+vid2, "2147483648", "-wi-a-----", "", "", "", copyPendingTag)
	done := lvRowJSON("volume-"+vid2, "2147483648", "-wi-a-----", "", "", "", "")
	copySteps := []exectest.Step{
		step("lvchange -a y --yes -K cinder-volumes/_snapshot-"+sid, ""),
		step("dd count=0 if="+snapDev+" of="+volDev+" iflag=direct", ""),
		step("dd count=0 if="+snapDev+" of="+volDev+" oflag=direct", ""),
		step("dd if="+snapDev+" of="+volDev+" count=1073741824 bs=1M iflag=count_bytes,direct oflag=direct", ""),
	}
	var steps []exectest.Step
	steps = append(steps, lookup("_snapshot-"+sid, snap1G), lookupNone("volume-"+vid2), freeB("4286578688"),
		step("lvcreate -n volume-"+vid2+" cinder-volumes -L 2g --addtag "+copyPendingTag, saysCreated("volume-"+vid2)))
	steps = append(steps, copySteps[:3]...)
	// the copy dies (host rebooted, dd killed): the LV keeps its tag
	steps = append(steps, fail(strings.Join(copySteps[3].Args, " "), 1, "dd: error reading '"+snapDev+"': Input/output error\n"))
	// redelivery: the unfinished LV is filled again, then marked done
	steps = append(steps, lookup("_snapshot-"+sid, snap1G), lookup("volume-"+vid2, pending))
	steps = append(steps, copySteps...)
	steps = append(steps, step("lvchange --deltag "+copyPendingTag+" cinder-volumes/volume-"+vid2, saysChanged("cinder-volumes", "volume-"+vid2)))
	// once more: done, nothing to do
	steps = append(steps, lookup("_snapshot-"+sid, snap1G), lookup("volume-"+vid2, done))
	d, _ := open(t, nil, steps...)
	ctx := context.Background()
	v, s := drivers.Volume{ID: vid2, SizeGB: 2}, drivers.Snapshot{ID: sid, VolumeID: vid, VolumeSizeGB: 1}
	if _, err := d.CreateVolumeFromSnapshot(ctx, v, s); drivers.KindOf(err) != drivers.KindBackend {
		t.Fatalf("failed copy: want backend_error, got %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := d.CreateVolumeFromSnapshot(ctx, v, s); err != nil {
			t.Fatalf("redelivery #%d: %v", i+1, err)
		}
	}
}

func TestThinVolumeFromSnapshotIsThinSnapshot(t *testing.T) {
	thinSnap := lvRowJSON("_snapshot-"+sid, "1073741824", "Vwi---tz-k", "volume-"+vid, "cinder-volumes-pool", "1.00", "")
	d, _ := open(t, map[string]any{"lvm_type": "thin"},
		lookup("_snapshot-"+sid, thinSnap),
		lookupNone("volume-"+vid2),
		step("lvcreate --name volume-"+vid2+" --snapshot cinder-volumes/_snapshot-"+sid, ""),
		step("lvextend -L 3g cinder-volumes/volume-"+vid2, saysResized("cinder-volumes", "volume-"+vid2, 1, 3)),
		step("lvchange -a y --yes -K cinder-volumes/_snapshot-"+sid, ""),
		step("lvchange -a y --yes -k n cinder-volumes/volume-"+vid2, ""),
	)
	if _, err := d.CreateVolumeFromSnapshot(context.Background(), drivers.Volume{ID: vid2, SizeGB: 3}, drivers.Snapshot{ID: sid, VolumeID: vid}); err != nil {
		t.Fatal(err)
	}
}

func TestCloneGoesThroughTemporarySnapshot(t *testing.T) {
	temp := "clone-snap-" + vid2
	tempDev, volDev := "/dev/cinder-volumes/"+temp, "/dev/cinder-volumes/volume-"+vid2
	tempRow := lvRowJSON(temp, "1073741824", "swi-a-s---", "volume-"+vid, "", "0.00", "")
	d, _ := open(t, map[string]any{"volume_clear": "none"},
		lookup("volume-"+vid, vol1G),
		lookupNone("volume-"+vid2),
		lookupNone(temp),
		lookup("volume-"+vid, vol1G),
		step("lvcreate --name "+temp+" --snapshot cinder-volumes/volume-"+vid+" -L 1g", ""),
		lookupNone("volume-"+vid2),
		freeB("2143289344"),
		step("lvcreate -n volume-"+vid2+" cinder-volumes -L 1g --addtag "+copyPendingTag, ""),
		step("lvchange -a y --yes -K cinder-volumes/"+temp, ""),
		step("dd count=0 if="+tempDev+" of="+volDev+" iflag=direct", ""),
		step("dd count=0 if="+tempDev+" of="+volDev+" oflag=direct", ""),
		step("dd if="+tempDev+" of="+volDev+" count=1073741824 bs=1M iflag=count_bytes,direct oflag=direct", ""),
		step("lvchange --deltag "+copyPendingTag+" cinder-volumes/volume-"+vid2, ""),
		// the temporary snapshot goes, or the source could never be deleted
		lookup(temp, tempRow),
		exectest.Step{Args: lvremove(removeConfig, "cinder-volumes/"+temp), Stdout: saysRemoved(temp)},
	)
	if _, err := d.CreateClonedVolume(context.Background(), drivers.Volume{ID: vid2, SizeGB: 1}, drivers.Volume{ID: vid, SizeGB: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestStatsThin(t *testing.T) {
	pool := lvRowJSON("cinder-volumes-pool", "9.50", "twi-aotz--", "", "", "20.00", "")
	v1 := lvRowJSON("volume-"+vid, "1.00", "Vwi-a-tz--", "", "cinder-volumes-pool", "50.00", "")
	v2 := lvRowJSON("volume-"+vid2, "2.00", "Vwi-a-tz--", "", "cinder-volumes-pool", "70.00", "")
	d, _ := open(t, map[string]any{"lvm_type": "thin", "reserved_percentage": 5, "max_over_subscription_ratio": 1.5},
		step("hostname", "storage1\n"),
		lookup("cinder-volumes-pool", strings.Replace(pool, `"9.50"`, `"10200547328"`, 1)),
		step("vgs --reportformat json --units g --nosuffix -o "+vgFields+" cinder-volumes",
			vgsJSON(`"vg_name":"cinder-volumes", "vg_size":"10.00", "vg_free":"0.50", "lv_count":"3", "vg_uuid":"Lw8Ll5-OBCp-vHQm-Ly6Z-KFUk-Qvk9-kUZYA3"`)),
		step("lvs --reportformat json --units g --nosuffix -o "+lvFields+" cinder-volumes", lvsJSON(pool, v1, v2)),
	)
	st, err := d.GetVolumeStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Cinder's test_thin_pool_provisioned_capacity figures: 9.5 GiB pool at
	// 20% → 7.6 free; 1 + 2 GiB provisioned.
	if st.TotalCapacityGB != 9.5 || st.FreeCapacityGB != 7.6 || st.ProvisionedCapacityGB != 3 || st.TotalVolumes != 2 ||
		st.LocationInfo != "LVMVolumeDriver:storage1:cinder-volumes:thin:0" || !st.ThinProvisioningSupport ||
		st.ReservedPercentage != 5 || st.MaxOverSubscriptionRatio != 1.5 || st.Extra["thin_pool_data_percent"] != 20.0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStatsMirrors(t *testing.T) {
	d, _ := open(t, map[string]any{"lvm_mirrors": 1},
		step("hostname", "storage1\n"),
		step("vgs --reportformat json --units g --nosuffix -o "+vgFields+" cinder-volumes",
			vgsJSON(`"vg_name":"cinder-volumes", "vg_size":"30.00", "vg_free":"10.99", "lv_count":"0", "vg_uuid":"x"`)),
		step("lvs --reportformat json --units g --nosuffix -o "+lvFields+" cinder-volumes", lvsJSON()),
		// Cinder's test_brick_lvm PV figures
		step("pvs --reportformat json --units g --nosuffix -o "+pvFields,
			"  {\n      \"report\": [\n          {\n              \"pv\": [\n"+
				`                  {"vg_name":"cinder-volumes", "pv_name":"/dev/sda", "pv_size":"10.00", "pv_free":"1.00"},`+"\n"+
				`                  {"vg_name":"cinder-volumes", "pv_name":"/dev/sdb", "pv_size":"10.00", "pv_free":"1.00"},`+"\n"+
				`                  {"vg_name":"cinder-volumes", "pv_name":"/dev/sdc", "pv_size":"10.00", "pv_free":"8.99"},`+"\n"+
				`                  {"vg_name":"other-vg", "pv_name":"/dev/sdd", "pv_size":"10.00", "pv_free":"9.99"}`+"\n"+
				"              ]\n          }\n      ]\n  }\n"),
	)
	st, err := d.GetVolumeStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if round2(st.TotalCapacityGB) != 5.5 || st.FreeCapacityGB != 2 || st.LocationInfo != "LVMVolumeDriver:storage1:cinder-volumes:default:1" {
		t.Fatalf("stats %+v", st)
	}
}

func TestReadWriteStreamTheDevice(t *testing.T) {
	dev := "/dev/cinder-volumes/volume-" + vid
	d, tr := open(t, nil,
		lookup("volume-"+vid, vol1G),
		step("dd if="+dev+" bs=1M count=1073741824 iflag=count_bytes", "raw volume bytes"),
		lookup("volume-"+vid, vol1G),
		step("dd of="+dev+" bs=1M iflag=fullblock conv=nocreat,fdatasync", ""),
		lookup("volume-"+vid, vol1G),
		fail("dd of="+dev+" bs=1M iflag=fullblock conv=nocreat,fdatasync", 1, "dd: error writing '"+dev+"': No space left on device\n"),
		lookupNone("volume-"+vid),
	)
	ctx := context.Background()
	v := drivers.Volume{ID: vid, SizeGB: 1}
	var out bytes.Buffer
	if err := d.ReadVolume(ctx, v, &out); err != nil || out.String() != "raw volume bytes" {
		t.Fatalf("read: %q %v", out.String(), err)
	}
	if err := d.WriteVolume(ctx, v, strings.NewReader("restored bytes")); err != nil {
		t.Fatal(err)
	}
	if got := string(tr.Stdin[3]); got != "restored bytes" {
		t.Fatalf("dd was fed %q", got)
	}
	if err := d.WriteVolume(ctx, v, strings.NewReader("too much")); !drivers.IsKind(err, drivers.KindInvalid) {
		t.Fatalf("oversized input: want invalid, got %v", err)
	}
	if err := d.ReadVolume(ctx, v, &out); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("read of a missing volume: want not_found, got %v", err)
	}
}

func TestBadIDsRunNothing(t *testing.T) {
	d, _ := open(t, nil) // any command fails the test
	ctx := context.Background()
	for _, id := range []string{"../../etc", "x; rm -rf /", "-rf", "", strings.ToUpper(vid)} {
		if _, err := d.CreateVolume(ctx, drivers.Volume{ID: id, SizeGB: 1}); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("create %q: want invalid, got %v", id, err)
		}
		if _, err := d.CreateSnapshot(ctx, drivers.Snapshot{ID: sid, VolumeID: id}); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("snapshot of %q: want invalid, got %v", id, err)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, bad := range []map[string]any{
		{"lvm_type": "thick"}, {"volume_clear": "shred"}, {"volume_group": "-x"}, {"volume_group": "a b"},
		{"lvm_mirrors": -1}, {"lvm_type": "thin", "lvm_mirrors": 1}, {"volume_clear_size": -1}, {"unknown": 1},
	} {
		if _, err := New(drivers.Backend{Options: bad}, drivers.LocalExecutor{}); err == nil {
			t.Errorf("options %v accepted", bad)
		}
	}
	d, err := drivers.Open(drivers.Backend{Name: "x", Driver: "lvm"}, drivers.LocalExecutor{})
	if err != nil {
		t.Fatal(err)
	}
	o := d.(*Driver).opts
	if o.VolumeGroup != "cinder-volumes" || o.LVMType != "default" || o.VolumeClear != "zero" || *o.MaxOverSubscriptionRatio != 20 {
		t.Fatalf("defaults %+v", o)
	}
	if o.TargetHelper != "" || o.UseCHAPAuth || d.(*Driver).target.VolumesDir() != "/var/lib/ember/targets" {
		t.Fatalf("attach defaults %+v, volumes_dir %s", o.Options, d.(*Driver).target.VolumesDir())
	}
	none, err := drivers.Open(drivers.Backend{Name: "x", Driver: "lvm", Options: map[string]any{"target_helper": "none"}}, drivers.LocalExecutor{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.InitializeConnection(context.Background(), drivers.Volume{ID: vid}, "a", drivers.Connector{}); !drivers.IsKind(err, drivers.KindNotSupported) {
		t.Fatalf("attach with target_helper none: %v", err)
	}
}
