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

// image is one entry of `qemu-img info --output=json --backing-chain`.
type image struct {
	Filename      string `json:"filename"`
	Format        string `json:"format"`
	VirtualSize   int64  `json:"virtual-size"`
	BackingFile   string `json:"backing-filename"`
	BackingFormat string `json:"backing-filename-format"`
}

// file is the image's name in its share directory.
func (i image) file() string { return path.Base(i.Filename) }

// chain is an active image followed by its backing files, down to the base
// volume-<id>. Every name in it has been checked by checkChain.
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
func (v volume) ownFile(file string) bool {
	m := overlayRE.FindStringSubmatch(file)
	return m != nil && m[1] == v.id
}

// readChain reads the backing chain of file in v's directory. ok is false
// when the file does not exist.
//
// The chain is checked before anyone uses it (Cinder's
// RemoteFSInvalidBackingFile, stricter): a guest can write a qcow2 header
// into a raw volume, and an image whose backing file names /etc/shadow or
// another tenant's volume must never be converted, committed or read.
func (d *Driver) readChain(ctx context.Context, v volume, file string) (c chain, ok bool, err error) {
	p := v.path(file)
	out, err := d.run(ctx, drivers.Command{Args: []string{"qemu-img", "info", "--output=json", "--backing-chain", p}})
	if err != nil {
		if ce, isCE := drivers.AsCommandError(err); isCE && strings.Contains(ce.Stderr, "Could not open '"+p+"': No such file or directory") {
			return nil, false, nil
		}
		return nil, false, classify("qemu-img info "+p, err)
	}
	if err := json.Unmarshal(out.Stdout, &c); err != nil {
		return nil, false, drivers.Wrap(drivers.KindBackend, "qemu-img info "+p, err)
	}
	if err := checkChain(v, file, c); err != nil {
		return nil, false, err
	}
	return c, true, nil
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

func checkChain(v volume, top string, c chain) error {
	bad := func(format string, args ...any) error {
		return drivers.Errorf(drivers.KindBackend, "check backing chain of "+v.path(top), format, args...)
	}
	if len(c) == 0 {
		return bad("qemu-img reported no image")
	}
	seen := map[string]bool{}
	for i, im := range c {
		name := im.file()
		if i == 0 && name != top {
			return bad("top image is %q", im.Filename)
		}
		if seen[name] {
			return bad("%s appears twice", name)
		}
		seen[name] = true
		if im.Format != "raw" && im.Format != "qcow2" {
			return bad("%s has format %q", name, im.Format)
		}
		last := i == len(c)-1
		switch {
		case last && name != v.name:
			return bad("chain ends at %s, not at the volume's base %s", name, v.name)
		case last && im.BackingFile != "":
			// qemu-img stops at a backing file it cannot open, so a chain
			// whose last entry still names one is broken.
			return bad("%s names a backing file %q that could not be followed", name, im.BackingFile)
		case !last:
			if name == v.name || !v.ownFile(name) || im.Format != "qcow2" {
				return bad("%s (%s) is not a snapshot overlay of this volume", name, im.Format)
			}
			// Relative names only, as we create them: a path is another directory.
			if im.BackingFile != c[i+1].file() || !v.ownFile(im.BackingFile) {
				return bad("%s has backing file %q", name, im.BackingFile)
			}
		}
	}
	return nil
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
