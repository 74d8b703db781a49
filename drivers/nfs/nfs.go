// Package nfs is the NFS backend (Cinder's nfs.py): the remote-filesystem
// base on shares mounted with the kernel NFS client.
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
