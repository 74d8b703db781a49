package lvm

import (
	"context"
	"math"
	"strconv"

	"github.com/ember-storage/ember/drivers"
)

// GetVolumeStats is Cinder's _update_volume_stats, read from LVM's JSON
// report in GiB (`--units g --nosuffix`, LC_ALL=C):
//
//   - thick: total and free are the VG's; provisioned is total - free;
//   - mirrored: the VG's free space split across the copies, and the free
//     figure from the PVs (Cinder's vg_mirror_size/vg_mirror_free_space);
//   - thin: total is the pool's size, free what its data_percent leaves,
//     provisioned the sum of the thin volumes' virtual sizes.
//
// A thin backend creates its pool here when it is missing, as Cinder does at
// start-up: without a pool it would report no capacity and never be chosen.
// total_volumes counts volumes and snapshots (every LV but the pool).
func (d *Driver) GetVolumeStats(ctx context.Context) (drivers.Stats, error) {
	host, err := d.storageHostname(ctx)
	if err != nil {
		return drivers.Stats{}, err
	}
	if d.thin() {
		if err := d.vg.ensureThinPool(ctx); err != nil {
			return drivers.Stats{}, err
		}
	}
	in, err := d.vg.info(ctx)
	if err != nil {
		return drivers.Stats{}, err
	}
	lvs, err := d.listGB(ctx)
	if err != nil {
		return drivers.Stats{}, err
	}
	st := drivers.Stats{
		ReservedPercentage:       d.opts.ReservedPercentage,
		ThinProvisioningSupport:  d.thin(),
		ThickProvisioningSupport: !d.thin(),
		MaxOverSubscriptionRatio: *d.opts.MaxOverSubscriptionRatio,
		LocationInfo: "LVMVolumeDriver:" + host + ":" + d.vg.name + ":" + d.opts.LVMType + ":" +
			strconv.Itoa(d.opts.LVMMirrors),
		Extra: map[string]any{"volume_group": d.vg.name, "vg_uuid": in.UUID},
	}
	var thinSum float64
	for _, l := range lvs {
		if d.thin() && l.Name == d.vg.pool() {
			size, dataPercent := l.SizeGB, l.DataPercent
			st.TotalCapacityGB = size
			st.FreeCapacityGB = round2(size - size/100*dataPercent)
			st.Extra["thin_pool"] = l.Name
			st.Extra["thin_pool_data_percent"] = dataPercent
			continue
		}
		st.TotalVolumes++
		thinSum += l.SizeGB
	}
	switch {
	case d.thin():
		st.ProvisionedCapacityGB = round2(thinSum)
	case d.opts.LVMMirrors > 0:
		pvs, err := d.vg.physicalVolumes(ctx)
		if err != nil {
			return drivers.Stats{}, err
		}
		if st.TotalCapacityGB, st.FreeCapacityGB, err = mirrorCapacity(in.FreeGB, pvs, d.opts.LVMMirrors); err != nil {
			return drivers.Stats{}, drivers.Wrap(drivers.KindBackend, "pvs "+d.vg.name, err)
		}
		st.ProvisionedCapacityGB = round2(st.TotalCapacityGB - st.FreeCapacityGB)
	default:
		st.TotalCapacityGB, st.FreeCapacityGB = in.SizeGB, in.FreeGB
		st.ProvisionedCapacityGB = round2(in.SizeGB - in.FreeGB)
	}
	return st, nil
}

type lvGB struct {
	Name                string
	SizeGB, DataPercent float64
}

// listGB is `lvs --units g` of the VG: sizes as Cinder reports them.
func (d *Driver) listGB(ctx context.Context) ([]lvGB, error) {
	op := "lvs " + d.vg.name
	out, err := run(ctx, d.ex, drivers.Command{Args: []string{
		"lvs", "--reportformat", "json", "--units", "g", "--nosuffix", "-o", lvFields, d.vg.name}})
	if err != nil {
		return nil, classify(op, err)
	}
	r, err := parseReport(out.Stdout)
	if err != nil {
		return nil, drivers.Wrap(drivers.KindBackend, op, err)
	}
	var lvs []lvGB
	for _, row := range r.lvs() {
		size, err := number("lv_size", row.Size)
		if err != nil {
			return nil, drivers.Wrap(drivers.KindBackend, op, err)
		}
		dp, err := number("data_percent", row.DataPercent)
		if err != nil {
			return nil, drivers.Wrap(drivers.KindBackend, op, err)
		}
		lvs = append(lvs, lvGB{Name: row.Name, SizeGB: size, DataPercent: dp})
	}
	return lvs, nil
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
