package functions

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// storage is what two backends' location_info say about a volume.
type storage struct {
	// same: the volume the source holds is also the destination's, under
	// the same name (one directory, one VG, one pool, one cluster).
	same bool
	// alike: the two entries also make volumes alike (the same
	// location_info and volume format), so that the destination can serve
	// the volume as the source made it.
	alike bool
	why   string // what they share, for an error message
}

// sameStorage compares the backends src and dst through their stats'
// location_info, for volume v (on src): LVM by host and volume group; the
// remote-filesystem family (file, glusterfs, nfs) by whether v's share
// (its provider_location) is one of dst's shares, or any share when v has
// none; others (rbd: cluster and pool, sheepdog: cluster) by equality.
// Transient stats errors are returned; a backend that cannot say is not
// taken for the same storage (the destination listing still guards).
func sameStorage(ctx context.Context, src, dst drivers.Driver, v *Volume) (storage, error) {
	a, err := src.GetVolumeStats(ctx)
	if err != nil && Retryable(err) {
		return storage{}, err
	}
	if err != nil || a.LocationInfo == "" {
		return storage{}, nil
	}
	b, err := dst.GetVolumeStats(ctx)
	if err != nil && Retryable(err) {
		return storage{}, err
	}
	if err != nil || b.LocationInfo == "" {
		return storage{}, nil
	}
	s := storage{same: locationsShare(a.LocationInfo, b.LocationInfo, v.ProviderLocation)}
	if s.same {
		s.why = a.LocationInfo + " and " + b.LocationInfo
		s.alike = a.LocationInfo == b.LocationInfo &&
			fmt.Sprint(a.Extra["volume_format"]) == fmt.Sprint(b.Extra["volume_format"])
	}
	return s, nil
}

// remoteFS are the location_info prefixes of the remote-filesystem family:
// "<driver>:<share>,<share>…".
var remoteFS = []string{"file", "glusterfs", "nfs"}

// locationsShare reports whether location_info a (the source's) and b
// name storage where the volume at provider location loc is one object.
func locationsShare(a, b, loc string) bool {
	if a == b {
		return true
	}
	da, sa, _ := strings.Cut(a, ":")
	db, sb, _ := strings.Cut(b, ":")
	if da != db {
		return false
	}
	switch {
	case da == "LVMVolumeDriver":
		// LVMVolumeDriver:<host>:<vg>:<lvm_type>:<mirrors>
		fa, fb := strings.Split(sa, ":"), strings.Split(sb, ":")
		return len(fa) >= 2 && len(fb) >= 2 && fa[0] == fb[0] && fa[1] == fb[1]
	case slices.Contains(remoteFS, da):
		shares := func(list string) []string {
			var out []string
			for _, s := range strings.Split(list, ",") {
				if da == "file" {
					s = path.Clean(s)
				}
				out = append(out, s)
			}
			return out
		}
		as, bs := shares(sa), shares(sb)
		if loc != "" {
			if da == "file" {
				loc = path.Clean(loc)
			}
			return slices.Contains(bs, loc)
		}
		for _, s := range as {
			if slices.Contains(bs, s) {
				return true
			}
		}
	}
	return false
}

// holds reports whether backend d has an object for volume id, when d can
// list its volumes (drivers.Lister); a driver that cannot is taken not to.
func holds(ctx context.Context, d drivers.Driver, id string) (bool, error) {
	l, ok := d.(drivers.Lister)
	if !ok {
		return false, nil
	}
	ids, err := l.ListVolumes(ctx)
	if err != nil {
		return false, err
	}
	_, found := slices.BinarySearch(ids, id)
	return found, nil
}
