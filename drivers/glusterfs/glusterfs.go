// Package glusterfs is the GlusterFS backend (Cinder's glusterfs.py): the
// remote-filesystem base on shares mounted with the GlusterFS FUSE client.
package glusterfs

import (
	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs"
)

func init() { drivers.Register("glusterfs", Open) }

// Open builds a glusterfs driver for b; its options are remotefs.Options,
// shares written "host:/volume".
func Open(b drivers.Backend, ex drivers.Executor) (drivers.Driver, error) {
	return remotefs.OpenMounted("glusterfs", "glusterfs", b, ex)
}
