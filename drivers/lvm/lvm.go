// Package lvm is the LVM backend: Cinder's LVMVolumeDriver and its brick LVM
// helper (cinder/volume/drivers/lvm.py, cinder/brick/local_dev/lvm.py) as a
// Go driver. Volumes are logical volumes volume-<id> in one volume group,
// thick or thin (in the pool <vg>-pool), optionally mirrored; snapshots are
// LVM snapshots _snapshot-<id> (LVM reserves names starting with "snapshot",
// so Cinder escapes them with a leading underscore, and so do we).
//
// Every command runs through the drivers.Executor as an argv vector with
// LC_ALL=C, so the host may be local or reached over SSH, and every name on a
// command line is built from a validated id. One file per LVM concept, in
// TopoLVM's manner: the JSON report (lvm_report.go), volume groups
// (lvm_vgs.go), logical volumes (lvm_lvs.go), data copies (lvm_copy.go).
//
// # Attach
//
// InitializeConnection exports the LV's device, /dev/<vg>/volume-<id>, as
// LUN 1 of the iSCSI target iqn.2010-10.org.openstack:volume-<id> through
// tgtd (drivers/tgt), as Cinder's LVM driver with the tgtadm helper does;
// TerminateConnection removes the target. Options, beside the LVM ones:
//
//	target_helper     tgt (default) or none: no export, attach answers not_supported
//	target_portal     ip:port where tgtd listens (default 127.0.0.1:3260)
//	volumes_dir       persistent target files on the storage host (default /var/lib/ember/targets)
//	use_chap_auth     a fresh CHAP account per export (default false, as Cinder)
//	tgt_control_port  tgtd's management socket, tgtd -C / tgtadm -C (default 0)
package lvm

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/tgt"
)

func init() { drivers.Register("lvm", Open) }

// Options are the lvm backend's configuration keys, with Cinder's names.
type Options struct {
	VolumeGroup string `json:"volume_group"` // default cinder-volumes
	LVMType     string `json:"lvm_type"`     // default (thick) or thin
	LVMMirrors  int    `json:"lvm_mirrors"`  // >0: LVM mirrors with that many extra copies
	// VolumeClear is how a deleted thick volume is scrubbed so that its
	// blocks do not leak to the next tenant: zero (default) or none.
	VolumeClear string `json:"volume_clear"`
	// VolumeClearSize is how many MiB from the start to scrub; 0 = all.
	VolumeClearSize          int      `json:"volume_clear_size"`
	MaxOverSubscriptionRatio *float64 `json:"max_over_subscription_ratio"` // default 20.0, as Cinder
	ReservedPercentage       int      `json:"reserved_percentage"`
	// Attach: target_helper (tgt, the default, or none), target_portal,
	// volumes_dir (default tgt.DefaultVolumesDir), use_chap_auth,
	// tgt_control_port. See connection.go.
	tgt.Options
}

// lvmNameRE is what LVM accepts as a VG name, minus the leading '-' that
// would read as an option.
var lvmNameRE = regexp.MustCompile(`^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$`)

// Validate fills the defaults and refuses what LVM or Cinder would refuse.
func (o *Options) Validate() error {
	if o.VolumeGroup == "" {
		o.VolumeGroup = "cinder-volumes"
	}
	if o.LVMType == "" {
		o.LVMType = "default"
	}
	if o.VolumeClear == "" {
		o.VolumeClear = "zero"
	}
	if o.MaxOverSubscriptionRatio == nil {
		r := 20.0
		o.MaxOverSubscriptionRatio = &r
	}
	switch {
	case !lvmNameRE.MatchString(o.VolumeGroup) || len(o.VolumeGroup) > 120:
		return fmt.Errorf("options: volume_group %q is not a valid LVM name", o.VolumeGroup)
	case o.LVMType != "default" && o.LVMType != "thin":
		return fmt.Errorf("options: lvm_type %q: want default or thin", o.LVMType)
	case o.LVMMirrors < 0:
		return fmt.Errorf("options: lvm_mirrors %d must not be negative", o.LVMMirrors)
	case o.LVMMirrors > 0 && o.LVMType == "thin":
		return fmt.Errorf("options: lvm_mirrors needs lvm_type default (a thin pool is not mirrored per volume)")
	case o.VolumeClear != "zero" && o.VolumeClear != "none":
		return fmt.Errorf("options: volume_clear %q: want zero or none", o.VolumeClear)
	case o.VolumeClearSize < 0:
		return fmt.Errorf("options: volume_clear_size %d must not be negative", o.VolumeClearSize)
	case *o.MaxOverSubscriptionRatio < 1:
		return fmt.Errorf("options: max_over_subscription_ratio %v must be at least 1", *o.MaxOverSubscriptionRatio)
	case o.ReservedPercentage < 0 || o.ReservedPercentage > 100:
		return fmt.Errorf("options: reserved_percentage %d: want 0..100", o.ReservedPercentage)
	}
	return nil
}

// Driver is the lvm backend.
type Driver struct {
	drivers.Unsupported
	opts   Options
	vg     *volumeGroup
	ex     drivers.Executor
	target *tgt.Helper

	mu       sync.Mutex
	hostname string // the storage host's name, for location_info
}

// Open builds an lvm driver for b. It runs no command: the volume group is
// looked at when the first operation needs it, so a configuration can be
// loaded while a storage host is down.
func Open(b drivers.Backend, ex drivers.Executor) (drivers.Driver, error) {
	return New(b, ex)
}

// New is Open with the concrete type, for callers that want MigrateVolume.
func New(b drivers.Backend, ex drivers.Executor) (*Driver, error) {
	var o Options
	if err := drivers.DecodeOptions(b.Options, &o); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if ex == nil {
		return nil, fmt.Errorf("lvm: no executor")
	}
	target, err := tgt.NewHelper("lvm", o.Options, tgt.DefaultVolumesDir, ex)
	if err != nil {
		return nil, err
	}
	return &Driver{
		Unsupported: drivers.Unsupported{Driver: "lvm"},
		opts:        o,
		vg:          &volumeGroup{name: o.VolumeGroup, thin: o.LVMType == "thin", ex: ex},
		ex:          ex,
		target:      target,
	}, nil
}

func (d *Driver) thin() bool { return d.opts.LVMType == "thin" }

// providerLocation is what the registry keeps for a volume: its VG, so a
// migrated volume can be found in its new group.
func (d *Driver) providerLocation(vg *volumeGroup) drivers.ModelUpdate {
	return drivers.ModelUpdate{ProviderLocation: vg.name}
}

// run executes one command with LC_ALL=C, as every LVM call in Cinder does,
// so that the messages classify() reads are in English.
func run(ctx context.Context, ex drivers.Executor, c drivers.Command) (drivers.Output, error) {
	c.Env = append([]string{"LC_ALL=C"}, c.Env...)
	return ex.Run(ctx, c)
}

// storageHostname is `hostname` on the storage host (Cinder's
// socket.gethostname() ran there), asked once.
func (d *Driver) storageHostname(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hostname != "" {
		return d.hostname, nil
	}
	out, err := run(ctx, d.ex, drivers.Command{Args: []string{"hostname"}})
	if err != nil {
		return "", classify("hostname", err)
	}
	h := strings.TrimSpace(string(out.Stdout))
	if h == "" {
		return "", drivers.Errorf(drivers.KindBackend, "hostname", "empty answer")
	}
	d.hostname = h
	return h, nil
}
