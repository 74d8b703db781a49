package rbd

import (
	"context"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// The parts of rbd's JSON reports this driver reads.

// imageInfo is `rbd info --format json <image>`.
type imageInfo struct {
	Name   string      `json:"name"`
	Size   int64       `json:"size"`
	Parent *parentSpec `json:"parent,omitempty"`
}

// parentSpec is the "parent" of a clone in `rbd info` and `rbd ls -l`.
type parentSpec struct {
	Pool     string `json:"pool"`
	Image    string `json:"image"`
	Snapshot string `json:"snapshot"`
}

// snapInfo is one entry of `rbd snap ls --format json <image>`. rbd prints
// "protected" as the string "true" or "false".
type snapInfo struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Protected string `json:"protected"`
}

// listEntry is one entry of `rbd ls -l --format json`: an image, or one of
// its snapshots when Snapshot is set.
type listEntry struct {
	Image    string      `json:"image"`
	Snapshot string      `json:"snapshot,omitempty"`
	Size     int64       `json:"size"`
	Parent   *parentSpec `json:"parent,omitempty"`
}

// childEntry is one entry of `rbd children --format json <image>@<snap>`.
type childEntry struct {
	Pool  string `json:"pool"`
	Image string `json:"image"`
}

// info returns the image, or ok=false when it does not exist.
func (d *Driver) info(ctx context.Context, image string) (imageInfo, bool, error) {
	var ii imageInfo
	err := d.runJSON(ctx, "rbd info "+image, d.rbdCmd("info", "--format", "json", image), &ii)
	if drivers.IsKind(err, drivers.KindNotFound) {
		return imageInfo{}, false, nil
	}
	return ii, err == nil, err
}

// snapshots lists the image's snapshots, or ok=false when the image does not exist.
func (d *Driver) snapshots(ctx context.Context, image string) ([]snapInfo, bool, error) {
	var snaps []snapInfo
	err := d.runJSON(ctx, "rbd snap ls "+image, d.rbdCmd("snap", "ls", "--format", "json", image), &snaps)
	if drivers.IsKind(err, drivers.KindNotFound) {
		return nil, false, nil
	}
	return snaps, err == nil, err
}

func findSnap(snaps []snapInfo, name string) (snapInfo, bool) {
	for _, s := range snaps {
		if s.Name == name {
			return s, true
		}
	}
	return snapInfo{}, false
}

// children lists the clones of image@snap.
func (d *Driver) children(ctx context.Context, image, snap string) ([]childEntry, error) {
	var ch []childEntry
	spec := image + "@" + snap
	err := d.runJSON(ctx, "rbd children "+spec, d.rbdCmd("children", "--format", "json", spec), &ch)
	return ch, err
}

// protect protects image@snap so that it can be cloned. Cinder protects
// lazily, at the first clone: clusters older than mimic refuse to clone an
// unprotected snapshot, and a protected one cannot be removed by accident.
func (d *Driver) protect(ctx context.Context, image string, s snapInfo) error {
	if s.Protected == "true" {
		return nil
	}
	spec := image + "@" + s.Name
	_, err := d.run(ctx, "rbd snap protect "+spec, d.rbdCmd("snap", "protect", spec))
	if errnoIs(err, errEBUSY) { // "snap is already protected": a concurrent clone won
		return nil
	}
	return err
}

// removeSnap unprotects and removes image@snap; a snapshot already gone is
// success. The caller has checked that it has no children.
func (d *Driver) removeSnap(ctx context.Context, image string, s snapInfo) error {
	spec := image + "@" + s.Name
	if s.Protected == "true" {
		_, err := d.run(ctx, "rbd snap unprotect "+spec, d.rbdCmd("snap", "unprotect", spec))
		// EINVAL is "snap is already unprotected", ENOENT a snapshot already
		// gone: both are what a redelivered delete finds.
		if err != nil && !errnoIs(err, errEINVAL) && !errnoIs(err, errENOENT) {
			return err
		}
	}
	_, err := d.run(ctx, "rbd snap rm "+spec, d.rbdCmd("snap", "rm", "--no-progress", spec))
	if drivers.IsKind(err, drivers.KindNotFound) {
		return nil
	}
	return err
}

// list is `rbd ls -l`: every image of the pool and its snapshots.
func (d *Driver) list(ctx context.Context) ([]listEntry, error) {
	var l []listEntry
	err := d.runJSON(ctx, "rbd ls "+d.o.Pool, d.rbdCmd("ls", "-l", "--format", "json"), &l)
	return l, err
}

// isVolumeImage reports whether an image name is one of this driver's live volumes.
func isVolumeImage(name string) bool {
	return strings.HasPrefix(name, "volume-") && !strings.HasSuffix(name, deletedSuffix)
}
