package lvm

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/ember-storage/ember/drivers"
)

// volumeGroup is one VG on the storage host: the driver's own, or the
// destination of a same-host migration.
type volumeGroup struct {
	name string
	thin bool
	ex   drivers.Executor

	poolMu    sync.Mutex
	poolReady bool // the thin pool was seen; it is never removed by us
}

// pool is the thin pool's name, <vg>-pool as Cinder names it.
func (vg *volumeGroup) pool() string { return vg.name + "-pool" }

// vgInfo is the VG as `vgs --units g` reports it (GiB, two decimals).
type vgInfo struct {
	SizeGB, FreeGB float64
	LVCount        int
	UUID           string
}

// info reads the VG with its figures in GiB, the unit Cinder reports in.
func (vg *volumeGroup) info(ctx context.Context) (vgInfo, error) {
	op := "vgs " + vg.name
	out, err := run(ctx, vg.ex, drivers.Command{Args: []string{
		"vgs", "--reportformat", "json", "--units", "g", "--nosuffix", "-o", vgFields, vg.name}})
	if err != nil {
		if stderrHas(err, "not found") {
			return vgInfo{}, drivers.Errorf(drivers.KindBackend, op, "volume group %s not found on the storage host", vg.name)
		}
		return vgInfo{}, classify(op, err)
	}
	r, err := parseReport(out.Stdout)
	if err != nil {
		return vgInfo{}, drivers.Wrap(drivers.KindBackend, op, err)
	}
	for _, row := range r.vgs() {
		if row.Name != vg.name {
			continue
		}
		var in vgInfo
		if in.SizeGB, err = number("vg_size", row.Size); err != nil {
			return vgInfo{}, drivers.Wrap(drivers.KindBackend, op, err)
		}
		if in.FreeGB, err = number("vg_free", row.Free); err != nil {
			return vgInfo{}, drivers.Wrap(drivers.KindBackend, op, err)
		}
		n, err := number("lv_count", row.LVCount)
		if err != nil {
			return vgInfo{}, drivers.Wrap(drivers.KindBackend, op, err)
		}
		in.LVCount, in.UUID = int(n), row.UUID
		return in, nil
	}
	return vgInfo{}, drivers.Errorf(drivers.KindBackend, op, "volume group %s not in the report", vg.name)
}

// freeBytes is the VG's free space to the byte: the capacity check before a
// create must not be fooled by vgs rounding 1.996 GiB to "2.00".
func (vg *volumeGroup) freeBytes(ctx context.Context) (int64, error) {
	op := "vgs " + vg.name
	out, err := run(ctx, vg.ex, drivers.Command{Args: []string{
		"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_free", vg.name}})
	if err != nil {
		return 0, classify(op, err)
	}
	r, err := parseReport(out.Stdout)
	if err != nil {
		return 0, drivers.Wrap(drivers.KindBackend, op, err)
	}
	for _, row := range r.vgs() {
		if row.Name == vg.name {
			n, err := bytesOf("vg_free", row.Free)
			return n, drivers.Wrap(drivers.KindBackend, op, err)
		}
	}
	return 0, drivers.Errorf(drivers.KindBackend, op, "volume group %s not in the report", vg.name)
}

// physicalVolumes lists the VG's PVs in GiB (for the mirror capacity rule).
func (vg *volumeGroup) physicalVolumes(ctx context.Context) ([]pvRow, error) {
	op := "pvs " + vg.name
	out, err := run(ctx, vg.ex, drivers.Command{Args: []string{
		"pvs", "--reportformat", "json", "--units", "g", "--nosuffix", "-o", pvFields}})
	if err != nil {
		return nil, classify(op, err)
	}
	r, err := parseReport(out.Stdout)
	if err != nil {
		return nil, drivers.Wrap(drivers.KindBackend, op, err)
	}
	var rows []pvRow
	for _, row := range r.pvs() {
		if row.VG == vg.name { // pvs lists every PV on the host
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// ensureThinPool creates <vg>-pool when it is missing, as Cinder's LVM()
// constructor does: 95% of the VG's free space, the rest left for the pool's
// metadata (100%VG is not usable with -T, Red Hat bug 998347).
func (vg *volumeGroup) ensureThinPool(ctx context.Context) error {
	vg.poolMu.Lock()
	defer vg.poolMu.Unlock()
	if vg.poolReady {
		return nil
	}
	op := "lvcreate " + vg.pool() + " on " + vg.name
	if _, ok, err := vg.lookup(ctx, vg.pool()); err != nil {
		return err
	} else if ok {
		vg.poolReady = true
		return nil
	}
	in, err := vg.info(ctx)
	if err != nil {
		return err
	}
	size := strconv.FormatFloat(in.FreeGB*0.95, 'f', -1, 64) + "g"
	if in.FreeGB*0.95 <= 0 {
		return drivers.Errorf(drivers.KindNoCapacity, op, "no free space in %s for a thin pool", vg.name)
	}
	_, err = run(ctx, vg.ex, drivers.Command{Args: []string{"lvcreate", "-T", "-L", size, vg.name + "/" + vg.pool()}})
	if err != nil {
		// Another instance may have won the race to create it.
		if _, ok, lerr := vg.lookup(ctx, vg.pool()); lerr == nil && ok {
			vg.poolReady = true
			return nil
		}
		return classify(op, err)
	}
	vg.poolReady = true
	return nil
}

// mirrorCapacity is Cinder's vg_mirror_size/vg_mirror_free_space: the total
// is the VG's free space split across the copies; the free figure pairs the
// smallest PV's free extents against the largest ones, mirror by mirror.
func mirrorCapacity(freeGB float64, pvs []pvRow, mirrors int) (total, free float64, err error) {
	total = freeGB / float64(mirrors+1)
	var disks []float64
	for _, pv := range pvs {
		f, err := number("pv_free", pv.Free)
		if err != nil {
			return 0, 0, err
		}
		disks = append(disks, f)
	}
	for {
		disks = sortedPositiveDesc(disks)
		if len(disks) <= mirrors {
			break
		}
		smallest := disks[len(disks)-1]
		disks = disks[:len(disks)-1]
		for i := 0; i < mirrors; i++ {
			disks[i] -= smallest
		}
		free += smallest
	}
	return total, free, nil
}

func sortedPositiveDesc(in []float64) []float64 {
	var out []float64
	for _, f := range in {
		if f > 0 {
			out = append(out, f)
		}
	}
	for i := 1; i < len(out); i++ { // insertion sort: a handful of PVs
		for j := i; j > 0 && out[j] > out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func gib(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/float64(drivers.GiB)) }
