package tgt

import (
	"context"
	"fmt"
	"net"
	"path"

	"github.com/ember-storage/ember/drivers"
)

// DefaultVolumesDir is where the lvm, glusterfs and nfs backends keep their
// target files unless volumes_dir says otherwise. It is not Cinder's
// $state_path/volumes: Ember's example configuration puts the file
// backend's volumes there, and a target file volume-<id> must never land
// among volume files of the same name.
const DefaultVolumesDir = "/var/lib/ember/targets"

// Options are the attach keys of the backends that export through tgt
// (lvm, file, glusterfs, nfs). A driver embeds them in its options struct,
// so they sit beside the driver's own keys in a backend's configuration.
type Options struct {
	// TargetHelper is "tgt" (the default) or "none": volumes are not
	// exported and attach answers not_supported.
	TargetHelper string `json:"target_helper"`
	// TargetPortal is the ip:port initiators connect to, where tgtd
	// listens (default DefaultPortal).
	TargetPortal string `json:"target_portal"`
	// VolumesDir holds the persistent target files on the storage host
	// (default: the driver's, see each driver).
	VolumesDir string `json:"volumes_dir"`
	// UseCHAPAuth gives each export a fresh CHAP account (Cinder's
	// use_chap_auth, default false).
	UseCHAPAuth bool `json:"use_chap_auth"`
	// ControlPort is tgtd's management socket (tgtd -C), 0 by default.
	ControlPort int `json:"tgt_control_port"`
}

// Helper is a backend's attach path as its Options configure it: exports
// through one tgtd, or nothing when target_helper is none.
type Helper struct {
	driver string
	chap   bool
	// target is nil when target_helper is none.
	target *Target
}

// NewHelper checks o for driver. defaultVolumesDir is used when o leaves
// volumes_dir unset (empty: DefaultVolumesDir). A default derived from
// another option (the file backend's dir) is checked at attach, not here,
// so that a backend whose directory tgt could not name still opens and
// serves everything but attach.
func NewHelper(driver string, o Options, defaultVolumesDir string, ex drivers.Executor) (*Helper, error) {
	switch o.TargetHelper {
	case "", "tgt":
	case "none":
	default:
		return nil, fmt.Errorf("options: target_helper %q: want tgt or none", o.TargetHelper)
	}
	if o.TargetPortal != "" {
		if host, port, err := net.SplitHostPort(o.TargetPortal); err != nil || net.ParseIP(host) == nil || port == "" {
			return nil, fmt.Errorf("options: target_portal %q: want ip:port", o.TargetPortal)
		}
	}
	if o.VolumesDir != "" {
		if err := checkPath("volumes_dir", o.VolumesDir); err != nil {
			return nil, fmt.Errorf("options: %w", err)
		}
	}
	if o.ControlPort < 0 || o.ControlPort > 32767 { // tgtd -C refuses more
		return nil, fmt.Errorf("options: tgt_control_port %d: want 0..32767", o.ControlPort)
	}
	h := &Helper{driver: driver, chap: o.UseCHAPAuth}
	if o.TargetHelper == "none" {
		return h, nil
	}
	cfg := Config{Executor: ex, VolumesDir: o.VolumesDir, Portal: o.TargetPortal, ControlPort: o.ControlPort}
	if cfg.VolumesDir == "" {
		cfg.VolumesDir = defaultVolumesDir
		if cfg.VolumesDir == "" {
			cfg.VolumesDir = DefaultVolumesDir
		}
	}
	cfg.SetDefaults()
	h.target = &Target{cfg: cfg}
	return h, nil
}

// Enabled reports whether volumes are exported (target_helper tgt).
func (h *Helper) Enabled() bool { return h.target != nil }

// NotSupported is what attach and detach answer with target_helper none.
func (h *Helper) NotSupported(op string) error {
	return drivers.Errorf(drivers.KindNotSupported, op,
		"%s backend has target_helper none: its volumes are not exported", h.driver)
}

// usable checks what NewHelper left for attach time.
func (h *Helper) usable(op string) error {
	if h.target == nil {
		return h.NotSupported(op)
	}
	if err := checkPath("volumes_dir", h.target.cfg.VolumesDir); err != nil {
		return drivers.Wrap(drivers.KindInvalid, op, fmt.Errorf("%w (set volumes_dir)", err))
	}
	if h.target.cfg.Executor == nil {
		return drivers.Errorf(drivers.KindInvalid, op, "no executor")
	}
	return nil
}

// Attach exports devicePath (a block device or a raw file on the storage
// host) as LUN 1 of the volume's target and returns the iSCSI
// connection_info for c: with use_chap_auth a fresh CHAP account unless
// the volume's target file already holds one (that one wins, so a repeated
// attach hands out the same credentials), the password sealed to
// c.PublicKey or left out. Attaching an attached volume returns the same
// target.
func (h *Helper) Attach(ctx context.Context, volumeID, devicePath string, c drivers.Connector) (drivers.ConnectionInfo, error) {
	const op = "initialize_connection"
	if err := h.usable(op); err != nil {
		return drivers.ConnectionInfo{}, err
	}
	// A key that cannot be sealed to is refused before anything is
	// exported: the target would otherwise outlive a permanent failure.
	if c.PublicKey != "" {
		if _, err := decodeKey("public", c.PublicKey); err != nil {
			return drivers.ConnectionInfo{}, drivers.Wrap(drivers.KindInvalid, op+": connector public_key", err)
		}
	}
	var chap *CHAP
	if h.chap {
		fresh := NewCHAP()
		chap = &fresh
	}
	e, err := h.target.Export(ctx, volumeID, devicePath, chap)
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	return ConnectionInfo(e, c, c.PublicKey)
}

// Detach removes the volume's target, its CHAP account and its target
// file. A target that is gone is success.
func (h *Helper) Detach(ctx context.Context, volumeID string) error {
	if err := h.usable("terminate_connection"); err != nil {
		return err
	}
	return h.target.Remove(ctx, volumeID)
}

// VolumesDir is where the target files go ("" with target_helper none).
func (h *Helper) VolumesDir() string {
	if h.target == nil {
		return ""
	}
	return path.Clean(h.target.cfg.VolumesDir)
}
