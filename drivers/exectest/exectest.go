// Package exectest is an in-process stand-in for a storage host: an executor
// that answers a recorded transcript of commands and fails the test on any
// command it does not expect, as Cinder's fake_execute did. It is for paths
// no machine here can run (device-mapper, sheepdog); the output in a
// transcript must follow the real tool's documented format.
package exectest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// Step is one expected command and what the host answers.
type Step struct {
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int
}

// Transcript is an Executor that plays Steps in order.
type Transcript struct {
	t     testing.TB
	mu    sync.Mutex
	steps []Step
	next  int
	env   []string // what every command's Env must hold (RequireEnv)
	// Stdin collects what each command was fed, by step index.
	Stdin map[int][]byte
}

// New returns a transcript executor; at the end of the test it fails unless
// every step was run.
func New(t testing.TB, steps ...Step) *Transcript {
	tr := &Transcript{t: t, steps: steps, Stdin: map[int][]byte{}}
	t.Cleanup(func() {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if tr.next < len(tr.steps) {
			t.Errorf("transcript: %d of %d commands never ran; next expected: %s",
				len(tr.steps)-tr.next, len(tr.steps), strings.Join(tr.steps[tr.next].Args, " "))
		}
	})
	return tr
}

// RequireEnv makes the transcript fail the test on any command whose Env
// lacks one of kv (e.g. "LC_ALL=C"): the drivers read the tools' English
// messages, and a command run in the host's locale would be misread. It
// returns tr, to chain after New.
func (tr *Transcript) RequireEnv(kv ...string) *Transcript {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.env = append(tr.env, kv...)
	return tr
}

// Parse reads a transcript written like the shell session it stands for:
//
//	$ lvs --noheadings -o lv_name cinder-volumes
//	  volume-1
//	! stderr line
//	? 5
//
// "$ " starts a command (arguments split on spaces; quote nothing), plain
// lines are stdout, "! " lines stderr, "? N" the exit code (default 0).
// Lines starting with "#" are comments.
func Parse(script string) []Step {
	var steps []Step
	sc := bufio.NewScanner(strings.NewReader(script))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "$ "):
			steps = append(steps, Step{Args: strings.Fields(trimmed[2:])})
		case strings.HasPrefix(trimmed, "#") && len(steps) == 0, trimmed == "" && len(steps) == 0:
		case len(steps) == 0:
			panic("exectest.Parse: output before the first command: " + line)
		case strings.HasPrefix(trimmed, "! "):
			steps[len(steps)-1].Stderr += trimmed[2:] + "\n"
		case strings.HasPrefix(trimmed, "? "):
			code, err := strconv.Atoi(trimmed[2:])
			if err != nil {
				panic("exectest.Parse: bad exit code line: " + line)
			}
			steps[len(steps)-1].ExitCode = code
		default:
			steps[len(steps)-1].Stdout += line + "\n"
		}
	}
	return steps
}

// Run implements drivers.Executor.
func (tr *Transcript) Run(ctx context.Context, c drivers.Command) (drivers.Output, error) {
	tr.t.Helper()
	if err := ctx.Err(); err != nil {
		return drivers.Output{}, &drivers.CommandError{Args: c.Args, ExitCode: -1, TimedOut: true, Err: err}
	}
	tr.mu.Lock()
	idx := tr.next
	if idx >= len(tr.steps) {
		tr.mu.Unlock()
		tr.t.Errorf("transcript: unexpected command after the last step: %s", c)
		return drivers.Output{}, fmt.Errorf("unexpected command: %s", c)
	}
	step := tr.steps[idx]
	for _, kv := range tr.env {
		if !slices.Contains(c.Env, kv) {
			tr.t.Errorf("transcript step %d: %s runs without %s (env %q)", idx+1, c, kv, c.Env)
		}
	}
	if strings.Join(step.Args, "\x00") != strings.Join(c.Args, "\x00") {
		tr.mu.Unlock()
		tr.t.Errorf("transcript step %d:\n  want: %s\n  got:  %s", idx+1, strings.Join(step.Args, " "), c)
		return drivers.Output{}, fmt.Errorf("unexpected command: %s", c)
	}
	tr.next++
	tr.mu.Unlock()
	if c.Stdin != nil {
		b, _ := io.ReadAll(c.Stdin)
		tr.mu.Lock()
		tr.Stdin[idx] = b
		tr.mu.Unlock()
	}
	out := drivers.Output{Stdout: []byte(step.Stdout), Stderr: []byte(step.Stderr)}
	if c.Stdout != nil {
		if _, err := io.WriteString(c.Stdout, step.Stdout); err != nil {
			return drivers.Output{}, err
		}
		out.Stdout = nil
	}
	if step.ExitCode != 0 {
		return out, &drivers.CommandError{Args: c.Args, ExitCode: step.ExitCode, Stderr: step.Stderr}
	}
	return out, nil
}
