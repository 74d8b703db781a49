package sheepdog

import (
	"fmt"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// ListVolumes keeps the working VDIs and clones named volume-<id> exactly;
// snapshot lines and foreign VDIs are left out. A cluster that is not
// running lists nothing: its answer could be partial.
func TestListVolumes(t *testing.T) {
	d, _ := newDriver(t, running+`$ dog vdi list AP -r
= `+nameA+` 0 1073741824 0 0 1467037106 fd32fc 3  22
s `+nameA+` 1 1073741824 0 0 1467037000 fd32fb 3 `+tagS+` 22
c `+nameB+` 0 2147483648 0 1073741824 1467037106 fd32fd 3  22
= glance-image 0 10737418240 0 0 1467037106 fd3300 3  22
= volume-not-an-id 0 1073741824 0 0 1467037106 fd3301 3  22
`+running+`$ dog vdi list AP -r
$ dog cluster info AP
Cluster status: Waiting for other nodes to join cluster
`)
	ids, err := d.ListVolumes(ctx)
	if err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{idA, idB}) {
		t.Fatalf("list: %v %v, want [%s %s]", ids, err, idA, idB)
	}
	if ids, err := d.ListVolumes(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("no VDI: %v %v", ids, err)
	}
	if _, err := d.ListVolumes(ctx); !drivers.IsKind(err, drivers.KindUnavailable) {
		t.Fatalf("cluster waiting for nodes: want unavailable, got %v", err)
	}
}
