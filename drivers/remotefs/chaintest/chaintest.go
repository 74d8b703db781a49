// Package chaintest is the snapshot-chain scenario that every backend on the
// remote-filesystem base runs against real qemu-img on its real share: a
// volume, three snapshots with data written between them, the middle, the
// oldest and the newest snapshot deleted (Cinder's three cases), a volume
// from a snapshot, a clone, an extend under snapshots, and a read/write
// round trip. Each step runs twice, the second time as a redelivery, and
// the .info file, `qemu-img info --backing-chain` and the data are checked
// after each.
package chaintest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// IDs used by the scenario.
const (
	Vol    = "0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10"
	Snap1  = "11111111-1111-4111-8111-111111111111"
	Snap2  = "22222222-2222-4222-8222-222222222222"
	Snap3  = "33333333-3333-4333-8333-333333333333"
	FromS3 = "44444444-4444-4444-8444-444444444444"
	Clone  = "55555555-5555-4555-8555-555555555555"
	// RoundTripVol is RoundTrip's volume.
	RoundTripVol = "66666666-6666-4666-8666-666666666666"
)

const mib = 1 << 20

// pattern is the byte that stage k writes.
func pattern(k int) byte { return byte(0x11 * (k + 1)) }

// Stage k writes pattern(k) over the first 64 KiB and at (k+1) MiB. After
// stage k, a volume reads pattern(k) at 0, pattern(m) at (m+1) MiB for m<=k
// and zeros at the later offsets.
func writeStage(t testing.TB, path string, k int) {
	t.Helper()
	p := pattern(k)
	QemuIO(t, path, "", fmt.Sprintf("write -P 0x%02x 0 64k", p), fmt.Sprintf("write -P 0x%02x %d 64k", p, (k+1)*mib))
}

// expectStage checks that the image at path reads as after stage k.
func expectStage(t testing.TB, path, format string, k int) {
	t.Helper()
	cmds := []string{fmt.Sprintf("read -P 0x%02x 0 64k", pattern(k))}
	for m := 0; m < 4; m++ {
		want := byte(0)
		if m <= k {
			want = pattern(m)
		}
		cmds = append(cmds, fmt.Sprintf("read -P 0x%02x %d 64k", want, (m+1)*mib))
	}
	QemuIO(t, path, format, cmds...)
}

// QemuIO runs qemu-io commands on an image (read-only when format is set),
// failing the test on any error or pattern mismatch.
func QemuIO(t testing.TB, path, format string, cmds ...string) {
	t.Helper()
	args := []string{}
	if format != "" {
		args = append(args, "-r", "-f", format)
	}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, path)
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("failed")) {
		t.Fatalf("qemu-io %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Chain returns the file names of the backing chain of path, top first.
func Chain(t testing.TB, path string) (names []string, formats []string, sizes []int64) {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", "--backing-chain", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var imgs []struct {
		Filename    string `json:"filename"`
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &imgs); err != nil {
		t.Fatal(err)
	}
	for _, im := range imgs {
		names = append(names, filepath.Base(im.Filename))
		formats = append(formats, im.Format)
		sizes = append(sizes, im.VirtualSize)
	}
	return names, formats, sizes
}

// Scenario runs the chain scenario on d, whose volumes land in dir (the
// share's directory) with format (raw or qcow2); share is the expected
// ProviderLocation.
func Scenario(t *testing.T, d drivers.Driver, dir, share, format string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	base := "volume-" + Vol
	f := func(suffix string) string { return base + suffix }
	p := func(name string) string { return filepath.Join(dir, name) }
	vol := drivers.Volume{ID: Vol, SizeGB: 1, ProviderLocation: share}
	snap := func(id string) drivers.Snapshot {
		return drivers.Snapshot{ID: id, VolumeID: Vol, VolumeSizeGB: 1, ProviderLocation: share}
	}
	twice := func(step string, fn func() error) {
		t.Helper()
		for i := 1; i <= 2; i++ {
			if err := fn(); err != nil {
				t.Fatalf("%s (run %d): %v", step, i, err)
			}
		}
	}
	expectInfo := func(want map[string]string) {
		t.Helper()
		b, err := os.ReadFile(p(f(".info")))
		if want == nil {
			if !os.IsNotExist(err) {
				t.Fatalf(".info: want none, got %q (%v)", b, err)
			}
			return
		}
		var got map[string]string
		if err != nil || json.Unmarshal(b, &got) != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf(".info: want %v, got %q (%v)", want, b, err)
		}
	}
	expectChain := func(want ...string) {
		t.Helper()
		names, formats, _ := Chain(t, p(want[0]))
		if !reflect.DeepEqual(names, want) {
			t.Fatalf("backing chain: want %v, got %v", want, names)
		}
		for i, fm := range formats {
			if i < len(formats)-1 && fm != "qcow2" || i == len(formats)-1 && fm != format {
				t.Fatalf("backing chain %v has formats %v", names, formats)
			}
		}
	}
	expectGone := func(names ...string) {
		t.Helper()
		for _, n := range names {
			if _, err := os.Stat(p(n)); !os.IsNotExist(err) {
				t.Fatalf("%s: want gone, got %v", n, err)
			}
		}
	}

	// A volume, data, then three snapshots with data written between them.
	twice("create volume", func() error {
		mu, err := d.CreateVolume(ctx, vol)
		if err == nil && mu.ProviderLocation != share {
			err = fmt.Errorf("provider_location %q, want %q", mu.ProviderLocation, share)
		}
		return err
	})
	expectInfo(nil)
	expectChain(base)
	writeStage(t, p(base), 0)
	for k, id := range []string{Snap1, Snap2, Snap3} {
		twice("create snapshot "+id, func() error {
			mu, err := d.CreateSnapshot(ctx, snap(id))
			if err == nil && mu.ProviderLocation != share {
				err = fmt.Errorf("provider_location %q, want %q", mu.ProviderLocation, share)
			}
			return err
		})
		writeStage(t, p(f("."+id)), k+1)
	}
	expectInfo(map[string]string{"active": f("." + Snap3), Snap1: f("." + Snap1), Snap2: f("." + Snap2), Snap3: f("." + Snap3)})
	expectChain(f("."+Snap3), f("."+Snap2), f("."+Snap1), base)
	expectStage(t, p(f("."+Snap3)), "qcow2", 3)
	expectStage(t, p(f("."+Snap2)), "qcow2", 2) // Snap3's image
	expectStage(t, p(f("."+Snap1)), "qcow2", 1) // Snap2's image
	expectStage(t, p(base), format, 0)          // Snap1's image

	if err := d.DeleteVolume(ctx, vol); !drivers.IsKind(err, drivers.KindBusy) {
		t.Fatalf("delete of a volume with snapshots: want volume_busy, got %v", err)
	}

	// A volume from the newest snapshot, larger than the source.
	from := drivers.Volume{ID: FromS3, SizeGB: 2}
	twice("create volume from snapshot", func() error {
		mu, err := d.CreateVolumeFromSnapshot(ctx, from, snap(Snap3))
		if err == nil && mu.ProviderLocation != share {
			err = fmt.Errorf("provider_location %q, want %q", mu.ProviderLocation, share)
		}
		return err
	})
	if names, formats, sizes := Chain(t, p("volume-"+FromS3)); len(names) != 1 || formats[0] != format || sizes[0] != 2*drivers.GiB {
		t.Fatalf("volume from snapshot: %v %v %v", names, formats, sizes)
	}
	expectStage(t, p("volume-"+FromS3), format, 2)
	if _, err := d.CreateVolumeFromSnapshot(ctx, drivers.Volume{ID: FromS3, SizeGB: 3}, snap(Snap3)); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("create from snapshot again with another size: want conflict, got %v", err)
	}

	// Delete the middle snapshot: Snap2's overlay is committed into
	// Snap1's, and Snap3's overlay is rebased onto it.
	twice("delete middle snapshot", func() error { return d.DeleteSnapshot(ctx, snap(Snap2)) })
	expectInfo(map[string]string{"active": f("." + Snap3), Snap1: f("." + Snap1), Snap3: f("." + Snap3)})
	expectChain(f("."+Snap3), f("."+Snap1), base)
	expectGone(f("." + Snap2))
	expectStage(t, p(f("."+Snap3)), "qcow2", 3)
	expectStage(t, p(f("."+Snap1)), "qcow2", 2) // Snap3's image now
	expectStage(t, p(base), format, 0)          // Snap1's image

	// Extend under snapshots: the active overlay grows; its data beyond the
	// old end must survive the commits below.
	twice("extend", func() error { return d.ExtendVolume(ctx, vol, 2) })
	if _, _, sizes := Chain(t, p(f("."+Snap3))); sizes[0] != 2*drivers.GiB || sizes[1] != drivers.GiB {
		t.Fatalf("after extend: sizes %v", sizes)
	}
	QemuIO(t, p(f("."+Snap3)), "", fmt.Sprintf("write -P 0x99 %d 64k", drivers.GiB+mib))
	if err := d.ExtendVolume(ctx, vol, 1); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("shrink: want conflict, got %v", err)
	}

	// Delete the oldest snapshot: Snap1's overlay goes into the base file.
	twice("delete oldest snapshot", func() error { return d.DeleteSnapshot(ctx, snap(Snap1)) })
	expectInfo(map[string]string{"active": f("." + Snap3), Snap3: f("." + Snap3)})
	expectChain(f("."+Snap3), base)
	expectGone(f("." + Snap1))
	expectStage(t, p(f("."+Snap3)), "qcow2", 3)
	expectStage(t, p(base), format, 2) // Snap3's image

	// Delete the newest snapshot: the active overlay goes into the base,
	// which is active again, grown to the extended size.
	twice("delete newest snapshot", func() error { return d.DeleteSnapshot(ctx, snap(Snap3)) })
	expectInfo(map[string]string{"active": base})
	expectChain(base)
	expectGone(f("." + Snap3))
	expectStage(t, p(base), format, 3)
	QemuIO(t, p(base), format, fmt.Sprintf("read -P 0x99 %d 64k", drivers.GiB+mib))
	if _, _, sizes := Chain(t, p(base)); sizes[0] != 2*drivers.GiB {
		t.Fatalf("base after the last delete: size %d, want 2 GiB", sizes[0])
	}

	// A clone of the volume's current content.
	twice("clone", func() error {
		_, err := d.CreateClonedVolume(ctx, drivers.Volume{ID: Clone, SizeGB: 2}, drivers.Volume{ID: Vol, SizeGB: 2, ProviderLocation: share})
		return err
	})
	expectStage(t, p("volume-"+Clone), format, 3)

	// Read and write under a snapshot: the bytes land in the overlay, the
	// snapshot's image keeps its zeros.
	rt := drivers.Volume{ID: RoundTripVol, SizeGB: 1}
	twice("create volume for the round trip", func() error { _, err := d.CreateVolume(ctx, rt); return err })
	rtSnap := drivers.Snapshot{ID: Snap1, VolumeID: RoundTripVol}
	twice("snapshot before round trip", func() error { _, err := d.CreateSnapshot(ctx, rtSnap); return err })
	RoundTrip(t, d, rt)
	QemuIO(t, p("volume-"+RoundTripVol), format, "read -P 0 0 3M", fmt.Sprintf("read -P 0 %d 3M", drivers.GiB-3*mib))
	twice("delete snapshot after round trip", func() error { return d.DeleteSnapshot(ctx, rtSnap) })

	for _, id := range []string{Vol, FromS3, Clone, RoundTripVol} {
		twice("delete volume "+id, func() error { return d.DeleteVolume(ctx, drivers.Volume{ID: id, ProviderLocation: share}) })
	}
	left, _ := filepath.Glob(p("volume-*"))
	if len(left) != 0 {
		t.Fatalf("files left after deleting every volume: %v", left)
	}
	for _, s := range []string{Snap1, Snap2, Snap3} { // snapshots of a deleted volume
		if err := d.DeleteSnapshot(ctx, snap(s)); err != nil {
			t.Fatalf("delete snapshot of a deleted volume: %v", err)
		}
	}
}

// RoundTrip writes generated bytes into vol through WriteVolume and checks
// that ReadVolume returns them byte for byte; then a shorter input, whose
// tail must read back as zeros, and a longer one, which must be refused.
// The bytes are generated and compared as they stream: volumes are GiBs.
func RoundTrip(t *testing.T, d drivers.Driver, vol drivers.Volume) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	size := int64(vol.SizeGB) * drivers.GiB
	check := func(step string, want io.Reader) {
		t.Helper()
		cw := &compareWriter{want: want}
		if err := d.ReadVolume(ctx, vol, cw); err != nil {
			t.Fatalf("%s: read: %v", step, err)
		}
		if cw.err != nil {
			t.Fatalf("%s: %v", step, cw.err)
		}
		if rest, _ := io.Copy(io.Discard, want); rest != 0 || cw.n != size {
			t.Fatalf("%s: read %d bytes, want %d", step, cw.n, size)
		}
	}
	if err := d.WriteVolume(ctx, vol, content(size, 1)); err != nil {
		t.Fatalf("write: %v", err)
	}
	check("after a full write", content(size, 1))

	short := size/2 + 3*mib
	if err := d.WriteVolume(ctx, vol, io.LimitReader(content(size, 2), short)); err != nil {
		t.Fatalf("short write: %v", err)
	}
	check("after a short write", io.MultiReader(io.LimitReader(content(size, 2), short), zeros(size-short)))

	if err := d.WriteVolume(ctx, vol, io.MultiReader(content(size, 3), bytes.NewReader([]byte{1}))); !drivers.IsKind(err, drivers.KindInvalid) {
		t.Fatalf("write of more than the volume: want invalid, got %v", err)
	}
}

// content is size bytes: random data (from seed) in the first, middle and
// last 3 MiB, zeros elsewhere, so that both the data and the sparse paths
// are exercised.
func content(size int64, seed uint64) io.Reader {
	rng := mrand.New(mrand.NewPCG(seed, seed))
	block := func() io.Reader {
		b := make([]byte, 3*mib)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return bytes.NewReader(b)
	}
	mid := size/2 - 3*mib
	return io.MultiReader(block(), zeros(mid-3*mib), block(), zeros(size-mid-6*mib), block())
}

func zeros(n int64) io.Reader { return io.LimitReader(zeroReader{}, n) }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// compareWriter checks what it is written against want.
type compareWriter struct {
	want io.Reader
	n    int64
	buf  []byte
	err  error
}

func (c *compareWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return len(p), nil
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	w := c.buf[:len(p)]
	if _, err := io.ReadFull(c.want, w); err != nil {
		c.err = fmt.Errorf("more than the %d bytes expected", c.n)
		return len(p), nil
	}
	if !bytes.Equal(p, w) {
		for i := range p {
			if p[i] != w[i] {
				c.err = fmt.Errorf("byte %d is 0x%02x, want 0x%02x", c.n+int64(i), p[i], w[i])
				break
			}
		}
	}
	c.n += int64(len(p))
	return len(p), nil
}
