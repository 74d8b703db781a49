package tgt

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// tgtd is the real target daemon of this test run, started by TestMain
// with deploy/testenv/tgt.sh on a free loopback port and a control port of
// its own, so that it meets no other tgtd on a shared machine. It is nil
// under -short, where only the transcript tests run.
var tgtd *tgtdEnv

type tgtdEnv struct {
	dir         string
	portal      string
	controlPort int
}

var script = filepath.Join("..", "..", "deploy", "testenv", "tgt.sh")

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	env, err := startTgtd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the real iSCSI tests need tgtd, libiscsi-bin and qemu-utils (deploy/testenv/install.sh, as root); -short runs the transcript tests alone.\n%v\n", err)
		os.Exit(1)
	}
	tgtd = env
	code := m.Run()
	if err := runScript(env, "down"); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stopping tgtd: %v\n", err)
		code = 1
	}
	os.RemoveAll(env.dir)
	os.Exit(code)
}

func startTgtd() (*tgtdEnv, error) {
	for _, tool := range []string{"tgtd", "tgtadm", "tgt-admin", "iscsi-readcapacity16", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "ember-tgtd-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	// Control ports are not discoverable like TCP ports; try a few.
	base := 10000 + os.Getpid()%20000 // tgtd takes 0..32767
	for i := range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		env := &tgtdEnv{dir: dir, portal: "127.0.0.1:" + strconv.Itoa(port), controlPort: base + i}
		if lastErr = runScript(env, "up"); lastErr == nil {
			return env, nil
		}
		_ = runScript(env, "down") // a half-started tgtd must not block the next try

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

func runScript(env *tgtdEnv, verb string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, verb, env.dir)
	cmd.Env = append(os.Environ(), "TGT_PORTAL="+env.portal, "TGT_CONTROL_PORT="+strconv.Itoa(env.controlPort))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tgt.sh %s: %v\n%s", verb, err, out)
	}
	return nil
}
