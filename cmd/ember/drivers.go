package main

// The drivers this binary can open by name (configuration `driver:`). Each
// registers itself, as database/sql drivers do.
import (
	_ "github.com/ember-storage/ember/drivers/file"
	_ "github.com/ember-storage/ember/drivers/glusterfs"
	_ "github.com/ember-storage/ember/drivers/lvm"
	_ "github.com/ember-storage/ember/drivers/nfs"
	_ "github.com/ember-storage/ember/drivers/rbd"
	_ "github.com/ember-storage/ember/drivers/sheepdog"
)
