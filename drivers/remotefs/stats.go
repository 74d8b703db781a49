package remotefs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

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

// provisionedTTL is how long a share's provisioned bytes, read by one scan
// of its volume files, stand in for a new scan when a create is placed: a
// scan reads every file of the share (5,000 volumes: tens of ms of CPU per
// create). The figure is corrected by what this process placed since and
// rescanned at every stats round (GetVolumeStats) and after the TTL, as the
// scheduler corrects its stats by the volumes placed since the last round.
const provisionedTTL = time.Minute

// provisioned is one share's scanned provisioned bytes and volume count.
type provisioned struct {
	bytes   int64
	volumes int
	at      time.Time
}

// capacity reads df and, when fresh or when the cached scan is older than
// provisionedTTL, the volume files of one share.
func (d *Driver) capacity(ctx context.Context, share string, fresh bool) (shareCapacity, error) {
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
	d.provMu.Lock()
	p, ok := d.prov[share]
	d.provMu.Unlock()
	if fresh || !ok || time.Since(p.at) > provisionedTTL {
		if p, err = d.scan(ctx, dir); err != nil {
			return shareCapacity{}, err
		}
		d.provMu.Lock()
		d.prov[share] = p
		d.provMu.Unlock()
	}
	c.provisioned, c.volumes = p.bytes, p.volumes
	return c, nil
}

// placed adds a volume this process made on share to its cached figures,
// until the next scan counts it.
func (d *Driver) placed(share string, size int64) {
	d.provMu.Lock()
	defer d.provMu.Unlock()
	if p, ok := d.prov[share]; ok {
		p.bytes += size
		p.volumes++
		d.prov[share] = p
	}
}

// scan sums the apparent sizes of the volume files in dir.
func (d *Driver) scan(ctx context.Context, dir string) (provisioned, error) {
	at := time.Now()
	// Only our own names: a share may hold other files (or Cinder's).
	// -ignore_readdir_race: another volume's file deleted between find's
	// readdir and its stat is not an error. Without it find exits 1 ("No
	// such file or directory") and a create placed concurrently with a
	// delete failed with backend_error (found by TestRebalance under load).
	out, err := d.cmd(ctx, "find "+dir, "find", dir, "-ignore_readdir_race", "-maxdepth", "1", "-type", "f",
		"-regextype", "posix-extended", "-regex", `.*/volume-[0-9a-f-]{36}(\.[0-9a-f-]{36})?`, "-printf", "%s %f\n")
	if err != nil {
		return provisioned{}, err
	}
	p := provisioned{at: at}
	for _, line := range strings.Split(strings.TrimSpace(string(out.Stdout)), "\n") {
		size, name, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil {
			return provisioned{}, drivers.Errorf(drivers.KindBackend, "find "+dir, "bad size in %q", line)
		}
		p.bytes += n
		if !strings.Contains(name, ".") {
			p.volumes++
		}
	}
	return p, nil
}

// chooseShare picks the share with the most free space among those the
// volume fits on (Cinder's _find_share).
func (d *Driver) chooseShare(ctx context.Context, size int64) (string, error) {
	var best *shareCapacity
	var seen []string
	for _, s := range d.cfg.Shares {
		c, err := d.capacity(ctx, s, false)
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
		c, err := d.capacity(ctx, s, true)
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
