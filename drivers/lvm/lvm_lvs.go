package lvm

import (
	"context"
	"math"
	"strconv"

	"github.com/ember-storage/ember/drivers"
)

// lv is one logical volume as `lvs --units b` reports it.
type lv struct {
	Name   string
	Size   int64 // bytes
	Attr   string
	Origin string
	Pool   string
	Tags   string
}

// isOrigin is Cinder's lv_has_snapshot: lv_attr's first letter is 'o' for an
// origin of thick snapshots ('O' while one merges).
func (l lv) isOrigin() bool { return len(l.Attr) > 0 && (l.Attr[0] == 'o' || l.Attr[0] == 'O') }

func (l lv) path(vg string) string { return "/dev/" + vg + "/" + l.Name }

func lvFromRow(row lvRow) (lv, error) {
	size, err := bytesOf("lv_size", row.Size)
	if err != nil {
		return lv{}, err
	}
	return lv{Name: row.Name, Size: size, Attr: row.Attr, Origin: row.Origin, Pool: row.Pool, Tags: row.Tags}, nil
}

func (vg *volumeGroup) lvsArgs(target string) []string {
	return []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", lvFields, target}
}

// lookup finds one LV by name; ok=false when it does not exist.
func (vg *volumeGroup) lookup(ctx context.Context, name string) (lv, bool, error) {
	op := "lvs " + vg.name + "/" + name
	out, err := run(ctx, vg.ex, drivers.Command{Args: vg.lvsArgs(vg.name + "/" + name)})
	if err != nil {
		// Cinder's get_lv_info: "not found" is an answer, not a failure.
		if stderrHas(err, notFoundMessages...) {
			return lv{}, false, nil
		}
		return lv{}, false, classify(op, err)
	}
	r, err := parseReport(out.Stdout)
	if err != nil {
		return lv{}, false, drivers.Wrap(drivers.KindBackend, op, err)
	}
	for _, row := range r.lvs() {
		if row.Name == name {
			l, err := lvFromRow(row)
			return l, err == nil, drivers.Wrap(drivers.KindBackend, op, err)
		}
	}
	return lv{}, false, nil
}

// list reports every LV in the VG.
func (vg *volumeGroup) list(ctx context.Context) ([]lv, error) {
	op := "lvs " + vg.name
	out, err := run(ctx, vg.ex, drivers.Command{Args: vg.lvsArgs(vg.name)})
	if err != nil {
		return nil, classify(op, err)
	}
	r, err := parseReport(out.Stdout)
	if err != nil {
		return nil, drivers.Wrap(drivers.KindBackend, op, err)
	}
	var lvs []lv
	for _, row := range r.lvs() {
		l, err := lvFromRow(row)
		if err != nil {
			return nil, drivers.Wrap(drivers.KindBackend, op, err)
		}
		lvs = append(lvs, l)
	}
	return lvs, nil
}

// createArgs is Cinder's create_volume argv: thick
// `lvcreate -n NAME VG -L Ng`, thin `lvcreate -T -V Ng -n NAME VG/POOL`, and
// for mirrors `--type=mirror -m N --nosync --mirrorlog mirrored` with a
// power-of-two region size (-R, MiB) from 1.5 TiB up, so that the mirror log
// stays within LVM's limits (Red Hat's note behind http://red.ht/U2BPOD).
// Cinder passes no --yes to lvcreate, and neither do we: a prompt to wipe a
// signature left in reused extents must fail the create rather than be
// answered blindly; volume_clear=zero is what keeps old data out.
func (vg *volumeGroup) createArgs(name string, sizeGB int, mirrors int, tags ...string) []string {
	size := strconv.Itoa(sizeGB) + "g"
	var args []string
	if vg.thin {
		args = []string{"lvcreate", "-T", "-V", size, "-n", name, vg.name + "/" + vg.pool()}
	} else {
		args = []string{"lvcreate", "-n", name, vg.name, "-L", size}
	}
	if mirrors > 0 {
		args = append(args, "--type=mirror", "-m", strconv.Itoa(mirrors), "--nosync", "--mirrorlog", "mirrored")
		if terras := float64(sizeGB) / 1024; terras >= 1.5 {
			rsize := int(math.Pow(2, math.Ceil(math.Log2(terras))))
			args = append(args, "-R", strconv.Itoa(rsize))
		}
	}
	for _, t := range tags {
		args = append(args, "--addtag", t)
	}
	return args
}

// create makes an LV and classifies LVM's refusal.
func (vg *volumeGroup) create(ctx context.Context, name string, sizeGB, mirrors int, tags ...string) error {
	_, err := run(ctx, vg.ex, drivers.Command{Args: vg.createArgs(name, sizeGB, mirrors, tags...)})
	return classify("lvcreate "+name+" on "+vg.name, err)
}

// snapshot is Cinder's create_lv_snapshot: a thick snapshot gets the origin's
// size as its copy-on-write space, a thin one needs none.
func (vg *volumeGroup) snapshot(ctx context.Context, name string, origin lv) error {
	args := []string{"lvcreate", "--name", name, "--snapshot", vg.name + "/" + origin.Name}
	if !vg.thin {
		args = append(args, "-L", strconv.FormatFloat(float64(origin.Size)/float64(drivers.GiB), 'f', -1, 64)+"g")
	}
	_, err := run(ctx, vg.ex, drivers.Command{Args: args})
	return classify("lvcreate "+name+" on "+vg.name, err)
}

// extend is `lvextend -L Ng VG/NAME`.
func (vg *volumeGroup) extend(ctx context.Context, name string, sizeGB int) error {
	_, err := run(ctx, vg.ex, drivers.Command{Args: []string{"lvextend", "-L", strconv.Itoa(sizeGB) + "g", vg.name + "/" + name}})
	return classify("lvextend "+name+" on "+vg.name, err)
}

// rename is brick's rename_volume, `lvrename VG OLD NEW`: metadata only, so
// it is instant and works with activation off. Both names reach argv; they
// must be LVM names (callers build them from validated ids), and a name
// that could read as an option runs nothing. A source that is gone is
// not_found, a target that exists a conflict: the caller decides what a
// re-run means.
func (vg *volumeGroup) rename(ctx context.Context, from, to string) error {
	op := "lvrename " + from + " to " + to + " on " + vg.name
	for _, n := range []string{from, to} {
		if !lvmNameRE.MatchString(n) || len(n) > 127 {
			return drivers.Errorf(drivers.KindInvalid, op, "%q is not a logical volume name", n)
		}
	}
	if from == to {
		return drivers.Errorf(drivers.KindInvalid, op, "old and new names are the same")
	}
	_, err := run(ctx, vg.ex, drivers.Command{Args: []string{"lvrename", vg.name, from, to}})
	return classify(op, err)
}

// activate is Cinder's activate_lv: -K activates LVs flagged to skip
// activation (thin snapshots are), --yes answers lvchange's question about
// activating a snapshot together with its origin; permanent drops the skip
// flag (-k n) so the LV comes up again after a reboot.
func (vg *volumeGroup) activate(ctx context.Context, name string, permanent bool) error {
	args := []string{"lvchange", "-a", "y", "--yes"}
	if permanent {
		args = append(args, "-k", "n")
	} else {
		args = append(args, "-K")
	}
	args = append(args, vg.name+"/"+name)
	_, err := run(ctx, vg.ex, drivers.Command{Args: args})
	return classify("lvchange "+name+" on "+vg.name, err)
}

// deleteTag drops a tag from an LV (metadata only).
func (vg *volumeGroup) deleteTag(ctx context.Context, name, tag string) error {
	_, err := run(ctx, vg.ex, drivers.Command{Args: []string{"lvchange", "--deltag", tag, vg.name + "/" + name}})
	return classify("lvchange "+name+" on "+vg.name, err)
}

// Cinder's lvremove configs: LV removal races with udev and other openers
// (Launchpad bug 1270192), so deactivation is retried; a failed lvremove -f
// may leave suspended devices behind, on which any further LVM command would
// block without lvmetad, so the second attempt skips them.
const (
	removeConfig      = "activation { retry_deactivation = 1} "
	removeRetryConfig = removeConfig + "devices { ignore_suspended_devices = 1}"
)

// remove is Cinder's LVM.delete: lvremove, then after `udevadm settle` one
// retry that skips suspended devices. An LV that is gone is success.
func (vg *volumeGroup) remove(ctx context.Context, name string) error {
	op := "lvremove " + name + " on " + vg.name
	target := vg.name + "/" + name
	_, err := run(ctx, vg.ex, drivers.Command{Args: []string{"lvremove", "--config", removeConfig, "-f", target}})
	if err == nil || stderrHas(err, notFoundMessages...) {
		return nil
	}
	if drivers.KindOf(err) == drivers.KindUnavailable {
		return classify(op, err)
	}
	// udevadm may be missing on the host; Cinder does not check its exit
	// either, the settle only gives udev a moment to let go.
	_, _ = run(ctx, vg.ex, drivers.Command{Args: []string{"udevadm", "settle"}})
	_, err = run(ctx, vg.ex, drivers.Command{Args: []string{"lvremove", "--config", removeRetryConfig, "-f", target}})
	if err == nil || stderrHas(err, notFoundMessages...) {
		return nil
	}
	return classify(op, err)
}
