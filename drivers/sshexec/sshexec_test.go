package sshexec

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ember-storage/ember/drivers"
)

// The tests run a real OpenSSH sshd on loopback (Debian's openssh-server,
// installed by deploy/testenv/install.sh) with a generated host key and
// authorized_keys, and stop it by PID. If sshd cannot start, they fail;
// only -short skips them.

type sshd struct {
	dir, url, keyFile, knownHosts string
	port                          int
	hostKey                       ssh.PublicKey
}

func writeKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startSSHD(t *testing.T) *sshd {
	t.Helper()
	if testing.Short() {
		t.Skip("real sshd: not in -short")
	}
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		if out, err := exec.Command("bash", "../../deploy/testenv/install.sh").CombinedOutput(); err != nil {
			t.Fatalf("sshd missing and install.sh failed: %v: %s", err, out)
		}
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s := &sshd{dir: t.TempDir(), port: freePort(t)}
	s.hostKey = writeKey(t, filepath.Join(s.dir, "host_key"))
	s.keyFile = filepath.Join(s.dir, "id_ed25519")
	clientKey := writeKey(t, s.keyFile)
	authorized := filepath.Join(s.dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientKey), 0o600); err != nil {
		t.Fatal(err)
	}
	s.knownHosts = filepath.Join(s.dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("127.0.0.1:%d", s.port))}, s.hostKey)
	if err := os.WriteFile(s.knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(strings.Join([]string{
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(s.dir, "host_key"),
		"AuthorizedKeysFile " + authorized,
		"PidFile none",
		"UsePAM no",
		"StrictModes no", // the temp dir's parents are not ours to tighten
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"LogLevel ERROR",
	}, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-D", "-e", "-f", conf, "-p", strconv.Itoa(s.port))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %d: %v\n%s", s.port, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.url = fmt.Sprintf("ssh://%s@127.0.0.1:%d", me.Username, s.port)
	return s
}

func (s *sshd) executor(t *testing.T) *Executor {
	t.Helper()
	e, err := New(Config{URL: s.url, KeyFile: s.keyFile, KnownHostsFile: s.knownHosts, DefaultTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestArgvArrivesIntact(t *testing.T) {
	e := startSSHD(t).executor(t)
	args := []string{"a b", "it's", `say "hi"`, "x;y", "$HOME", "*", "`id`", "", "back\\slash", "new\nline"}
	out, err := e.Run(context.Background(), drivers.Command{Args: append([]string{"printf", `%s\0`}, args...)})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out.Stdout), "\x00"), "\x00")
	if strings.Join(got, "|") != strings.Join(args, "|") {
		t.Fatalf("remote argv\n  got  %q\n  want %q", got, args)
	}
	out, err = e.Run(context.Background(), drivers.Command{Args: []string{"sh", "-c", `printf %s "$LC_ALL/$X"`}, Env: []string{"LC_ALL=C", "X=a 'b'"}})
	if err != nil || string(out.Stdout) != "C/a 'b'" {
		t.Fatalf("env: %q %v", out.Stdout, err)
	}
}

func TestStdinStdoutStream(t *testing.T) {
	e := startSSHD(t).executor(t)
	data := make([]byte, 8<<20)
	rand.Read(data)
	h := sha256.New()
	_, err := e.Run(context.Background(), drivers.Command{Args: []string{"cat"}, Stdin: bytes.NewReader(data), Stdout: h})
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("8 MiB through cat came back different")
	}
}

func TestExitCodeAndStderrKept(t *testing.T) {
	e := startSSHD(t).executor(t)
	out, err := e.Run(context.Background(), drivers.Command{Args: []string{"sh", "-c", "echo partial; echo 'Volume group not found' >&2; exit 5"}})
	ce, ok := drivers.AsCommandError(err)
	if !ok || ce.ExitCode != 5 || ce.Stderr != "Volume group not found\n" || ce.TimedOut || string(out.Stdout) != "partial\n" {
		t.Fatalf("got %#v, stdout %q", err, out.Stdout)
	}
	if drivers.KindOf(err) != drivers.KindBackend {
		t.Fatalf("a failed command is not transient: %v", drivers.KindOf(err))
	}
	// the connection is reused by the next command
	if _, err := e.Run(context.Background(), drivers.Command{Args: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownHostKeyRefused(t *testing.T) {
	s := startSSHD(t)
	other := writeKey(t, filepath.Join(t.TempDir(), "other"))
	for name, content := range map[string]string{
		"empty":   "",
		"changed": knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("127.0.0.1:%d", s.port))}, other) + "\n",
	} {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(kh, []byte(content), 0o600)
		e, err := New(Config{URL: s.url, KeyFile: s.keyFile, KnownHostsFile: kh})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.Run(context.Background(), drivers.Command{Args: []string{"touch", filepath.Join(s.dir, "ran")}})
		if !errors.Is(err, ErrHostKey) || drivers.KindOf(err) != drivers.KindBackend || !strings.Contains(err.Error(), "SHA256:") {
			t.Fatalf("%s known_hosts: want a permanent host key error, got %v (%s)", name, err, drivers.KindOf(err))
		}
		if _, serr := os.Stat(filepath.Join(s.dir, "ran")); serr == nil {
			t.Fatalf("%s known_hosts: the command ran", name)
		}
	}
}

func TestTimeoutKillsRemoteCommand(t *testing.T) {
	s := startSSHD(t)
	e := s.executor(t)
	pidFile := filepath.Join(s.dir, "pid")
	start := time.Now()
	_, err := e.Run(context.Background(), drivers.Command{
		Args:    []string{"sh", "-c", `echo $$ > "$0"; exec sleep 60`, pidFile},
		Timeout: time.Second,
	})
	ce, ok := drivers.AsCommandError(err)
	if !ok || !ce.TimedOut || drivers.KindOf(err) != drivers.KindUnavailable {
		t.Fatalf("want a timed-out command error, got %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("Run returned after %v", time.Since(start))
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("remote sleep (pid %d) still runs after the timeout", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// cancellation by the caller's context works the same way
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	if _, err := e.Run(ctx, drivers.Command{Args: []string{"sleep", "60"}}); drivers.KindOf(err) != drivers.KindUnavailable {
		t.Fatalf("cancel: %v", err)
	}
}

func TestUnreachableHostIsUnavailable(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	writeKey(t, key)
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	e, err := New(Config{URL: fmt.Sprintf("ssh://root@127.0.0.1:%d", freePort(t)), KeyFile: key, KnownHostsFile: kh, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(context.Background(), drivers.Command{Args: []string{"true"}}); !drivers.IsKind(err, drivers.KindUnavailable) {
		t.Fatalf("refused connection: want unavailable, got %v", err)
	}
}

func TestQuoteAndConfig(t *testing.T) {
	for in, want := range map[string]string{"": "''", "a b": "'a b'", "it's": `'it'\''s'`, "$x;y": "'$x;y'"} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
	if _, err := commandLine(drivers.Command{Args: []string{"x"}, Env: []string{"A B=1"}}); err == nil {
		t.Error("bad env name accepted")
	}
	for _, u := range []string{"ssh://host", "http://u@h", "ssh://u:pw@h", "ssh://u@h:99999", "u@h"} {
		if _, err := New(Config{URL: u, KeyFile: "/nonexistent", KnownHostsFile: "/nonexistent"}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	var _ drivers.Executor = (*Executor)(nil)
	_ = io.Discard
}
