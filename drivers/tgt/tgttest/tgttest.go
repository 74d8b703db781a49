// Package tgttest runs a real tgtd for tests, with deploy/testenv/tgt.sh on
// a free loopback portal and a control port of the caller's own, so that
// packages testing at the same time share no daemon: once for a test
// package from its TestMain (Main), or for one test (Start). Only tests
// import it.
package tgttest

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Daemon is a running tgtd.
type Daemon struct {
	Dir         string
	Portal      string // 127.0.0.1:<port>
	ControlPort int    // tgtd -C, tgtadm -C
}

// Main starts a test package's tgtd, unless -short (then nil): control
// ports from base are tried in turn. A tgtd that cannot start fails the
// package, need saying what its tests needed. Run runs the tests and stops it.
func Main(m *testing.M, base int, need string, tools ...string) *Daemon {
	flag.Parse()
	if testing.Short() {
		return nil
	}
	d, err := start(base, tools)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %s (deploy/testenv/install.sh, as root); -short skips them.\n%v\n", need, err)
		os.Exit(1)
	}
	return d
}

// Stop stops the daemon and removes its directory.
func (d *Daemon) Stop() error {
	defer os.RemoveAll(d.Dir)
	return d.script("down")
}

// Run is m.Run with d stopped after it; the exit code fails when tgtd
// does not stop.
func Run(m *testing.M, d *Daemon) int {
	code := m.Run()
	if d != nil {
		if err := d.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: stopping tgtd: %v\n", err)
			code = 1
		}
	}
	return code
}

// Start starts a tgtd for one test and stops it when the test ends; under
// -short the test is skipped. A tgtd that cannot start fails the test.
// Control ports from base are tried in turn; tools are more binaries the
// test needs.
func Start(t testing.TB, base int, tools ...string) *Daemon {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs a real tgtd")
	}
	d, err := start(base, tools)
	if err != nil {
		t.Fatalf("cannot start tgtd (deploy/testenv/tgt.sh; packages: deploy/testenv/install.sh, as root): %v", err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stopping tgtd: %v", err)
		}
	})
	return d
}

func start(base int, tools []string) (*Daemon, error) {
	for _, tool := range append([]string{"tgtd", "tgtadm", "tgt-admin"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "ember-tgtd-")
	if err != nil {
		return nil, err
	}
	// Control ports are not discoverable like TCP ports: try a few.
	var lastErr error
	for i := range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		d := &Daemon{Dir: dir, Portal: "127.0.0.1:" + strconv.Itoa(port), ControlPort: base + i}
		if lastErr = d.script("up"); lastErr == nil {
			return d, nil
		}
		_ = d.script("down") // a half-started tgtd must not block the next try
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// script runs deploy/testenv/tgt.sh verb for d.
func (d *Daemon) script(verb string) error {
	_, here, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(here), "..", "..", "..", "deploy", "testenv", "tgt.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, verb, d.Dir)
	cmd.Env = append(os.Environ(), "TGT_PORTAL="+d.Portal, "TGT_CONTROL_PORT="+strconv.Itoa(d.ControlPort))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tgt.sh %s: %v\n%s", verb, err, out)
	}
	return nil
}

// LUNURL is libiscsi's and qemu's address of a LUN, with CHAP credentials
// unless user is empty.
func LUNURL(portal, iqn string, lun int, user, pass string) string {
	auth := ""
	if user != "" {
		auth = user + "%" + pass + "@"
	}
	return "iscsi://" + auth + portal + "/" + iqn + "/" + strconv.Itoa(lun)
}

// Initiator runs an initiator-side tool (libiscsi's iscsi-ls or
// iscsi-readcapacity16, qemu-img or qemu-io on an iscsi:// URL), bounded
// in time, and returns what it printed.
func Initiator(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

// Show is what tgtd itself says (`tgtadm --op show --mode target|account`),
// read without the code under test.
func (d *Daemon) Show(t testing.TB, mode string) string {
	t.Helper()
	out, err := Initiator(t, "tgtadm", "-C", strconv.Itoa(d.ControlPort), "--lld", "iscsi", "--op", "show", "--mode", mode)
	if err != nil {
		t.Fatalf("tgtadm show %s: %v\n%s", mode, err, out)
	}
	return out
}
