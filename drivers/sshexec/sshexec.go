// Package sshexec is a drivers.Executor that runs commands on a storage host
// over SSH (golang.org/x/crypto/ssh), with key authentication and the host's
// key checked against a known_hosts file: never trust-on-first-use, never
// InsecureIgnoreHostKey.
//
// The SSH protocol carries a command as one string that the remote user's
// shell parses, so each argv element is single-quoted (a quote inside
// becoming '\”) and reaches the program exactly as given: spaces, quotes,
// ';', '$' and globs included. Command.Env is passed as `env 'K=V' …` in
// front of the command, because sshd accepts only the variables its
// AcceptEnv lists.
//
// Errors: a command that ran and failed is a *drivers.CommandError, as with
// the local executor (ExitCode from the remote exit status, -1 when it died
// by a signal or the session broke, TimedOut on timeout or cancellation).
// The remote login shell must be POSIX sh compatible.
// A host that cannot be reached or that refuses the connection or our key is
// drivers.KindUnavailable (retryable). A host key that is unknown or does not
// match known_hosts is KindBackend wrapping ErrHostKey: permanent on purpose,
// because retrying cannot fix it and must not hide a possible
// man-in-the-middle; an operator has to verify the key and add it.
package sshexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ember-storage/ember/drivers"
)

// ErrHostKey is wrapped by every host key refusal.
var ErrHostKey = errors.New("ssh host key not trusted")

// Config says where and how to connect.
type Config struct {
	URL            string        // ssh://user@host[:port]
	KeyFile        string        // private key (unencrypted PEM/OpenSSH)
	KnownHostsFile string        // OpenSSH known_hosts holding the host's key
	DefaultTimeout time.Duration // for commands that set none; 0 = none
	ConnectTimeout time.Duration // TCP connect and SSH handshake; default 15s
}

// Executor runs commands over one SSH connection, re-dialled when it breaks.
// It is safe for concurrent use: each command gets its own session.
type Executor struct {
	cfg    Config
	user   string
	addr   string // host:port as known_hosts is looked up
	client *ssh.ClientConfig

	mu   sync.Mutex
	conn *ssh.Client
}

// New checks the configuration and loads the key and known_hosts; it does
// not connect (that happens on the first command).
func New(cfg Config) (*Executor, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "ssh" || u.Hostname() == "" || u.User == nil || u.User.Username() == "" {
		return nil, fmt.Errorf("sshexec: host %q: want ssh://user@host[:port]", cfg.URL)
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return nil, fmt.Errorf("sshexec: host %q: passwords are not supported, use key_file", cfg.URL)
	}
	port := u.Port()
	if port == "" {
		port = "22"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("sshexec: host %q: bad port", cfg.URL)
	}
	if cfg.KeyFile == "" || cfg.KnownHostsFile == "" {
		return nil, fmt.Errorf("sshexec: host %q: key_file and known_hosts_file are required", cfg.URL)
	}
	pem, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("sshexec: key file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("sshexec: key file %s: %w", cfg.KeyFile, err)
	}
	hostKeys, err := knownhosts.New(cfg.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("sshexec: known_hosts: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	e := &Executor{cfg: cfg, user: u.User.Username(), addr: net.JoinHostPort(u.Hostname(), port)}
	e.client = &ssh.ClientConfig{
		User: e.user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			if err := hostKeys(hostname, remote, key); err != nil {
				return fmt.Errorf("%w: %s offered %s %s: %v", ErrHostKey, hostname, key.Type(), ssh.FingerprintSHA256(key), err)
			}
			return nil
		},
		// Ask the server for the key type known_hosts holds, or a host with
		// both an ed25519 and an RSA key would be refused for the one we
		// do not list (golang/go#29286).
		HostKeyAlgorithms: knownAlgorithms(hostKeys, e.addr),
		Timeout:           cfg.ConnectTimeout,
	}
	return e, nil
}

// knownAlgorithms lists the key algorithms known_hosts has for addr, found
// by asking the callback about a key it cannot hold: its KeyError lists the
// keys it wanted.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	var ke *knownhosts.KeyError
	err := cb(addr, &net.TCPAddr{IP: net.IPv4zero}, probeKey{})
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	return algos
}

// probeKey is a public key no known_hosts line can match.
type probeKey struct{}

func (probeKey) Type() string                        { return "ember-probe" }
func (probeKey) Marshal() []byte                     { return []byte("ember-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe") }

// Quote makes s one word for a POSIX shell: single quotes, nothing
// interpreted inside them, a single quote written as '\”.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// commandLine is the string sent to the remote shell for c.
func commandLine(c drivers.Command) (string, error) {
	var words []string
	if len(c.Env) > 0 {
		words = append(words, "env")
		for _, kv := range c.Env {
			if !envName.MatchString(kv) {
				return "", fmt.Errorf("environment entry %q is not NAME=value", kv)
			}
			words = append(words, Quote(kv))
		}
	}
	for _, a := range c.Args {
		words = append(words, Quote(a))
	}
	return strings.Join(words, " "), nil
}

// dial returns the shared connection, connecting when there is none.
func (e *Executor) dial(ctx context.Context) (*ssh.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		return e.conn, nil
	}
	d := net.Dialer{Timeout: e.cfg.ConnectTimeout}
	nc, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		return nil, drivers.Wrap(drivers.KindUnavailable, "ssh "+e.addr, err)
	}
	// The handshake gets the same bound as the connect: a host that
	// accepts TCP and then says nothing must not hang us.
	nc.SetDeadline(time.Now().Add(e.cfg.ConnectTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(nc, e.addr, e.client)
	if err != nil {
		nc.Close()
		if errors.Is(err, ErrHostKey) {
			return nil, drivers.Wrap(drivers.KindBackend, "ssh "+e.addr, err)
		}
		return nil, drivers.Wrap(drivers.KindUnavailable, "ssh "+e.addr, err)
	}
	nc.SetDeadline(time.Time{})
	e.conn = ssh.NewClient(cc, chans, reqs)
	return e.conn, nil
}

// drop forgets a broken connection so the next command dials again.
func (e *Executor) drop(c *ssh.Client) {
	e.mu.Lock()
	if e.conn == c {
		e.conn = nil
	}
	e.mu.Unlock()
	c.Close()
}

// Close closes the connection.
func (e *Executor) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return nil
	}
	err := e.conn.Close()
	e.conn = nil
	return err
}

// Run implements drivers.Executor.
func (e *Executor) Run(ctx context.Context, c drivers.Command) (drivers.Output, error) {
	if len(c.Args) == 0 || c.Args[0] == "" {
		return drivers.Output{}, errors.New("empty command")
	}
	line, err := commandLine(c)
	if err != nil {
		return drivers.Output{}, drivers.Wrap(drivers.KindInvalid, c.String(), err)
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = e.cfg.DefaultTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	client, err := e.dial(ctx)
	if err != nil {
		return drivers.Output{}, err
	}
	sess, err := client.NewSession()
	if err != nil {
		// A connection that cannot open a channel is dead (host rebooted,
		// sshd restarted): dial afresh once.
		e.drop(client)
		if client, err = e.dial(ctx); err != nil {
			return drivers.Output{}, err
		}
		if sess, err = client.NewSession(); err != nil {
			e.drop(client)
			return drivers.Output{}, drivers.Wrap(drivers.KindUnavailable, "ssh "+e.addr, err)
		}
	}
	defer sess.Close()

	var stdout, stderr bytes.Buffer
	sess.Stdout = &stdout
	if c.Stdout != nil {
		sess.Stdout = c.Stdout
	}
	pid := &pidCatcher{next: &drivers.LimitedBuffer{Buf: &stderr, Max: drivers.StderrLimit}}
	sess.Stderr = pid
	if c.Stdin != nil {
		sess.Stdin = c.Stdin
	}
	// The remote shell reports its PID on stderr before exec'ing the
	// command (which keeps that PID, and leads its process group since sshd
	// made it a session leader): on timeout we can kill the group even where
	// sshd refuses the "signal" request (it does for root logins).
	if err := sess.Start(`printf '` + pidMarker + `%d\n' $$ >&2; exec ` + line); err != nil {
		return drivers.Output{}, drivers.Wrap(drivers.KindUnavailable, "ssh "+e.addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		if p := pid.get(); p > 1 {
			e.kill(client, p)
		}
		sess.Close() // so that Wait returns even if the kill did not land
		out := drivers.Output{}
		select {
		case <-done: // the output buffers are ours again
			out = drivers.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
		case <-time.After(5 * time.Second):
		}
		return out, &drivers.CommandError{Args: c.Args, ExitCode: -1, Stderr: string(out.Stderr), TimedOut: true, Err: ctx.Err()}
	}
	out := drivers.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if err == nil {
		return out, nil
	}
	ce := &drivers.CommandError{Args: c.Args, ExitCode: -1, Stderr: stderr.String(), Err: err}
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(err, &ee):
		ce.ExitCode = ee.ExitStatus()
		if ee.Signal() != "" {
			ce.ExitCode = -1
		}
	case errors.As(err, &missing), errors.Is(err, io.EOF):
		// The connection went away under the command: whether it ran is
		// unknown, so the caller must treat it as transient.
		e.drop(client)
		return out, drivers.Wrap(drivers.KindUnavailable, "ssh "+e.addr, ce)
	}
	return out, ce
}

// kill ends a timed-out command's process group from a second session.
func (e *Executor) kill(client *ssh.Client, pid int) {
	sess, err := client.NewSession()
	if err != nil {
		return
	}
	defer sess.Close()
	done := make(chan struct{})
	go func() { _ = sess.Run("kill -KILL -- -" + strconv.Itoa(pid) + " " + strconv.Itoa(pid)); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// pidMarker prefixes the PID line the remote shell writes first on stderr.
const pidMarker = "ember-sshexec-pid:"

// pidCatcher takes the PID line off the front of stderr and passes the
// rest through.
type pidCatcher struct {
	mu   sync.Mutex
	head []byte
	seen bool
	pid  int
	next io.Writer
}

func (p *pidCatcher) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen {
		return p.next.Write(b)
	}
	p.head = append(p.head, b...)
	i := bytes.IndexByte(p.head, '\n')
	if i < 0 && len(p.head) < 64 {
		return len(b), nil
	}
	p.seen = true
	rest := p.head
	if i >= 0 && bytes.HasPrefix(p.head, []byte(pidMarker)) {
		p.pid, _ = strconv.Atoi(string(p.head[len(pidMarker):i]))
		rest = p.head[i+1:]
	}
	p.head = nil
	if _, err := p.next.Write(rest); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (p *pidCatcher) get() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}
