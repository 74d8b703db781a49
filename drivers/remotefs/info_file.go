package remotefs

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// snapInfo is volume-<id>.info in Cinder's format: "active" names the file
// the volume reads and writes now, every other key is a snapshot id naming
// the overlay that was created when that snapshot was taken. The snapshot's
// point-in-time image is that overlay's backing file.
type snapInfo map[string]string

const activeKey = "active"

// snapshots reports whether any snapshot is recorded.
func (s snapInfo) snapshots() bool {
	for k := range s {
		if k != activeKey {
			return true
		}
	}
	return false
}

// readInfo reads v's .info file; a missing file means no snapshots, and the
// base file is active. Every name in it is checked, so a hand-edited or
// corrupted file cannot point us at a file of another volume.
func (d *Driver) readInfo(ctx context.Context, v volume) (snapInfo, error) {
	p := v.infoPath()
	out, err := d.run(ctx, drivers.Command{Args: []string{"cat", "--", p}})
	if err != nil {
		if ce, ok := drivers.AsCommandError(err); ok && ce.ExitCode == 1 && strings.Contains(ce.Stderr, "No such file or directory") {
			return snapInfo{activeKey: v.name}, nil
		}
		return nil, classify("read "+p, err)
	}
	var info snapInfo
	if err := json.Unmarshal(out.Stdout, &info); err != nil {
		return nil, drivers.Wrap(drivers.KindBackend, "read "+p, err)
	}
	bad := func(format string, args ...any) error {
		return drivers.Errorf(drivers.KindBackend, "read "+p, format, args...)
	}
	if info[activeKey] == "" {
		return nil, bad("no %q entry", activeKey)
	}
	for k, f := range info {
		if k != activeKey {
			if err := drivers.CheckID(k); err != nil {
				return nil, bad("key %q is not a snapshot id", k)
			}
			if f == v.name {
				return nil, bad("snapshot %s names the base file", k)
			}
		}
		if !v.ownFile(f) {
			return nil, bad("%q names %q, not a file of %s", k, f, v.name)
		}
	}
	return info, nil
}

// writeInfo replaces v's .info file in one step: the JSON goes to a
// temporary file (flushed with conv=fsync) that is then renamed over the old
// one, so a crash leaves the old or the new file, never half of one. It runs
// through the executor like everything else, so it works over SSH too.
func (d *Driver) writeInfo(ctx context.Context, v volume, info snapInfo) error {
	// Cinder writes json.dump(indent=1, sort_keys=True); MarshalIndent sorts
	// map keys, so Cinder and Ember read each other's files.
	body, err := json.MarshalIndent(info, "", " ")
	if err != nil {
		return err
	}
	tmp := v.path(v.name + ".info.tmp")
	_, err = d.run(ctx, drivers.Command{
		Args:  []string{"dd", "of=" + tmp, "conv=fsync", "status=none"},
		Stdin: bytes.NewReader(body),
	})
	if err != nil {
		return classify("write "+tmp, err)
	}
	return d.rename(ctx, tmp, v.infoPath())
}
