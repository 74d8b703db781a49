package file

import (
	"os"
	"testing"

	"github.com/ember-storage/ember/drivers/tgt/tgttest"
)

// tgtd is this package's own real target daemon for the attach tests; nil
// under -short, where they skip. Its control ports (30000 + pid%2000) stay
// apart from drivers/tgt's, which may run at the same time.
var tgtd *tgttest.Daemon

func TestMain(m *testing.M) {
	tgtd = tgttest.Main(m, 30000+os.Getpid()%2000,
		"the attach tests need tgtd, libiscsi-bin and qemu-utils", "iscsi-readcapacity16", "qemu-img", "qemu-io")
	os.Exit(tgttest.Run(m, tgtd))
}
