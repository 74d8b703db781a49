package remotefs

import (
	"fmt"
	"path"
	"strings"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/tgt"
)

// Options are the configuration keys of the mounted backends (glusterfs,
// nfs). Cinder spells them glusterfs_shares_config, glusterfs_mount_point_base,
// glusterfs_sparsed_volumes/glusterfs_qcow2_volumes (nfs_* for NFS).
type Options struct {
	Shares         []string `json:"shares"`
	MountPointBase string   `json:"mount_point_base"`
	// VolumeFormat is raw (sparse files, the default) or qcow2.
	VolumeFormat string `json:"volume_format"`
	// MountOptions go to mount -o, e.g. "backup-volfile-servers=h2:h3" or
	// "vers=4.1,proto=tcp".
	MountOptions             string  `json:"mount_options"`
	MaxOverSubscriptionRatio float64 `json:"max_over_subscription_ratio"`
	ReservedPercentage       int     `json:"reserved_percentage"`
	// Attach: target_helper (tgt, the default, or none), target_portal,
	// volumes_dir (default tgt.DefaultVolumesDir, on the storage host,
	// never on the share), use_chap_auth, tgt_control_port.
	tgt.Options
}

// Defaults, as Cinder's.
const (
	DefaultMountPointBase           = "/var/lib/ember/mnt"
	DefaultMaxOverSubscriptionRatio = 20.0
)

// Validate fills defaults and checks the options.
func (o *Options) Validate() error {
	if o.MountPointBase == "" {
		o.MountPointBase = DefaultMountPointBase
	}
	if o.VolumeFormat == "" {
		o.VolumeFormat = "raw"
	}
	if o.MaxOverSubscriptionRatio == 0 {
		o.MaxOverSubscriptionRatio = DefaultMaxOverSubscriptionRatio
	}
	if len(o.Shares) == 0 {
		return fmt.Errorf("options: shares: at least one share is required")
	}
	for _, s := range o.Shares {
		if err := CheckShare(s); err != nil {
			return fmt.Errorf("options: shares: %w", err)
		}
		if !strings.Contains(s, ":") {
			return fmt.Errorf("options: shares: %q is not of the form host:/path", s)
		}
	}
	if !path.IsAbs(o.MountPointBase) {
		return fmt.Errorf("options: mount_point_base %q must be an absolute path", o.MountPointBase)
	}
	if strings.ContainsAny(o.MountOptions, " \t\n\r\x00") || strings.HasPrefix(o.MountOptions, "-") {
		return fmt.Errorf("options: mount_options %q: want a comma-separated list without spaces", o.MountOptions)
	}
	return nil
}

// OpenMounted builds the driver of a mounted backend: its shares are
// mounted with `mount -t fstype` under mount_point_base.
func OpenMounted(driver, fstype string, b drivers.Backend, ex drivers.Executor) (*Driver, error) {
	var o Options
	if err := drivers.DecodeOptions(b.Options, &o); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	base := path.Clean(o.MountPointBase)
	m := Mount{Ex: ex, FSType: fstype, Options: o.MountOptions}
	return New(Config{
		Driver:                   driver,
		Shares:                   o.Shares,
		Dir:                      func(share string) string { return MountPoint(base, share) },
		Mount:                    m.Share,
		Format:                   o.VolumeFormat,
		MaxOverSubscriptionRatio: o.MaxOverSubscriptionRatio,
		ReservedPercentage:       o.ReservedPercentage,
		Target:                   o.Options,
		VolumeType:               driver,
		MountOptions:             o.MountOptions,
	}, ex)
}
