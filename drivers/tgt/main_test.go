package tgt

import (
	"os"
	"testing"

	"github.com/ember-storage/ember/drivers/tgt/tgttest"
)

// tgtd is the real target daemon of this test run (drivers/tgt/tgttest),
// on control ports 10000 + pid%20000. It is nil under -short, where only
// the transcript tests run.
var tgtd *tgttest.Daemon

func TestMain(m *testing.M) {
	tgtd = tgttest.Main(m, 10000+os.Getpid()%20000,
		"the real iSCSI tests need tgtd, libiscsi-bin and qemu-utils", "iscsi-readcapacity16", "qemu-img")
	os.Exit(tgttest.Run(m, tgtd))
}
