// Package file is the embedded default backend: volumes as sparse raw or
// qcow2 files in a directory of the storage host, named volume-<id> as
// Cinder names them. It runs every command through the executor, so the
// directory may be local or on an SSH host.
package file

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

func init() { drivers.Register("file", Open) }

// Options are the file backend's configuration keys.
type Options struct {
	Dir    string `json:"dir"`
	Format string `json:"format"` // raw (default) or qcow2
}

// Driver is the file backend.
type Driver struct {
	drivers.Unsupported
	dir    string
	format string
	ex     drivers.Executor
}

// Open builds a file driver for b.
func Open(b drivers.Backend, ex drivers.Executor) (drivers.Driver, error) {
	var o Options
	if err := drivers.DecodeOptions(b.Options, &o); err != nil {
		return nil, err
	}
	if o.Format == "" {
		o.Format = "raw"
	}
	if o.Format != "raw" && o.Format != "qcow2" {
		return nil, fmt.Errorf("options: format %q: want raw or qcow2", o.Format)
	}
	if !path.IsAbs(o.Dir) {
		return nil, fmt.Errorf("options: dir %q must be an absolute path", o.Dir)
	}
	return &Driver{Unsupported: drivers.Unsupported{Driver: "file"}, dir: path.Clean(o.Dir), format: o.Format, ex: ex}, nil
}

func (d *Driver) volumePath(id string) (string, error) {
	name, err := drivers.VolumeName(id)
	if err != nil {
		return "", err
	}
	return path.Join(d.dir, name), nil
}

// imageInfo is the part of `qemu-img info --output=json` we read.
type imageInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

// info returns the image at p, or ok=false when there is no file there.
func (d *Driver) info(ctx context.Context, p string) (imageInfo, bool, error) {
	out, err := d.ex.Run(ctx, drivers.Command{Args: []string{"qemu-img", "info", "--output=json", p}, Env: []string{"LC_ALL=C"}})
	if err != nil {
		if ce, ok := drivers.AsCommandError(err); ok && strings.Contains(ce.Stderr, "No such file or directory") {
			return imageInfo{}, false, nil
		}
		return imageInfo{}, false, drivers.Wrap(drivers.KindOf(err), "qemu-img info "+p, err)
	}
	var ii imageInfo
	if err := json.Unmarshal(out.Stdout, &ii); err != nil {
		return imageInfo{}, false, drivers.Wrap(drivers.KindBackend, "qemu-img info "+p, err)
	}
	return ii, true, nil
}

// CreateVolume makes volume-<id>. A file of the same size and format is
// success (a redelivered create); any other file there is a conflict.
func (d *Driver) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	p, err := d.volumePath(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	size, err := drivers.Bytes(v.SizeGB)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	ii, exists, err := d.info(ctx, p)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if exists {
		if ii.VirtualSize != size || ii.Format != d.format {
			return drivers.ModelUpdate{}, drivers.Errorf(drivers.KindConflict, "create "+p,
				"exists as %s of %d bytes, requested %s of %d", ii.Format, ii.VirtualSize, d.format, size)
		}
		return drivers.ModelUpdate{ProviderLocation: d.dir}, nil
	}
	// qemu-img writes a sparse raw file or an empty qcow2 image; neither
	// allocates the volume's size up front.
	args := []string{"qemu-img", "create", "-f", d.format, p, strconv.FormatInt(size, 10)}
	if _, err := d.ex.Run(ctx, drivers.Command{Args: args, Env: []string{"LC_ALL=C"}}); err != nil {
		return drivers.ModelUpdate{}, classify("create "+p, err)
	}
	return drivers.ModelUpdate{ProviderLocation: d.dir}, nil
}

// DeleteVolume removes volume-<id>; a file already gone is success.
func (d *Driver) DeleteVolume(ctx context.Context, v drivers.Volume) error {
	p, err := d.volumePath(v.ID)
	if err != nil {
		return err
	}
	// rm -f exits 0 when the file does not exist: deletes are idempotent.
	_, err = d.ex.Run(ctx, drivers.Command{Args: []string{"rm", "-f", "--", p}})
	return classify("delete "+p, err)
}

// ExtendVolume grows volume-<id> to newSizeGB; a volume already that large
// is success, a larger one is a conflict (volumes never shrink).
func (d *Driver) ExtendVolume(ctx context.Context, v drivers.Volume, newSizeGB int) error {
	p, err := d.volumePath(v.ID)
	if err != nil {
		return err
	}
	size, err := drivers.Bytes(newSizeGB)
	if err != nil {
		return err
	}
	ii, exists, err := d.info(ctx, p)
	if err != nil {
		return err
	}
	switch {
	case !exists:
		return drivers.Errorf(drivers.KindNotFound, "extend "+p, "no such volume file")
	case ii.VirtualSize == size:
		return nil
	case ii.VirtualSize > size:
		return drivers.Errorf(drivers.KindConflict, "extend "+p, "volume is %d bytes, larger than %d", ii.VirtualSize, size)
	}
	args := []string{"qemu-img", "resize", "-f", ii.Format, p, strconv.FormatInt(size, 10)}
	_, err = d.ex.Run(ctx, drivers.Command{Args: args, Env: []string{"LC_ALL=C"}})
	return classify("extend "+p, err)
}

// GetVolumeStats reads capacity from df and counts the volume files.
func (d *Driver) GetVolumeStats(ctx context.Context) (drivers.Stats, error) {
	out, err := d.ex.Run(ctx, drivers.Command{Args: []string{"df", "-B1", "--output=size,avail", d.dir}, Env: []string{"LC_ALL=C"}})
	if err != nil {
		return drivers.Stats{}, classify("df "+d.dir, err)
	}
	total, free, err := parseDF(string(out.Stdout))
	if err != nil {
		return drivers.Stats{}, drivers.Wrap(drivers.KindBackend, "df "+d.dir, err)
	}
	out, err = d.ex.Run(ctx, drivers.Command{Args: []string{"find", d.dir, "-maxdepth", "1", "-name", "volume-*", "-printf", "%s\n"}})
	if err != nil {
		return drivers.Stats{}, classify("find "+d.dir, err)
	}
	var count int
	var provisioned int64
	for _, f := range strings.Fields(string(out.Stdout)) {
		n, _ := strconv.ParseInt(f, 10, 64)
		provisioned += n
		count++
	}
	gb := func(b int64) float64 { return float64(b) / float64(drivers.GiB) }
	return drivers.Stats{
		TotalCapacityGB:          gb(total),
		FreeCapacityGB:           gb(free),
		ProvisionedCapacityGB:    gb(provisioned),
		ThinProvisioningSupport:  true,
		ThickProvisioningSupport: false,
		MaxOverSubscriptionRatio: 1,
		TotalVolumes:             count,
		LocationInfo:             "file:" + d.dir,
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

// classify maps a failed command to a kind: no space is a capacity error,
// a timeout is transient, anything else a backend error.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if ce, ok := drivers.AsCommandError(err); ok && strings.Contains(ce.Stderr, "No space left on device") {
		return drivers.Wrap(drivers.KindNoCapacity, op, err)
	}
	return drivers.Wrap(drivers.KindOf(err), op, err)
}
