package remotefs

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// Mount is how a concrete driver mounts its shares: `mount -t FSType
// [-o Options] <share> <mount point>`.
type Mount struct {
	Ex      drivers.Executor
	FSType  string // "glusterfs", "nfs"
	Options string // passed with -o when set
}

// mounted is one line of `findmnt -J`.
type mounted struct {
	Source string `json:"source"`
	FSType string `json:"fstype"`
	Target string `json:"target"`
}

// Share mounts share on dir unless it is mounted there already. Another
// filesystem on dir is an error: we never mount over it. A mount that fails
// because someone else mounted the share meanwhile (another Ember on this
// host) is success.
func (m Mount) Share(ctx context.Context, share, dir string) error {
	if ok, err := m.mountedAt(ctx, share, dir); err != nil || ok {
		return err
	}
	if _, err := m.run(ctx, "mkdir", "-p", "--", dir); err != nil {
		return classify("mkdir "+dir, err)
	}
	args := []string{"mount", "-t", m.FSType}
	if m.Options != "" {
		args = append(args, "-o", m.Options)
	}
	args = append(args, share, dir)
	if _, err := m.run(ctx, args...); err != nil {
		if ok, err2 := m.mountedAt(ctx, share, dir); err2 == nil && ok {
			return nil
		}
		return classify("mount "+share, err)
	}
	return nil
}

// mountedAt asks findmnt what is mounted on dir. findmnt exits 1, silently,
// when nothing is.
func (m Mount) mountedAt(ctx context.Context, share, dir string) (bool, error) {
	out, err := m.run(ctx, "findmnt", "-J", "-o", "SOURCE,FSTYPE,TARGET", "--mountpoint", dir)
	if err != nil {
		if ce, ok := drivers.AsCommandError(err); ok && ce.ExitCode == 1 && len(out.Stdout) == 0 && strings.TrimSpace(ce.Stderr) == "" {
			return false, nil
		}
		return false, classify("findmnt "+dir, err)
	}
	var report struct {
		Filesystems []mounted `json:"filesystems"`
	}
	if err := json.Unmarshal(out.Stdout, &report); err != nil || len(report.Filesystems) == 0 {
		return false, drivers.Errorf(drivers.KindBackend, "findmnt "+dir, "unreadable output %q", out.Stdout)
	}
	// The last entry is the one on top when mounts are stacked.
	top := report.Filesystems[len(report.Filesystems)-1]
	if strings.TrimRight(top.Source, "/") != strings.TrimRight(share, "/") {
		return false, drivers.Errorf(drivers.KindConflict, "mount "+share,
			"%s already has %s (%s) mounted on it", dir, top.Source, top.FSType)
	}
	return true, nil
}

func (m Mount) run(ctx context.Context, args ...string) (drivers.Output, error) {
	return m.Ex.Run(ctx, drivers.Command{Args: args, Env: []string{"LC_ALL=C"}})
}
