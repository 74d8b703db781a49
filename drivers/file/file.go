// Package file is the embedded default backend: volumes as sparse raw or
// qcow2 files in a directory of the storage host, named volume-<id> as
// Cinder names them, with qcow2 snapshot chains. It is the remote-filesystem
// base (drivers/remotefs) on a single local "share", the directory, which
// needs no mount. Every command runs through the executor, so the directory
// may be local or on an SSH host.
//
// # Attach
//
// A raw volume without snapshots is exported over iSCSI through tgtd with
// its file as the backing store; a qcow2 volume or one with snapshots gets
// driver_volume_type "local" with data {export: dir, name: the active
// file, format: qcow2, options: ""} (see drivers/remotefs). Options:
//
//	target_helper     tgt (default) or none: no export, attach answers not_supported
//	target_portal     ip:port where tgtd listens (default 127.0.0.1:3260)
//	volumes_dir       persistent target files on the storage host (default <dir>/targets)
//	use_chap_auth     a fresh CHAP account per export (default false, as Cinder)
//	tgt_control_port  tgtd's management socket, tgtd -C / tgtadm -C (default 0)
package file

import (
	"fmt"
	"path"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs"
	"github.com/ember-storage/ember/drivers/tgt"
)

func init() { drivers.Register("file", Open) }

// Options are the file backend's configuration keys.
type Options struct {
	Dir    string `json:"dir"`
	Format string `json:"format"` // raw (default) or qcow2
	// Attach through tgt; volumes_dir defaults to <dir>/targets.
	tgt.Options
}

// Driver is the file backend. A volume's ProviderLocation is the directory.
type Driver struct {
	*remotefs.Driver
}

// Open builds a file driver for b.
func Open(b drivers.Backend, ex drivers.Executor) (drivers.Driver, error) {
	var o Options
	if err := drivers.DecodeOptions(b.Options, &o); err != nil {
		return nil, err
	}
	if o.Format == "" {
		o.Format = "raw"
	}
	if o.Format != "raw" && o.Format != "qcow2" {
		return nil, fmt.Errorf("options: format %q: want raw or qcow2", o.Format)
	}
	if !path.IsAbs(o.Dir) {
		return nil, fmt.Errorf("options: dir %q must be an absolute path", o.Dir)
	}
	dir := path.Clean(o.Dir)
	base, err := remotefs.New(remotefs.Config{
		Driver: "file",
		Shares: []string{dir},
		Dir:    func(string) string { return dir },
		Format: o.Format,
		// Files are thin; Cinder's default ratio, so that a dev data
		// directory on a small disk still takes a few large volumes.
		MaxOverSubscriptionRatio: remotefs.DefaultMaxOverSubscriptionRatio,
		Target:                   o.Options,
		// A subdirectory: the volume files' listing (-maxdepth 1 -type f)
		// never sees it, and target files volume-<id> never meet the
		// volume files of the same name.
		DefaultVolumesDir: path.Join(dir, "targets"),
		VolumeType:        "local",
	}, ex)
	if err != nil {
		return nil, err
	}
	return &Driver{Driver: base}, nil
}
