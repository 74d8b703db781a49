package lvm

import (
	"context"
	"fmt"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// ListVolumes keeps the LVs named volume-<id> exactly: not snapshots, the
// temporary clone snapshot, the thin pool or foreign LVs.
func TestListVolumes(t *testing.T) {
	thinVol := lvRowJSON("volume-"+vid2, "1073741824", "Vwi-a-tz--", "", "cinder-volumes-pool", "1.00", "")
	pool := lvRowJSON("cinder-volumes-pool", "10737418240", "twi-aotz--", "", "", "1.00", "")
	cloneSnap := lvRowJSON("clone-snap-"+vid, "1073741824", "swi-a-s---", "volume-"+vid, "", "0.01", "")
	foreign := lvRowJSON("root", "10737418240", "-wi-ao----", "", "", "", "")
	tmp := lvRowJSON("volume-"+vid+"-tmp", "1073741824", "-wi-a-----", "", "", "", "")
	d, _ := open(t, nil,
		step(lvsB+"cinder-volumes", lvsJSON(thinVol, vol1G, snap1G, pool, cloneSnap, foreign, tmp)),
		step(lvsB+"cinder-volumes", lvsJSON()),
		fail(lvsB+"cinder-volumes", 5, "  Volume group \"cinder-volumes\" not found\n  Cannot process volume group cinder-volumes\n"),
	)
	ctx := context.Background()
	ids, err := d.ListVolumes(ctx)
	if err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{vid, vid2}) {
		t.Fatalf("list: %v %v, want [%s %s]", ids, err, vid, vid2)
	}
	if ids, err := d.ListVolumes(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("empty volume group: %v %v", ids, err)
	}
	if _, err := d.ListVolumes(ctx); err == nil {
		t.Fatal("a missing volume group listed nothing without an error")
	}
	var _ drivers.Lister = d
}
