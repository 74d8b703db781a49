package remotefs

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// shareCapacity is one share's figures in bytes.
type shareCapacity struct {
	share       string
	total, free int64
	// provisioned is the apparent size of the volume files (base files and
	// overlays), as Cinder's `du --apparent-size`: the virtual size of raw
	// volumes, the allocated size of qcow2 ones.
	provisioned int64
	volumes     int
}

// reserved is the part of the share kept free (reserved_percentage).
func (d *Driver) reserved(c shareCapacity) int64 {
	return c.total * int64(d.cfg.ReservedPercentage) / 100
}

// fits reports whether a new volume of size bytes may go on the share:
// there is free space beyond the reserve, and the share stays within its
// over-subscription ratio (volumes are thin: sparse raw or qcow2).
func (d *Driver) fits(c shareCapacity, size int64) bool {
	usable := c.total - d.reserved(c)
	if c.free-d.reserved(c) <= 0 {
		return false
	}
	return float64(c.provisioned+size) <= float64(usable)*d.cfg.MaxOverSubscriptionRatio
}

// capacity reads df and the volume files of one share.
func (d *Driver) capacity(ctx context.Context, share string) (shareCapacity, error) {
	dir, err := d.dir(ctx, share)
	if err != nil {
		return shareCapacity{}, err
	}
	out, err := d.cmd(ctx, "df "+dir, "df", "-B1", "--output=size,avail", dir)
	if err != nil {
		return shareCapacity{}, err
	}
	c := shareCapacity{share: share}
	if c.total, c.free, err = parseDF(string(out.Stdout)); err != nil {
		return shareCapacity{}, drivers.Wrap(drivers.KindBackend, "df "+dir, err)
	}
	// Only our own names: a share may hold other files (or Cinder's).
	// -ignore_readdir_race: another volume's file deleted between find's
	// readdir and its stat is not an error. Without it find exits 1 ("No
	// such file or directory") and a create placed concurrently with a
	// delete failed with backend_error (found by TestRebalance under load).
	out, err = d.cmd(ctx, "find "+dir, "find", dir, "-ignore_readdir_race", "-maxdepth", "1", "-type", "f",
		"-regextype", "posix-extended", "-regex", `.*/volume-[0-9a-f-]{36}(\.[0-9a-f-]{36})?`, "-printf", "%s %f\n")
	if err != nil {
		return shareCapacity{}, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out.Stdout)), "\n") {
		size, name, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil {
			return shareCapacity{}, drivers.Errorf(drivers.KindBackend, "find "+dir, "bad size in %q", line)
		}
		c.provisioned += n
		if !strings.Contains(name, ".") {
			c.volumes++
		}
	}
	return c, nil
}

// chooseShare picks the share with the most free space among those the
// volume fits on (Cinder's _find_share).
func (d *Driver) chooseShare(ctx context.Context, size int64) (string, error) {
	var best *shareCapacity
	var seen []string
	for _, s := range d.cfg.Shares {
		c, err := d.capacity(ctx, s)
		if err != nil {
			return "", err
		}
		seen = append(seen, fmt.Sprintf("%s: %d of %d bytes free, %d provisioned", s, c.free, c.total, c.provisioned))
		if d.fits(c, size) && (best == nil || c.free > best.free) {
			best = &c
		}
	}
	if best == nil {
		return "", drivers.Errorf(drivers.KindNoCapacity, "choose share", "no share fits %d bytes (reserved %d%%, over-subscription %v): %s",
			size, d.cfg.ReservedPercentage, d.cfg.MaxOverSubscriptionRatio, strings.Join(seen, "; "))
	}
	return best.share, nil
}

// GetVolumeStats sums the shares' capacity.
func (d *Driver) GetVolumeStats(ctx context.Context) (drivers.Stats, error) {
	var total, free, provisioned int64
	var count int
	for _, s := range d.cfg.Shares {
		c, err := d.capacity(ctx, s)
		if err != nil {
			return drivers.Stats{}, err
		}
		total += c.total
		free += c.free
		provisioned += c.provisioned
		count += c.volumes
	}
	gb := func(b int64) float64 { return float64(b) / float64(drivers.GiB) }
	return drivers.Stats{
		TotalCapacityGB:          gb(total),
		FreeCapacityGB:           gb(free),
		ProvisionedCapacityGB:    gb(provisioned),
		ReservedPercentage:       d.cfg.ReservedPercentage,
		ThinProvisioningSupport:  true,
		ThickProvisioningSupport: false,
		MaxOverSubscriptionRatio: d.cfg.MaxOverSubscriptionRatio,
		TotalVolumes:             count,
		LocationInfo:             d.cfg.Driver + ":" + strings.Join(d.cfg.Shares, ","),
		Extra:                    map[string]any{"volume_format": d.cfg.Format, "shares": len(d.cfg.Shares)},
	}, nil
}

// parseDF reads `df -B1 --output=size,avail` (a header line, then numbers).
func parseDF(s string) (total, free int64, err error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) < 2 {
		return 0, 0, fmt.Errorf("unexpected df output %q", s)
	}
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("unexpected df output %q", s)
	}
	if total, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return 0, 0, err
	}
	free, err = strconv.ParseInt(f[1], 10, 64)
	return total, free, err
}
