// Package nfs is the NFS backend (Cinder's nfs.py): the remote-filesystem
// base on shares mounted with the kernel NFS client.
//
// Attach: a raw volume without snapshots is exported over iSCSI through
// tgtd with its file on the mounted share as the backing store; a qcow2
// volume or one with snapshots gets driver_volume_type "nfs" with data
// {export: the share, name: the active file, format: qcow2, options:
// mount_options} (see drivers/remotefs). Options, beside remotefs.Options'
// share keys:
//
//	target_helper     tgt (default) or none: no export, attach answers not_supported
//	target_portal     ip:port where tgtd listens (default 127.0.0.1:3260)
//	volumes_dir       persistent target files on the storage host (default /var/lib/ember/targets)
//	use_chap_auth     a fresh CHAP account per export (default false, as Cinder)
//	tgt_control_port  tgtd's management socket, tgtd -C / tgtadm -C (default 0)
package nfs

import (
	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs"
)

func init() { drivers.Register("nfs", Open) }

// Open builds an nfs driver for b; its options are remotefs.Options,
// shares written "host:/export", mount_options as for mount.nfs (-o).
func Open(b drivers.Backend, ex drivers.Executor) (drivers.Driver, error) {
	return remotefs.OpenMounted("nfs", "nfs", b, ex)
}
