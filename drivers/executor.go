package drivers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Command is one argv vector to run on a storage host. There is no shell:
// Args[0] is the program, the rest are its arguments, passed as they are.
type Command struct {
	Args []string
	// Env adds KEY=VALUE pairs to the process environment (e.g. LC_ALL=C).
	Env []string
	// Stdin, when set, feeds the command.
	Stdin io.Reader
	// Stdout, when set, receives the command's output as it streams;
	// Output.Stdout is then empty.
	Stdout io.Writer
	// Timeout bounds the command; zero means the executor's default.
	Timeout time.Duration
}

func (c Command) String() string { return strings.Join(c.Args, " ") }

// Output is what a finished command printed.
type Output struct {
	Stdout []byte
	Stderr []byte
}

// Executor runs commands on a storage host: locally or over SSH.
type Executor interface {
	Run(ctx context.Context, cmd Command) (Output, error)
}

// CommandError keeps what a failed command was, how it ended and what it said.
type CommandError struct {
	Args     []string
	ExitCode int // -1 when the command did not exit normally
	Stderr   string
	TimedOut bool
	Err      error
}

// Error is the message a requester may see (functions put it in .error):
// stderr goes through Sanitize (bounded, no URLs, no control characters)
// and URLs in the arguments are redacted. Callers that match on what the
// command said read Stderr, which is kept as it was.
func (e *CommandError) Error() string {
	args := RedactURLs(strings.Join(e.Args, " "))
	head := fmt.Sprintf("%s: exit %d", args, e.ExitCode)
	if e.TimedOut {
		head = args + ": timed out"
	}
	if msg := Sanitize(e.Stderr); msg != "" {
		return head + ": " + msg
	}
	if e.Err != nil {
		return head + ": " + Sanitize(e.Err.Error())
	}
	return head
}

func (e *CommandError) Unwrap() error { return e.Err }

// AsCommandError returns err's *CommandError, if it has one.
func AsCommandError(err error) (*CommandError, bool) {
	var ce *CommandError
	ok := errors.As(err, &ce)
	return ce, ok
}

// LocalExecutor runs commands on this machine with os/exec. The process
// environment passes through, so an operator's LVM_SYSTEM_DIR or CEPH_CONF
// reaches the tools.
type LocalExecutor struct {
	// DefaultTimeout bounds commands that set none. It should be well under
	// the lock lease so that a hung host cannot outlive the lease.
	DefaultTimeout time.Duration
}

func (l LocalExecutor) Run(ctx context.Context, c Command) (Output, error) {
	if len(c.Args) == 0 || c.Args[0] == "" {
		return Output{}, errors.New("empty command")
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = l.DefaultTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdin = c.Stdin
	// WaitDelay keeps a killed command's orphaned pipes from holding us.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	cmd.Stderr = &LimitedBuffer{Buf: &stderr, Max: StderrLimit}
	err := cmd.Run()
	out := Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if err == nil {
		return out, nil
	}
	ce := &CommandError{Args: c.Args, ExitCode: -1, Stderr: stderr.String(), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ce.ExitCode = ee.ExitCode()
	}
	if ctx.Err() != nil {
		ce.TimedOut = true
		ce.Err = ctx.Err()
	}
	return out, ce
}

// StderrLimit is how much of a command's stderr executors keep.
const StderrLimit = 64 << 10

// LimitedBuffer keeps the first Max bytes of a stream: stderr is for
// diagnosis, and a runaway command must not fill memory. Executors share it.
type LimitedBuffer struct {
	Buf *bytes.Buffer
	Max int
}

func (l *LimitedBuffer) Write(p []byte) (int, error) {
	if room := l.Max - l.Buf.Len(); room > 0 {
		if len(p) > room {
			l.Buf.Write(p[:room])
		} else {
			l.Buf.Write(p)
		}
	}
	return len(p), nil
}
