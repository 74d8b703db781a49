package remotefs

import (
	"context"
	"encoding/json"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// image is what `qemu-img info --output=json -f <format>` says of one file.
type image struct {
	Filename      string `json:"filename"`
	Format        string `json:"format"`
	VirtualSize   int64  `json:"virtual-size"`
	BackingFile   string `json:"backing-filename"`
	BackingFormat string `json:"backing-filename-format"`
	// FormatSpecific carries qcow2's external data file, which qemu opens
	// with the image (not a backing file: BDRV_O_NO_BACKING does not stop it).
	FormatSpecific struct {
		Data struct {
			DataFile *string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

// file is the image's name in its share directory.
func (i image) file() string { return path.Base(i.Filename) }

// chain is an active image followed by its backing files, down to the base
// volume-<id>. Every name and format in it has been checked by readChain.
type chain []image

func (c chain) active() image { return c[0] }
func (c chain) base() image   { return c[len(c)-1] }

// index returns the position of file in the chain, or -1.
func (c chain) index(file string) int {
	for i, im := range c {
		if im.file() == file {
			return i
		}
	}
	return -1
}

// overlayRE matches the files a volume's chain may hold: the base and
// overlays named by snapshot id (lowercase UUID, as drivers.CheckID).
var overlayRE = regexp.MustCompile(`^volume-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$`)

// ownFile reports whether file is volume v's base or one of its overlays.
// Such a name has no '/' and no ':', so qemu can read it neither as another
// directory nor as a protocol (http:, nbd:, json:).
func (v volume) ownFile(file string) bool {
	m := overlayRE.FindStringSubmatch(file)
	return m != nil && m[1] == v.id
}

// format is the format file has by construction, never by probing: the base
// was made in the backend's volume_format (CreateVolume and the copies
// write d.cfg.Format), and every overlay is a qcow2 that CreateSnapshot
// made. A backend's volume_format therefore must not change while it holds
// volumes: a raw base opened as qcow2 fails, a qcow2 base opened as raw
// reads as its container's bytes.
func (d *Driver) format(v volume, file string) string {
	if file == v.name {
		return d.cfg.Format
	}
	return "qcow2"
}

// readChain reads the backing chain of file in v's directory, one file at a
// time. ok is false when file does not exist.
//
// A guest can write any bytes into a raw volume, a qcow2 header naming
// http://169.254.169.254/… or /etc/shadow as backing file included, and
// `qemu-img info --backing-chain` (or any qemu-img run without -f) would
// probe that header and open what it names. So no file is ever probed:
// each is opened with the format it has by construction (d.format), by
// `qemu-img info -f`, which does not open backing files, under CPU and
// memory limits (drivers.QemuImgInfo). Its backing file is followed only
// when it is one of the volume's own files, named relative (as we create
// them), recorded with a backing format equal to the one that file has by
// construction; a qcow2 with an external data file is refused. Only then
// may convert, commit, rebase or resize open the chain: they open backing
// files by the names and formats checked here. An overlay without a
// backing format (which would make those commands probe) is refused, not
// repaired: Ember always writes one (-F), so a missing one is tampering.
func (d *Driver) readChain(ctx context.Context, v volume, file string) (c chain, ok bool, err error) {
	bad := func(format string, args ...any) error {
		return drivers.Errorf(drivers.KindBackend, "check backing chain of "+v.path(file), format, args...)
	}
	if !v.ownFile(file) {
		return nil, false, bad("%s is not a file of %s", file, v.name)
	}
	seen := map[string]bool{}
	for name := file; ; {
		seen[name] = true
		im, found, err := d.info(ctx, v, name)
		if err != nil {
			return nil, false, err
		}
		if !found {
			if name == file {
				return nil, false, nil
			}
			return nil, false, bad("backing file %s of %s does not exist", name, c[len(c)-1].file())
		}
		c = append(c, im)
		if im.FormatSpecific.Data.DataFile != nil {
			return nil, false, bad("%s has an external data file", name)
		}
		if im.BackingFile == "" {
			if name != v.name {
				return nil, false, bad("chain ends at %s, not at the volume's base %s", name, v.name)
			}
			return c, true, nil
		}
		// The names qemu reports are not echoed: a guest chose them.
		next := im.BackingFile
		switch {
		case name == v.name:
			return nil, false, bad("the base %s (%s) names a backing file", name, im.Format)
		case !v.ownFile(next):
			return nil, false, bad("%s names a backing file that is not one of the volume's files", name)
		case seen[next]:
			return nil, false, bad("%s names a backing file already in the chain", name)
		case im.BackingFormat == "":
			return nil, false, bad("%s names its backing file %s without a format", name, next)
		case im.BackingFormat != d.format(v, next):
			return nil, false, bad("%s names its backing file %s with another format than %s", name, next, d.format(v, next))
		}
		name = next
	}
}

// info runs qemu-img info on one file of v, opened as the format it has by
// construction. found is false when the file does not exist.
func (d *Driver) info(ctx context.Context, v volume, file string) (im image, found bool, err error) {
	p, format := v.path(file), d.format(v, file)
	out, err := d.run(ctx, drivers.Command{Args: drivers.QemuImgInfo(format, p)})
	if err != nil {
		if ce, isCE := drivers.AsCommandError(err); isCE && strings.Contains(ce.Stderr, "Could not open '"+p+"': No such file or directory") {
			return image{}, false, nil
		}
		return image{}, false, classify("qemu-img info "+p, err)
	}
	if err := json.Unmarshal(out.Stdout, &im); err != nil {
		return image{}, false, drivers.Wrap(drivers.KindBackend, "qemu-img info "+p, err)
	}
	if im.Format != format {
		return image{}, false, drivers.Errorf(drivers.KindBackend, "qemu-img info "+p, "opened as %s, reported as another format", format)
	}
	// What we asked for, not what qemu echoes back.
	im.Filename, im.Format = p, format
	return im, true, nil
}

// mustReadChain is readChain for a file that must exist.
func (d *Driver) mustReadChain(ctx context.Context, op string, v volume, file string) (chain, error) {
	c, ok, err := d.readChain(ctx, v, file)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, drivers.Errorf(drivers.KindNotFound, op+" "+v.name, "image %s does not exist", v.path(file))
	}
	return c, nil
}

// createImage runs qemu-img create for a new base image of size bytes.
func (d *Driver) createImage(ctx context.Context, p, format string, size int64) error {
	_, err := d.cmd(ctx, "create "+p, "qemu-img", "create", "-f", format, p, strconv.FormatInt(size, 10))
	return err
}

// createOverlay makes a qcow2 image at p backed by the file backing (a name
// relative to p's directory, so the chain survives a different mount point,
// as Cinder's does) of format backingFmt. Its size is the backing file's.
func (d *Driver) createOverlay(ctx context.Context, p, backing, backingFmt string) error {
	_, err := d.cmd(ctx, "create overlay "+p, "qemu-img", "create", "-f", "qcow2", "-F", backingFmt, "-b", backing, p)
	return err
}

// commit writes the overlay p into its backing file. -d leaves p as it is
// (we delete it ourselves): plain commit empties p afterwards, which aborts
// on the GlusterFS FUSE mount ("First cluster in emptied image is in use").
// A commit grows a backing file smaller than the overlay.
func (d *Driver) commit(ctx context.Context, p string) error {
	_, err := d.cmd(ctx, "commit "+p, "qemu-img", "commit", "-f", "qcow2", "-d", p)
	return err
}

// rebase points the overlay p at backing without copying data (-u): the
// caller has made backing's content equal to that of p's old backing file.
func (d *Driver) rebase(ctx context.Context, p, backing, backingFmt string) error {
	_, err := d.cmd(ctx, "rebase "+p, "qemu-img", "rebase", "-u", "-f", "qcow2", "-F", backingFmt, "-b", backing, p)
	return err
}

// convert copies the image src (with its backing chain) into a new
// standalone image dst of format outFmt.
func (d *Driver) convert(ctx context.Context, src, srcFmt, dst, outFmt string) error {
	_, err := d.cmd(ctx, "convert "+src+" to "+dst, "qemu-img", "convert", "-f", srcFmt, "-O", outFmt, src, dst)
	return err
}

// copyImage is convert for a copy that is the operation itself (a clone, a
// volume from a snapshot): with -p, qemu-img prints how far it is, and each
// update goes to the request's reporter (drivers.ReportProgress). The
// convert before a ReadVolume stays quiet: the bytes that follow it are
// counted as they stream.
func (d *Driver) copyImage(ctx context.Context, src, srcFmt, dst, outFmt string) error {
	_, err := d.run(ctx, drivers.Command{Args: []string{"qemu-img", "convert", "-p", "-f", srcFmt, "-O", outFmt, src, dst},
		Stdout: &convertProgress{ctx: ctx}})
	return classify("copy "+src+" to "+dst, err)
}

// maxProgressLine bounds what convertProgress keeps of one line; an update
// is about 20 bytes.
const maxProgressLine = 64

// convertProgress reads the output of qemu-img convert -p, one update
// "    (12.34/100%)" per carriage return, and reports each percent. Other
// lines are ignored: the copy's outcome is qemu-img's exit status, not
// what it printed.
type convertProgress struct {
	ctx  context.Context
	line []byte
}

func (p *convertProgress) Write(b []byte) (int, error) {
	for _, c := range b {
		if c == '\r' || c == '\n' {
			p.report()
			p.line = p.line[:0]
			continue
		}
		if len(p.line) <= maxProgressLine {
			p.line = append(p.line, c)
		}
	}
	return len(b), nil
}

func (p *convertProgress) report() {
	if len(p.line) > maxProgressLine {
		return
	}
	s, ok := strings.CutPrefix(strings.TrimSpace(string(p.line)), "(")
	if !ok {
		return
	}
	if s, ok = strings.CutSuffix(s, "/100%)"); !ok {
		return
	}
	pct, err := strconv.ParseFloat(s, 64)
	if err != nil || !(pct >= 0 && pct <= 100) {
		return
	}
	drivers.ReportProgress(p.ctx, int(pct))
}

func (d *Driver) resize(ctx context.Context, p, format string, size int64) error {
	_, err := d.cmd(ctx, "resize "+p, "qemu-img", "resize", "-f", format, p, strconv.FormatInt(size, 10))
	return err
}

// remove deletes files; those already gone are fine.
func (d *Driver) remove(ctx context.Context, paths ...string) error {
	_, err := d.cmd(ctx, "remove "+strings.Join(paths, " "), append([]string{"rm", "-f", "--"}, paths...)...)
	return err
}

// rename moves src over dst in one step (rename(2) on the same share), so
// that dst is either absent or complete.
func (d *Driver) rename(ctx context.Context, src, dst string) error {
	_, err := d.cmd(ctx, "rename "+src, "mv", "-f", "-T", "--", src, dst)
	return err
}
