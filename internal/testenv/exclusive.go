package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Exclusive takes the machine-wide lock name, waiting up to timeout, for a
// component this machine can run once at a time: glusterd is one daemon per
// host, and `go test ./...` runs test packages in parallel (drivers/glusterfs
// and cmd/ember both bring GlusterFS up). It is a flock on
// /tmp/ember-<name>.lock, so a test process that dies lets it go. Call the
// returned func to release it.
func Exclusive(name string, timeout time.Duration) (func(), error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "ember-"+name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("machine lock %s: %w (another test holds it)", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
