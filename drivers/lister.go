package drivers

import (
	"context"
	"sort"
	"strings"
)

// Lister is an optional interface of a Driver: it says which volumes have
// an object on the backend, so that the reconcile sweep (router/reconcile)
// can compare the backend with the registry and find orphans.
type Lister interface {
	// ListVolumes returns, sorted and each once, the ids of the volumes
	// whose object (exactly volume-<id>, a canonical id) exists on the
	// backend. Snapshots, metadata and temporary files, images kept for
	// their clones (rbd's volume-<id>.deleted) and anything not named by
	// this driver are left out.
	ListVolumes(ctx context.Context) ([]string, error)
}

// Purger is an optional interface of a Driver, for the reconcile sweep's
// removals: it deletes a volume together with its snapshots. DeleteVolume
// refuses a volume that has snapshots (as Cinder does), but an orphan's
// snapshots are orphans too, and the record that listed them may be gone
// (a Redis that lost its data). Nothing but `ember reconcile --remove`, on
// a volume whose record is a tombstone or elsewhere, calls it.
type Purger interface {
	PurgeVolume(ctx context.Context, v Volume) error
}

// VolumeID is VolumeName's inverse: the id of an object named exactly
// volume-<canonical id>; ok is false for every other name.
func VolumeID(name string) (id string, ok bool) {
	id, found := strings.CutPrefix(name, "volume-")
	if !found || CheckID(id) != nil {
		return "", false
	}
	return id, true
}

// VolumeIDs keeps the names that are volume objects (VolumeID) and returns
// their ids sorted, each once.
func VolumeIDs(names []string) []string {
	seen := map[string]bool{}
	ids := []string{}
	for _, n := range names {
		if id, ok := VolumeID(n); ok && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}
