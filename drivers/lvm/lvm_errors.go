package lvm

import (
	"fmt"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// commandFailure presents a failed LVM command as "exit 5: <what LVM said>",
// dropping the WARNING lines LVM prints on every run (activation, zeroing),
// so that an error reads "lvcreate volume-<id> on cinder-volumes: exit 5:
// Volume group "cinder-volumes" has insufficient free space …". The full
// *drivers.CommandError (argv, stderr) stays reachable through Unwrap.
type commandFailure struct{ ce *drivers.CommandError }

func (f commandFailure) Error() string {
	var keep []string
	for _, line := range strings.Split(f.ce.Stderr, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "WARNING:") || strings.HasPrefix(line, "Run `") {
			continue
		}
		keep = append(keep, line)
	}
	msg := drivers.Sanitize(strings.Join(keep, "; ")) // bounded, no URLs: requesters see it
	head := fmt.Sprintf("exit %d", f.ce.ExitCode)
	if f.ce.TimedOut {
		head = "timed out"
	}
	switch {
	case msg != "":
		return head + ": " + msg
	case f.ce.Err != nil:
		return head + ": " + drivers.Sanitize(f.ce.Err.Error())
	}
	return head
}

func (f commandFailure) Unwrap() error { return f.ce }

// LVM's own words for the conditions callers decide on. They are stable
// across lvm2 2.02 and 2.03 and are read with LC_ALL=C.
var (
	noSpaceMessages = []string{
		"insufficient free space",                                // lvcreate/lvextend: Volume group "vg" has insufficient free space (255 extents): 1280 required.
		"Insufficient suitable allocatable extents",              // mirrors without enough PVs
		"Insufficient free space",                                // thin pool metadata, older lvm2
		"not enough free space",                                  // lvextend on some versions
		"Cannot create new thin volume, free space in thin pool", // over-full thin pool
	}
	notFoundMessages = []string{
		"Failed to find logical volume",                     // lvm2 >= 2.02.112
		"One or more specified logical volume(s) not found", // older lvm2
		"not found in volume group",                         // lvrename: Existing logical volume "x" not found in volume group "vg"
	}
	existsMessage = "already exists in volume group" // Logical Volume "x" already exists in volume group "vg"
)

func stderrHas(err error, msgs ...string) bool {
	ce, ok := drivers.AsCommandError(err)
	if !ok {
		return false
	}
	for _, m := range msgs {
		if strings.Contains(ce.Stderr, m) {
			return true
		}
	}
	return false
}

// classify turns a failed command into a classified error under op: no space
// is a capacity error, a missing LV not_found, a name taken a conflict, a
// timeout or cancellation transient, anything else a backend error.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	ce, ok := drivers.AsCommandError(err)
	if !ok {
		return drivers.Wrap(drivers.KindOf(err), op, err)
	}
	kind := drivers.KindOf(err)
	switch {
	case kind == drivers.KindUnavailable:
	case stderrHas(err, noSpaceMessages...):
		kind = drivers.KindNoCapacity
	case stderrHas(err, notFoundMessages...):
		kind = drivers.KindNotFound
	case stderrHas(err, existsMessage):
		kind = drivers.KindConflict
	}
	if _, classified := err.(*drivers.Error); classified {
		return drivers.Wrap(kind, op, err)
	}
	return &drivers.Error{Kind: kind, Op: op, Err: commandFailure{ce}}
}
