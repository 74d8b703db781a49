// Package remotefs is the base of the file-based backends (Cinder's
// remotefs.py): volumes are raw sparse or qcow2 files named volume-<id> in a
// share's directory, snapshots are qcow2 overlays volume-<id>.<snapshot_id>
// tracked in volume-<id>.info, and every command runs through the executor,
// so a share may be a local directory, a GlusterFS or an NFS mount, on this
// machine or on an SSH host.
//
// Concrete drivers (file, glusterfs, nfs) give it their shares and, where a
// share must be mounted first, a Mount function; the rest is here.
//
// # Attach
//
// A raw volume without snapshots is exported through tgtd (drivers/tgt)
// with its file as the backing store: driver_volume_type "iscsi", as the
// lvm backend. A volume whose active file is qcow2 (a qcow2 volume, or any
// volume with snapshots) cannot be served raw by tgt; it gets Cinder's
// remote-filesystem connection_info instead, driver_volume_type
// "glusterfs", "nfs" or "local" with data {export, name, format: qcow2,
// options}, and the host opens the file on the share itself. The keys are
// tgt.Options: target_helper (tgt, the default, or none), target_portal,
// volumes_dir, use_chap_auth, tgt_control_port.
//
// # Hostile images
//
// A guest can write a qcow2 header naming any backing file (a host file,
// another volume, http://169.254.169.254/…) into its raw volume, so qemu-img
// never probes a format here:
//
//   - formats are pinned: the base has the backend's volume_format (a raw
//     base is always opened -f raw), an overlay is qcow2, and every
//     qemu-img command passes -f (and -F with -b);
//   - the chain is read file by file with `qemu-img info -f`, which does not
//     open backing files, and a backing file is followed only when it is
//     one of the volume's own names (relative, no '/', no ':' protocol)
//     recorded with the format it has by construction; an overlay without
//     a backing format, a qcow2 with an external data file and a base with
//     a backing file are refused (readChain);
//   - qemu-img info runs under Cinder's limits (drivers.QemuImgInfo:
//     prlimit --cpu=30 --as=1GiB);
//   - command errors reach requesters sanitized (drivers.Sanitize), and
//     refusals do not echo the names a header holds.
package remotefs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/tgt"
)

// Config is what a concrete driver tells the base.
type Config struct {
	// Driver names the backend type in errors ("glusterfs").
	Driver string
	// Shares are the configured shares, in the driver's own notation
	// ("host:/gv0", "host:/export", or a directory for the file backend).
	// A volume's ProviderLocation is one of them.
	Shares []string
	// Dir returns the directory where a share's files live.
	Dir func(share string) string
	// Mount makes a share's directory usable; it must be idempotent. It
	// runs before every operation that touches the share, since a mount can
	// vanish under a running service (a FUSE client that died).
	Mount func(ctx context.Context, share, dir string) error
	// Format of new volumes: raw (sparse) or qcow2.
	Format                   string
	MaxOverSubscriptionRatio float64
	ReservedPercentage       int

	// Target configures attach of raw volumes through tgt (see
	// connection.go); its zero value is target_helper tgt with defaults.
	Target tgt.Options
	// DefaultVolumesDir is Target's volumes_dir when unset ("" is
	// tgt.DefaultVolumesDir).
	DefaultVolumesDir string
	// VolumeType is the driver_volume_type of the connection_info of
	// volumes tgt cannot serve (qcow2): "glusterfs", "nfs", "local".
	// Empty is Driver.
	VolumeType string
	// MountOptions go to the attaching host in that connection_info
	// ("options"), as Cinder passes a share's mount options.
	MountOptions string
}

// Driver implements drivers.Driver on a set of shares.
type Driver struct {
	drivers.Unsupported
	cfg    Config
	ex     drivers.Executor
	target *tgt.Helper

	// prov caches each share's scanned provisioned bytes (stats.go).
	provMu sync.Mutex
	prov   map[string]provisioned

	mountMu sync.Mutex
	// mounting serialises mounts per share: two mounts of one share on one
	// mount point would stack (FUSE allows it).
	mounting map[string]*sync.Mutex
}

// New builds the base driver.
func New(cfg Config, ex drivers.Executor) (*Driver, error) {
	if len(cfg.Shares) == 0 {
		return nil, fmt.Errorf("options: no shares configured")
	}
	seen := map[string]bool{}
	for _, s := range cfg.Shares {
		if seen[s] {
			return nil, fmt.Errorf("options: share %q is listed twice", s)
		}
		seen[s] = true
	}
	if cfg.Format != "raw" && cfg.Format != "qcow2" {
		return nil, fmt.Errorf("options: volume format %q: want raw or qcow2", cfg.Format)
	}
	if cfg.Dir == nil {
		return nil, fmt.Errorf("remotefs: Config.Dir is required")
	}
	if cfg.MaxOverSubscriptionRatio < 1 {
		return nil, fmt.Errorf("options: max_over_subscription_ratio %v must be at least 1", cfg.MaxOverSubscriptionRatio)
	}
	if cfg.ReservedPercentage < 0 || cfg.ReservedPercentage > 100 {
		return nil, fmt.Errorf("options: reserved_percentage %d is outside 0..100", cfg.ReservedPercentage)
	}
	target, err := tgt.NewHelper(cfg.Driver, cfg.Target, cfg.DefaultVolumesDir, ex)
	if err != nil {
		return nil, err
	}
	if cfg.VolumeType == "" {
		cfg.VolumeType = cfg.Driver
	}
	return &Driver{
		Unsupported: drivers.Unsupported{Driver: cfg.Driver},
		cfg:         cfg,
		ex:          ex,
		target:      target,
		mounting:    map[string]*sync.Mutex{},
		prov:        map[string]provisioned{},
	}, nil
}

// MountPoint is where a share is mounted: <base>/<md5hex(share)>, as
// Cinder's RemoteFsClient computes it, so mounts made by Cinder are found.
func MountPoint(base, share string) string {
	sum := md5.Sum([]byte(share))
	return path.Join(base, hex.EncodeToString(sum[:]))
}

// CheckShare refuses a share that could be read as an option or split into
// two arguments by a mount helper.
func CheckShare(share string) error {
	switch {
	case share == "":
		return fmt.Errorf("share is empty")
	case strings.HasPrefix(share, "-"):
		return fmt.Errorf("share %q starts with '-'", share)
	case strings.ContainsAny(share, " \t\n\r\x00,"):
		return fmt.Errorf("share %q contains whitespace, a comma or NUL", share)
	}
	return nil
}

// dir mounts share if it must be and returns its directory. Only configured
// shares are used: a ProviderLocation from the registry never names a path
// by itself.
func (d *Driver) dir(ctx context.Context, share string) (string, error) {
	known := false
	for _, s := range d.cfg.Shares {
		if s == share {
			known = true
			break
		}
	}
	if !known {
		return "", drivers.Errorf(drivers.KindInvalid, "share "+share, "not a configured share of this %s backend (%s)",
			d.cfg.Driver, strings.Join(d.cfg.Shares, ", "))
	}
	dir := d.cfg.Dir(share)
	if d.cfg.Mount == nil {
		return dir, nil
	}
	d.mountMu.Lock()
	mu := d.mounting[share]
	if mu == nil {
		mu = &sync.Mutex{}
		d.mounting[share] = mu
	}
	d.mountMu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if err := d.cfg.Mount(ctx, share, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// volume is one volume's place: its share, directory and base file name.
type volume struct {
	id    string
	share string
	dir   string
	name  string // volume-<id>
}

func (v volume) path(file string) string { return path.Join(v.dir, file) }
func (v volume) base() string            { return v.path(v.name) }
func (v volume) infoPath() string        { return v.path(v.name + ".info") }

// Temporary files are named so that they never match an overlay name
// (volume-<id>.<uuid>), and DeleteVolume's volume-<id>.* sweep removes them.
func (v volume) tmp(purpose string) string { return v.path(v.name + ".tmp-" + purpose) }

// locate finds volume id: on hint's share when hint is set (the volume's
// ProviderLocation), otherwise on whichever configured share holds its file.
// found is false when no share has it.
func (d *Driver) locate(ctx context.Context, id, hint string) (v volume, found bool, err error) {
	name, err := drivers.VolumeName(id)
	if err != nil {
		return volume{}, false, err
	}
	shares := d.cfg.Shares
	if hint != "" {
		shares = []string{hint}
	}
	for _, s := range shares {
		dir, err := d.dir(ctx, s)
		if err != nil {
			return volume{}, false, err
		}
		v = volume{id: id, share: s, dir: dir, name: name}
		ok, err := d.exists(ctx, v.base())
		if err != nil {
			return volume{}, false, err
		}
		if ok {
			return v, true, nil
		}
	}
	return volume{id: id, name: name}, false, nil
}

// mustLocate is locate for operations whose volume must exist.
func (d *Driver) mustLocate(ctx context.Context, op, id, hint string) (volume, error) {
	v, found, err := d.locate(ctx, id, hint)
	if err != nil {
		return volume{}, err
	}
	if !found {
		where := strings.Join(d.cfg.Shares, ", ")
		if hint != "" {
			where = hint
		}
		return volume{}, drivers.Errorf(drivers.KindNotFound, op+" "+v.name, "no volume file on %s", where)
	}
	return v, nil
}

// run runs one command in the C locale, so that the messages we match on
// are the untranslated ones.
func (d *Driver) run(ctx context.Context, c drivers.Command) (drivers.Output, error) {
	c.Env = append(c.Env, "LC_ALL=C")
	return d.ex.Run(ctx, c)
}

func (d *Driver) cmd(ctx context.Context, op string, args ...string) (drivers.Output, error) {
	out, err := d.run(ctx, drivers.Command{Args: args})
	return out, classify(op, err)
}

// exists tests for a file with test(1): exit 1 means absent, anything else
// but 0 is a failure to look (e.g. a dead mount).
func (d *Driver) exists(ctx context.Context, p string) (bool, error) {
	_, err := d.run(ctx, drivers.Command{Args: []string{"test", "-e", p}})
	if err == nil {
		return true, nil
	}
	if ce, ok := drivers.AsCommandError(err); ok && ce.ExitCode == 1 && !ce.TimedOut {
		return false, nil
	}
	return false, classify("test -e "+p, err)
}

// classify maps a failed command to a kind by what it said.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*drivers.Error); ok {
		return err
	}
	if ce, ok := drivers.AsCommandError(err); ok {
		switch {
		case strings.Contains(ce.Stderr, "No space left on device"),
			strings.Contains(ce.Stderr, "Disk quota exceeded"):
			return drivers.Wrap(drivers.KindNoCapacity, op, err)
		case strings.Contains(ce.Stderr, "Transport endpoint is not connected"),
			strings.Contains(ce.Stderr, "Stale file handle"),
			strings.Contains(ce.Stderr, "Connection timed out"),
			strings.Contains(ce.Stderr, "Connection refused"),
			strings.Contains(ce.Stderr, "No route to host"):
			return drivers.Wrap(drivers.KindUnavailable, op, err)
		}
	}
	return drivers.Wrap(drivers.KindOf(err), op, err)
}
