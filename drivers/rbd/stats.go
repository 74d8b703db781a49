package rbd

import (
	"context"
	"math"

	"github.com/ember-storage/ember/drivers"
)

// cephDF is the part of `ceph df --format json` this driver reads. The
// per-pool figures come from the mgr: without one they are all zero.
type cephDF struct {
	Pools []struct {
		Name  string `json:"name"`
		Stats struct {
			// Stored is the data in the pool before replication (Nautilus
			// and later); BytesUsed counts every replica.
			Stored    *int64 `json:"stored"`
			BytesUsed int64  `json:"bytes_used"`
			MaxAvail  int64  `json:"max_avail"`
		} `json:"stats"`
	} `json:"pools"`
}

// GetVolumeStats reports the pool as Cinder's rbd driver does: free is what
// the pool may still take (max_avail, replication and full ratios already
// applied), total is used + free, both capped by a pool quota, and
// provisioned is the sum of the image sizes, since RBD images are thin.
func (d *Driver) GetVolumeStats(ctx context.Context) (drivers.Stats, error) {
	var df cephDF
	if err := d.runJSON(ctx, "ceph df", d.cephCmd("df", "--format", "json"), &df); err != nil {
		return drivers.Stats{}, err
	}
	found := false
	var used, avail int64
	for _, p := range df.Pools {
		if p.Name != d.o.Pool {
			continue
		}
		found = true
		used, avail = p.Stats.BytesUsed, p.Stats.MaxAvail
		if p.Stats.Stored != nil {
			used = *p.Stats.Stored
		}
	}
	if !found {
		return drivers.Stats{}, drivers.Errorf(drivers.KindBackend, "ceph df", "pool %s is not in the cluster", d.o.Pool)
	}
	// A pool quota caps the pool below what the OSDs could hold, and a pool
	// over its quota does not fail writes: Ceph blocks them (seen here:
	// rbd create, resize and import-diff hang until the executor's timeout).
	// So, as Cinder does, report the quota as the total and what is left of
	// it as free, and let the scheduler stop placing volumes here.
	var q struct {
		MaxBytes int64 `json:"quota_max_bytes"`
	}
	if err := d.runJSON(ctx, "ceph osd pool get-quota "+d.o.Pool, d.cephCmd("osd", "pool", "get-quota", d.o.Pool, "--format", "json"), &q); err != nil {
		return drivers.Stats{}, err
	}
	total := used + avail
	if q.MaxBytes > 0 {
		total = q.MaxBytes
		avail = max(min(avail, q.MaxBytes-used), 0)
	}
	images, err := d.list(ctx)
	if err != nil {
		return drivers.Stats{}, err
	}
	var provisioned int64
	var count int
	for _, e := range images {
		if e.Snapshot != "" {
			continue
		}
		provisioned += e.Size
		if isVolumeImage(e.Image) {
			count++
		}
	}
	mm, _, _, err := d.monitors(ctx)
	if err != nil {
		return drivers.Stats{}, err
	}
	return drivers.Stats{
		TotalCapacityGB:          gb(total),
		FreeCapacityGB:           gb(avail),
		ProvisionedCapacityGB:    gb(provisioned),
		ReservedPercentage:       d.o.ReservedPercentage,
		ThinProvisioningSupport:  true,
		ThickProvisioningSupport: false,
		MaxOverSubscriptionRatio: d.o.MaxOverSubscriptionRatio,
		TotalVolumes:             count,
		LocationInfo:             "rbd:" + mm.FSID + ":" + d.o.Pool,
	}, nil
}

// gb is bytes in GiB rounded to two places, as Cinder reports them.
func gb(b int64) float64 { return math.Round(float64(b)/float64(drivers.GiB)*100) / 100 }
