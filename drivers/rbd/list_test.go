package rbd

import (
	"context"
	"fmt"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// ListVolumes keeps the images named volume-<id> exactly: not snapshots,
// not an image kept as volume-<id>.deleted for its clones, not a Glance
// image or a name with an id that is not canonical.
func TestTranscriptListVolumes(t *testing.T) {
	d, _ := transcriptDriver(t, `
$RBD ls -l --format json
[{"image":"volume-`+idB+`","id":"1042d82970a7","size":2147483648,"parent":{"pool":"volumes","pool_namespace":"","image":"volume-`+idA+`","snapshot":"snapshot-`+idS+`"},"format":2},{"image":"volume-`+idA+`","id":"102e8e236f02","size":1073741824,"format":2},{"image":"volume-`+idA+`","id":"102e8e236f02","snapshot":"snapshot-`+idS+`","snapshot_id":4,"size":1073741824,"format":2,"protected":"true"},{"image":"volume-`+idC+`.deleted","id":"105e19077a39","size":1073741824,"format":2},{"image":"volume-`+idC+`","id":"105e19077a39","snapshot":"volume-`+idC+`.clone_snap","snapshot_id":5,"size":1073741824,"format":2,"protected":"true"},{"image":"8e1d2c4a-glance","id":"10aa","size":1048576,"format":2},{"image":"volume-0B5CBF4E-8F0A-4C1E-9D5C-2F1A7A3C9E10","id":"10ab","size":1048576,"format":2}]
$RBD ls -l --format json
[]
$RBD ls -l --format json
! 2026-11-25T09:22:05.180+0000 7f778b948380  0 monclient(hunting): authenticate timed out after 300
! rbd: couldn't connect to the cluster!
? 110`)
	ctx := context.Background()
	ids, err := d.ListVolumes(ctx)
	if err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{idA, idB}) {
		t.Fatalf("list: %v %v, want [%s %s]", ids, err, idA, idB)
	}
	if ids, err := d.ListVolumes(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("empty pool: %v %v", ids, err)
	}
	if _, err := d.ListVolumes(ctx); !drivers.IsKind(err, drivers.KindUnavailable) {
		t.Fatalf("cluster unreachable: want unavailable, got %v", err)
	}
}
