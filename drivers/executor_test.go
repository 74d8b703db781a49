package drivers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The local executor is what every local backend runs its commands through:
// these are the promises the delivery protocol relies on (a command never
// outlives its timeout or its lease, failures keep what the command said).

func TestLocalExecutorTimeoutKillsTheCommand(t *testing.T) {
	ex := LocalExecutor{DefaultTimeout: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, err := ex.Run(context.Background(), Command{Args: []string{"sleep", "60"}})
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second): // a bound, not a speed claim
		t.Fatal("sleep 60 outlived a 200ms default timeout by 20s")
	}
	ce, ok := AsCommandError(err)
	if !ok || !ce.TimedOut {
		t.Fatalf("want a timed-out *CommandError, got %v", err)
	}
	if KindOf(err) != KindUnavailable || !KindOf(err).Retryable() {
		t.Fatalf("a timeout must be transient (unavailable), got %s", KindOf(err))
	}
	if !strings.Contains(err.Error(), "sleep 60: timed out") {
		t.Fatalf("error does not say what timed out: %v", err)
	}
}

func TestLocalExecutorCommandTimeoutWinsOverDefault(t *testing.T) {
	ex := LocalExecutor{DefaultTimeout: 100 * time.Millisecond}
	if _, err := ex.Run(context.Background(), Command{Args: []string{"sleep", "0.5"}, Timeout: 30 * time.Second}); err != nil {
		t.Fatalf("a command with its own longer timeout was cut by the default: %v", err)
	}
}

func TestLocalExecutorCancelKillsTheCommand(t *testing.T) {
	// A lost lease cancels the request's context: the command must die with it.
	ctx, cancel := context.WithCancel(context.Background())
	pidFile := filepath.Join(t.TempDir(), "pid")
	done := make(chan error, 1)
	go func() {
		// sh only in the test, to learn the pid; drivers never use a shell.
		_, err := LocalExecutor{}.Run(ctx, Command{Args: []string{"sh", "-c", `echo $$ > "$1"; exec sleep 60`, "sh", pidFile}})
		done <- err
	}()
	var pid string
	for i := 0; i < 200 && pid == ""; i++ {
		b, _ := os.ReadFile(pidFile)
		pid = strings.TrimSpace(string(b))
		time.Sleep(20 * time.Millisecond)
	}
	if pid == "" {
		t.Fatal("command never started")
	}
	cancel()
	select {
	case err := <-done:
		if ce, ok := AsCommandError(err); !ok || !ce.TimedOut {
			t.Fatalf("want a cancelled *CommandError, got %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("cancelled command still running after 20s")
	}
	if _, err := os.Stat("/proc/" + pid); err == nil {
		if b, _ := os.ReadFile("/proc/" + pid + "/stat"); !strings.Contains(string(b), ") Z") {
			t.Fatalf("process %s still alive after cancel", pid)
		}
	}
}

func TestLocalExecutorFailureKeepsExitCodeAndStderr(t *testing.T) {
	_, err := LocalExecutor{}.Run(context.Background(), Command{Args: []string{"ls", "/nonexistent-ember-path"}})
	ce, ok := AsCommandError(err)
	if !ok {
		t.Fatalf("want *CommandError, got %v", err)
	}
	if ce.ExitCode != 2 || !strings.Contains(ce.Stderr, "No such file or directory") || ce.TimedOut {
		t.Fatalf("exit %d, timed out %v, stderr %q", ce.ExitCode, ce.TimedOut, ce.Stderr)
	}
	if KindOf(err) != KindBackend {
		t.Fatalf("an unclassified failure is backend_error, got %s", KindOf(err))
	}
}

func TestLocalExecutorEnvAndArgvPassAsIs(t *testing.T) {
	// Arguments reach the program unchanged: no shell, no globbing, no splitting.
	hostile := `$(touch /tmp/ember-pwned); *; a b`
	out, err := LocalExecutor{}.Run(context.Background(), Command{Args: []string{"printf", "%s|%s", hostile, "x"}, Env: []string{"LC_ALL=C"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out.Stdout); got != hostile+"|x" {
		t.Fatalf("argv changed on the way: %q", got)
	}
	out, err = LocalExecutor{}.Run(context.Background(), Command{Args: []string{"env"}, Env: []string{"LC_ALL=C"}})
	if err != nil || !strings.Contains("\n"+string(out.Stdout), "\nLC_ALL=C\n") {
		t.Fatalf("LC_ALL=C did not reach the command: %v\n%s", err, out.Stdout)
	}
	if _, err := (LocalExecutor{}).Run(context.Background(), Command{}); err == nil {
		t.Fatal("an empty command ran")
	}
}
