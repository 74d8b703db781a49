package file

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

// tgtd is this package's own real target daemon, started by TestMain with
// deploy/testenv/tgt.sh on a free loopback port and a control port of its
// own (as drivers/tgt's tests do, sharing nothing with them), for the
// attach tests. It is nil under -short, where those tests skip; otherwise a
// tgtd that cannot start fails the package.
var tgtd *tgtdEnv

type tgtdEnv struct {
	dir         string
	portal      string
	controlPort int
}

var tgtScript = filepath.Join("..", "..", "deploy", "testenv", "tgt.sh")

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	env, err := startTgtd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the attach tests need tgtd, libiscsi-bin and qemu-utils (deploy/testenv/install.sh, as root); -short skips them.\n%v\n", err)
		os.Exit(1)
	}
	tgtd = env
	code := m.Run()
	if err := runTgtScript(env, "down"); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stopping tgtd: %v\n", err)
		code = 1
	}
	os.RemoveAll(env.dir)
	os.Exit(code)
}

func startTgtd() (*tgtdEnv, error) {
	for _, tool := range []string{"tgtd", "tgtadm", "tgt-admin", "iscsi-readcapacity16", "qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "ember-file-tgtd-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	// Control ports are not discoverable like TCP ports; try a few, in a
	// range apart from drivers/tgt's (10000 + pid%20000), which may run
	// at the same time.
	base := 30000 + os.Getpid()%2000 // tgtd takes 0..32767
	for i := range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		env := &tgtdEnv{dir: dir, portal: "127.0.0.1:" + strconv.Itoa(port), controlPort: base + i}
		if lastErr = runTgtScript(env, "up"); lastErr == nil {
			return env, nil
		}
		_ = runTgtScript(env, "down") // a half-started tgtd must not block the next try
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

func runTgtScript(env *tgtdEnv, verb string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", tgtScript, verb, env.dir)
	cmd.Env = append(os.Environ(), "TGT_PORTAL="+env.portal, "TGT_CONTROL_PORT="+strconv.Itoa(env.controlPort))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tgt.sh %s: %v\n%s", verb, err, out)
	}
	return nil
}
