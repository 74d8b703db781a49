package sheepdog

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// parseNodeInfo reads `dog node info -r`, which sheepdog's dog/node.c
// (node_info) prints as one line per node it reached and a total:
//
//	<id> <size> <used> <avail> <use>%
//	Total <size> <used> <avail> <use>% <total virtual image size>
//
// Older collie printed no avail column ("Total 107287605248 3623897354 3%
// 54760833024", Cinder's test_sheepdog.py COLLIE_NODE_INFO); then avail is
// size - used. (Cinder's own regular expression read the percentage as the
// free bytes on that format.) nodes counts the node lines.
func parseNodeInfo(out string) (total, avail int64, nodes int, err error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] != "Total" {
			if _, err := strconv.Atoi(f[0]); err == nil {
				nodes++
			}
			continue
		}
		if len(f) < 5 || f[0] != "Total" {
			continue
		}
		nums := make([]int64, 0, 3)
		for _, s := range f[1:4] {
			if strings.HasSuffix(s, "%") {
				break
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("dog node info Total line %q: %w", line, err)
			}
			nums = append(nums, n)
		}
		switch len(nums) {
		case 3:
			return nums[0], nums[2], nodes, nil
		case 2:
			return nums[0], nums[0] - nums[1], nodes, nil
		}
		return 0, 0, 0, fmt.Errorf("unexpected dog node info Total line %q", line)
	}
	return 0, 0, 0, fmt.Errorf("no Total line in dog node info output %q", out)
}

// GetVolumeStats reports the cluster's capacity from `dog node info -r`
// (Cinder's get_disk_capacity) and counts the volumes from `dog vdi list
// -r`. VDIs are thin: objects are allocated on first write.
//
// The capacity is that of the nodes dog reached. A node that has just died
// is still in the cluster's node list for a moment: dog then prints
// "failed to connect to" it, exits 0 and totals the others. Extra says
// how many nodes answered ("nodes") and how many did not ("unreachable_nodes").
func (d *Driver) GetVolumeStats(ctx context.Context) (drivers.Stats, error) {
	if err := d.checkCluster(ctx); err != nil {
		return drivers.Stats{}, err
	}
	const op = "dog node info"
	out, err := d.run(ctx, op, d.dogCmd("node", "info", "-r"))
	if err != nil {
		return drivers.Stats{}, err
	}
	total, avail, nodes, err := parseNodeInfo(string(out.Stdout))
	if err != nil {
		return drivers.Stats{}, drivers.Wrap(drivers.KindBackend, op, err)
	}
	vdis, err := d.list(ctx, "")
	if err != nil {
		return drivers.Stats{}, err
	}
	var provisioned int64
	var count int
	for _, v := range vdis {
		if v.Type == "s" {
			continue
		}
		provisioned += v.Size
		if strings.HasPrefix(v.Name, "volume-") {
			count++
		}
	}
	return drivers.Stats{
		TotalCapacityGB:          gb(total),
		FreeCapacityGB:           gb(avail),
		ProvisionedCapacityGB:    gb(provisioned),
		ThinProvisioningSupport:  true,
		ThickProvisioningSupport: false,
		// No over-subscription: Sheepdog has no quota or full ratio to stop
		// writes before the disks are full.
		MaxOverSubscriptionRatio: 1,
		TotalVolumes:             count,
		LocationInfo:             "sheepdog:" + d.addr + ":" + d.port,
		Extra:                    map[string]any{"nodes": nodes, "unreachable_nodes": unreachableNodes(string(out.Stderr))},
	}, nil
}

func gb(b int64) float64 { return math.Round(float64(b)/float64(drivers.GiB)*100) / 100 }

// InitializeConnection tells a host how to open the VDI with qemu's
// sheepdog driver, with the keys of Cinder's connection info for
// driver_volume_type "sheepdog". Sheepdog has no authentication to carry.
func (d *Driver) InitializeConnection(ctx context.Context, v drivers.Volume, attachmentID string, c drivers.Connector) (drivers.ConnectionInfo, error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	_, ok, err := d.existingVDI(ctx, name)
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	if !ok {
		return drivers.ConnectionInfo{}, drivers.Errorf(drivers.KindNotFound, "initialize connection "+name, "no such VDI")
	}
	return drivers.ConnectionInfo{DriverVolumeType: "sheepdog", Data: map[string]any{
		"name":  name,
		"hosts": []string{d.addr},
		"ports": []string{d.port},
	}}, nil
}

// TerminateConnection has nothing to undo.
func (d *Driver) TerminateConnection(ctx context.Context, v drivers.Volume, attachmentID string, c drivers.Connector) error {
	_, err := drivers.VolumeName(v.ID)
	return err
}

// streamTimeout bounds a whole-volume copy: the executor's default timeout
// is sized for control commands, so streams allow ten minutes plus one per
// GiB; the caller's context still bounds them.
func streamTimeout(sizeGB int) time.Duration {
	return 10*time.Minute + time.Duration(sizeGB)*time.Minute
}

// ReadVolume streams the VDI's bytes to w with `dog vdi read <name>`, one
// command for the whole volume (Cinder's SheepdogIOWrapper ran one per
// chunk, with offsets).
func (d *Driver) ReadVolume(ctx context.Context, v drivers.Volume, w io.Writer) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	c := d.dogCmd("vdi", "read", name)
	c.Stdout = w
	c.Timeout = streamTimeout(v.SizeGB)
	_, err = d.run(ctx, "dog vdi read "+name, c)
	return err
}

// WriteVolume writes r into the VDI from offset 0 with `dog vdi write
// <name>`, which reads its standard input to the end. dog writes whole
// objects (4 MiB) and pads the last read with zeros (dog/vdi.c vdi_write;
// seen on the real daemon): the rest of the object r ends in is zeroed, or,
// when r ends on an object boundary short of the VDI's end, the whole next
// object. Objects past that keep their content: dog has no discard, and writing zeros would
// allocate every object of a thin VDI. Callers restore whole volumes, as
// ReadVolume produces them. An r longer than the VDI is KindInvalid (dog
// itself would stop reading at the VDI's end and exit 0).
func (d *Driver) WriteVolume(ctx context.Context, v drivers.Volume, r io.Reader) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	op := "dog vdi write " + name
	cur, ok, err := d.existingVDI(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return drivers.Errorf(drivers.KindNotFound, op, "no such VDI")
	}
	in := &boundedReader{r: r, left: cur.Size}
	c := d.dogCmd("vdi", "write", name)
	c.Stdin = in
	c.Timeout = streamTimeout(v.SizeGB)
	_, err = d.run(ctx, op, c)
	if in.tooLong {
		return drivers.Errorf(drivers.KindInvalid, op, "input is longer than the VDI's %d bytes", cur.Size)
	}
	return err
}

// boundedReader passes r through and fails once it has given max bytes
// and r has more.
type boundedReader struct {
	r       io.Reader
	left    int64
	tooLong bool
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(b.r, one[:]); n > 0 {
			b.tooLong = true
			return 0, fmt.Errorf("input is longer than the VDI")
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
