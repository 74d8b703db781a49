package sheepdog

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// vdi is one line of `dog vdi list -r`, which sheepdog's dog/vdi.c
// (print_vdi_list, raw branch) prints as
//
//	<type> <name> <snapid> <size> <used> <shared> <ctime> <vid hex> <copies> <tag> <block size shift>
//
// type "=" a VDI, "c" a clone, "s" a snapshot; sizes in bytes; the tag
// empty (two spaces) when there is none. Older dog versions end after the
// copies (Cinder's test_sheepdog.py COLLIE_VDI_LIST: "= testvolume 0 0 0 0
// 1467037106 fd32fc 3").
type vdi struct {
	Type string
	Name string
	Size int64
	Tag  string
}

// parseVDIList reads `dog vdi list -r`. Names with spaces or backslashes
// are escaped by dog; this driver's names have neither.
func parseVDIList(out string) ([]vdi, error) {
	var l []vdi
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, " ") // not Fields: an empty tag is a field
		if len(f) < 9 {
			return nil, fmt.Errorf("unexpected dog vdi list line %q", line)
		}
		size, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("dog vdi list line %q: size: %w", line, err)
		}
		v := vdi{Type: f[0], Name: f[1], Size: size}
		if len(f) > 9 {
			v.Tag = f[9]
		}
		l = append(l, v)
	}
	return l, nil
}

// list returns the VDIs and snapshots named name, or all with name "".
// dog prints nothing, and exits 0, when there is none.
func (d *Driver) list(ctx context.Context, name string) ([]vdi, error) {
	op := "dog vdi list " + name
	params := []string{"-r"}
	if name != "" {
		params = append(params, name)
	}
	out, err := d.run(ctx, op, d.dogCmd("vdi", "list", params...))
	if err != nil {
		return nil, err
	}
	l, err := parseVDIList(string(out.Stdout))
	if err != nil {
		return nil, drivers.Wrap(drivers.KindBackend, op, err)
	}
	return l, nil
}

// current returns the working VDI named name (not one of its snapshots).
// Only after checkCluster: see existingVDI.
func (d *Driver) current(ctx context.Context, name string) (vdi, bool, error) {
	l, err := d.list(ctx, name)
	if err != nil {
		return vdi{}, false, err
	}
	for _, v := range l {
		if v.Name == name && v.Type != "s" {
			return v, true, nil
		}
	}
	return vdi{}, false, nil
}

// existingVDI is current for the operations that do not check the cluster
// first. `dog vdi list` exits 0 and lists nothing while the cluster waits
// to be formatted or for its nodes (seen on the real daemon): a VDI that is
// not listed is absent only when the cluster is running, and the cluster's
// state is the error otherwise.
func (d *Driver) existingVDI(ctx context.Context, name string) (vdi, bool, error) {
	v, ok, err := d.current(ctx, name)
	if err != nil || ok {
		return v, ok, err
	}
	if err := d.checkCluster(ctx); err != nil {
		return vdi{}, false, err
	}
	return vdi{}, false, nil
}

// CreateVolume creates the VDI volume-<id> (`dog vdi create <name> <N>G`).
// A VDI of the same size is success (a redelivered create); another size
// is a conflict.
func (d *Driver) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	size, err := drivers.Bytes(v.SizeGB)
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	if err := d.checkCluster(ctx); err != nil {
		return drivers.ModelUpdate{}, err
	}
	if exists, err := d.existing(ctx, name, size); err != nil || exists {
		return d.model(), err
	}
	_, err = d.run(ctx, "dog vdi create "+name, d.dogCmd("vdi", "create", name, strconv.Itoa(v.SizeGB)+"G"))
	if drivers.IsKind(err, drivers.KindConflict) { // "VDI exists already": another delivery won
		if exists, lerr := d.existing(ctx, name, size); lerr != nil || exists {
			return d.model(), lerr
		}
	}
	if err != nil {
		return drivers.ModelUpdate{}, err
	}
	return d.model(), nil
}

// existing reports whether the VDI name exists; one of another size than
// size bytes is a conflict.
func (d *Driver) existing(ctx context.Context, name string, size int64) (bool, error) {
	v, ok, err := d.current(ctx, name)
	if err != nil || !ok {
		return false, err
	}
	if v.Size != size {
		return true, drivers.Errorf(drivers.KindConflict, "dog vdi create "+name, "exists with %d bytes, requested %d", v.Size, size)
	}
	return true, nil
}

func (d *Driver) model() drivers.ModelUpdate {
	return drivers.ModelUpdate{ProviderLocation: "sheepdog:" + d.addr + ":" + d.port}
}

// DeleteVolume deletes the VDI volume-<id>; "No VDI found" is success. As
// in Cinder, the volume's snapshots are not in the way: Sheepdog keeps them
// as VDIs of their own, still deletable and clonable by tag.
func (d *Driver) DeleteVolume(ctx context.Context, v drivers.Volume) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	err = d.runDelete(ctx, "dog vdi delete "+name, d.dogCmd("vdi", "delete", name))
	if drivers.IsKind(err, drivers.KindNotFound) {
		return nil
	}
	return err
}

// runDelete runs a `dog vdi delete`, which exits 0 whatever happens:
// sheepdog's do_vdi_delete (dog/vdi.c) sets its exit code and then returns
// EXIT_SUCCESS. Its stderr is the only report, and it prints nothing there
// when the VDI is deleted, so a "Failed to …" or "failed to …" line is the
// failure it names: "No VDI found", "Failed to find requested tag", but
// also "Waiting for cluster to be formatted", "failed to read inode
// object", or "Failed to delete <name>: <reason>".
func (d *Driver) runDelete(ctx context.Context, op string, c drivers.Command) error {
	out, err := d.run(ctx, op, c)
	if err != nil {
		return err
	}
	stderr := string(out.Stderr)
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "Failed to") || strings.HasPrefix(line, "failed to") {
			return classify(op, &drivers.CommandError{Args: c.Args, ExitCode: 0, Stderr: stderr})
		}
	}
	return nil
}

// ExtendVolume grows volume-<id> with `dog vdi resize <name> <bytes>`. A
// volume already that large is success; a larger one is a conflict (dog
// cannot shrink).
func (d *Driver) ExtendVolume(ctx context.Context, v drivers.Volume, newSizeGB int) error {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return err
	}
	size, err := drivers.Bytes(newSizeGB)
	if err != nil {
		return err
	}
	cur, ok, err := d.existingVDI(ctx, name)
	switch {
	case err != nil:
		return err
	case !ok:
		return drivers.Errorf(drivers.KindNotFound, "dog vdi resize "+name, "no such VDI")
	case cur.Size == size:
		return nil
	case cur.Size > size:
		return drivers.Errorf(drivers.KindConflict, "dog vdi resize "+name, "VDI is %d bytes, larger than %d", cur.Size, size)
	}
	return d.resize(ctx, name, size)
}

func (d *Driver) resize(ctx context.Context, name string, size int64) error {
	_, err := d.run(ctx, "dog vdi resize "+name, d.dogCmd("vdi", "resize", name, strconv.FormatInt(size, 10)))
	return err
}
