package sheepdog

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
)

// These tests run the driver against real Sheepdog: sheep and dog built
// from the last upstream source by deploy/testenv/sheepdog.sh (once, into
// ~/.cache/ember) and nodes on the `local` cluster driver. TestMain starts
// one formatted one-node cluster for the package; the cluster-state and
// two-node tests start their own. Without the source the package fails and
// says how to get it; only -short skips the real tests (the transcripts in
// sheepdog_test.go run either way).

var real struct {
	once   sync.Once
	prefix string // sheep and dog are in prefix/bin
	port   int    // the package's formatted one-node cluster
	err    error
	dirs   []string
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	for i := len(real.dirs) - 1; i >= 0; i-- { // nodes before the directories holding them
		dir := real.dirs[i]
		if out, err := sheepdogScript("down", dir); err != nil {
			fmt.Fprintf(os.Stderr, "sheepdog.sh down %s: %v\n%s", dir, err, out)
		}
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func sheepdogScript(args ...string) (string, error) {
	p, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "testenv", "sheepdog.sh"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // the first build
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", append([]string{p}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return strings.TrimSpace(stdout.String()), nil
}

// needSheepdog builds Sheepdog once (or finds it built) and starts the
// package's cluster; it puts dog on PATH, where the local executor finds it.
func needSheepdog(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs real Sheepdog nodes")
	}
	real.once.Do(func() {
		out, err := sheepdogScript("build")
		if err != nil {
			real.err = fmt.Errorf("deploy/testenv/sheepdog.sh build: %v\n%s", err, out)
			return
		}
		real.prefix = out
		os.Setenv("PATH", filepath.Join(real.prefix, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
		_, port, err := upNode("", "")
		if err != nil {
			real.err = err
			return
		}
		if out, err := sheepdogScript("format", strconv.Itoa(port), "1"); err != nil {
			real.err = fmt.Errorf("sheepdog.sh format: %v\n%s", err, out)
			return
		}
		real.port = port
	})
	if real.err != nil {
		t.Fatalf("real Sheepdog did not start: %v", real.err)
	}
}

// upNode starts a node on a free port storing in a new directory, on
// shm's cluster ("" for one of its own); TestMain stops it.
func upNode(dir, shm string) (string, int, error) {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "ember-sheep-"); err != nil {
			return "", 0, err
		}
	}
	real.dirs = append(real.dirs, dir)
	port, err := freePort()
	if err != nil {
		return "", 0, err
	}
	args := []string{"up", dir, strconv.Itoa(port)}
	if shm != "" {
		args = append(args, shm)
	}
	if out, err := sheepdogScript(args...); err != nil {
		return "", 0, fmt.Errorf("sheepdog.sh up %s %d: %v\n%s", dir, port, err, out)
	}
	return dir, port, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// realDriver is a driver on the sheep at port, through the local executor
// (or ex).
func realDriver(t *testing.T, port int, ex ...drivers.Executor) *Driver {
	t.Helper()
	var e drivers.Executor = drivers.LocalExecutor{DefaultTimeout: time.Minute}
	if len(ex) > 0 {
		e = ex[0]
	}
	d, err := Open(drivers.Backend{Name: "sheep-real", Driver: "sheepdog", Options: map[string]any{"port": port}}, e)
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Driver)
}

// dogCLI runs dog as an operator would, to look at what the driver did.
func dogCLI(t *testing.T, port int, args ...string) string {
	t.Helper()
	args = append(args, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	out, err := exec.Command("dog", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dog %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// vdis is `dog vdi list -r` as "<type> <name> <size> <tag>" lines.
func vdis(t *testing.T, port int) []string {
	t.Helper()
	l, err := parseVDIList(dogCLI(t, port, "vdi", "list", "-r"))
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, v := range l {
		s = append(s, fmt.Sprintf("%s %s %d %s", v.Type, v.Name, v.Size, v.Tag))
	}
	return s
}

// expectVDIs compares sorted: dog lists in the order of the VDIs' ids.
func expectVDIs(t *testing.T, port int, step string, want ...string) {
	t.Helper()
	got := vdis(t, port)
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("%s: dog vdi list shows\n  %q\nwant\n  %q", step, got, want)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// readBack reads a volume through the driver and checks it is want followed
// by zeros, size bytes in all, without holding the volume in memory.
func readBack(t *testing.T, d *Driver, v drivers.Volume, want []byte, size int64) {
	t.Helper()
	c := &streamCheck{want: want}
	if err := d.ReadVolume(ctx, v, c); err != nil {
		t.Fatalf("read %s: %v", v.ID, err)
	}
	if c.bad != 0 {
		t.Fatalf("read %s: differs from what was written in the chunk from byte %d", v.ID, c.bad-1)
	}
	if c.n != size {
		t.Fatalf("read %s: %d bytes, want %d", v.ID, c.n, size)
	}
}

// readPrefix reads the first len(want) bytes of a VDI with `dog vdi read
// <name> 0 <len>` and compares them with want: the whole-volume reads are
// the slow part of these tests, and one per test is enough for the driver.
func readPrefix(t *testing.T, port int, v drivers.Volume, want []byte) {
	t.Helper()
	cmd := exec.Command("dog", "vdi", "read", "volume-"+v.ID, "0", strconv.Itoa(len(want)), "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("dog vdi read volume-%s: %v", v.ID, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("volume-%s: its first %d bytes differ from what was written", v.ID, len(want))
	}
}

// streamCheck is an io.Writer that compares a stream with want followed by
// zeros.
type streamCheck struct {
	want []byte
	n    int64
	bad  int64 // 1 + the offset of the first differing chunk (0: none)
}

var zeroMiB = make([]byte, 1<<20)

func (c *streamCheck) Write(p []byte) (int, error) {
	for i := 0; i < len(p) && c.bad == 0; {
		off := c.n + int64(i)
		n := min(len(p)-i, len(zeroMiB))
		want := zeroMiB[:n]
		if off < int64(len(c.want)) {
			n = min(n, int(int64(len(c.want))-off))
			want = c.want[off : off+int64(n)]
		}
		if !bytes.Equal(p[i:i+n], want) {
			c.bad = off + 1
		}
		i += n
	}
	c.n += int64(len(p))
	return len(p), nil
}

const (
	gib = drivers.GiB
	// Sizes as `dog vdi list -r` prints them.
	oneGiB, twoGiB = "1073741824", "2147483648"
)

// TestRealLifecycle takes the driver through every operation on the real
// one-node cluster, with `dog vdi list` checked after each step and the
// data read back through the driver.
func TestRealLifecycle(t *testing.T) {
	needSheepdog(t)
	d, p := realDriver(t, real.port), real.port
	a := drivers.Volume{ID: "5a000000-0000-4000-8000-000000000001", SizeGB: 1}
	b := drivers.Volume{ID: "5a000000-0000-4000-8000-000000000002", SizeGB: 2}
	c := drivers.Volume{ID: "5a000000-0000-4000-8000-000000000003", SizeGB: 1}
	s := drivers.Snapshot{ID: "5a000000-0000-4000-8000-0000000000f1", VolumeID: a.ID, VolumeSizeGB: 1}
	na, nb, nc, tag := "volume-"+a.ID, "volume-"+b.ID, "volume-"+c.ID, "snapshot-"+s.ID

	// Create; again is success; another size is a conflict.
	for i := 0; i < 2; i++ {
		if mu, err := d.CreateVolume(ctx, a); err != nil || mu.ProviderLocation != "sheepdog:127.0.0.1:"+strconv.Itoa(p) {
			t.Fatalf("create (%d): %+v %v", i, mu, err)
		}
	}
	if _, err := d.CreateVolume(ctx, drivers.Volume{ID: a.ID, SizeGB: 2}); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("create with another size: want conflict, got %v", err)
	}
	expectVDIs(t, p, "after create", "= "+na+" "+oneGiB+" ")

	// Data, then a snapshot; the source changes after it.
	before, after := randomBytes(t, 5<<20), randomBytes(t, 3<<20)
	if err := d.WriteVolume(ctx, a, bytes.NewReader(before)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second is a redelivery: the tag exists
		if _, err := d.CreateSnapshot(ctx, s); err != nil {
			t.Fatalf("snapshot (%d): %v", i, err)
		}
	}
	if err := d.WriteVolume(ctx, a, bytes.NewReader(after)); err != nil {
		t.Fatal(err)
	}
	expectVDIs(t, p, "after snapshot", "s "+na+" "+oneGiB+" "+tag, "= "+na+" "+oneGiB+" ")

	// A volume from the snapshot, larger: a clone, resized; it holds the
	// snapshot's data. Redelivered, it is success.
	for i := 0; i < 2; i++ {
		if _, err := d.CreateVolumeFromSnapshot(ctx, b, s); err != nil {
			t.Fatalf("volume from snapshot (%d): %v", i, err)
		}
	}
	readBack(t, d, b, before, 2*gib)
	// A clone of the source: its current data; the temporary snapshot is
	// gone. dog vdi write zeroed the rest of the 4 MiB object it ended in.
	if _, err := d.CreateClonedVolume(ctx, c, a); err != nil {
		t.Fatal(err)
	}
	current := append(append(after, make([]byte, 4<<20-len(after))...), before[4<<20:]...)
	readPrefix(t, p, c, current)
	expectVDIs(t, p, "after the clones", "s "+na+" "+oneGiB+" "+tag, "= "+na+" "+oneGiB+" ",
		"c "+nb+" "+twoGiB+" ", "c "+nc+" "+oneGiB+" ")

	// Extend; again is success; shrink and past the maximum are refused,
	// by the driver and, asked directly, by dog (exit 64).
	for i := 0; i < 2; i++ {
		if err := d.ExtendVolume(ctx, c, 2); err != nil {
			t.Fatalf("extend (%d): %v", i, err)
		}
	}
	if err := d.ExtendVolume(ctx, c, 1); !drivers.IsKind(err, drivers.KindConflict) {
		t.Fatalf("shrink: want conflict, got %v", err)
	}
	if err := d.resize(ctx, nc, gib); !drivers.IsKind(err, drivers.KindConflict) || !strings.Contains(err.Error(), "Shrinking VDIs is not implemented") {
		t.Fatalf("dog vdi resize to a smaller size: want conflict, got %v", err)
	}
	if err := d.ExtendVolume(ctx, c, 5120); !drivers.IsKind(err, drivers.KindInvalid) {
		t.Fatalf("extend past 4 TiB: want invalid, got %v", err)
	}
	if err := d.ExtendVolume(ctx, drivers.Volume{ID: "5a000000-0000-4000-8000-0000000000ee", SizeGB: 1}, 2); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("extend of a missing volume: want not_found, got %v", err)
	}
	readBack(t, d, c, current, 2*gib) // the driver's stream, after the extend

	// Listing and stats.
	ids, err := d.ListVolumes(ctx)
	if err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{a.ID, b.ID, c.ID}) {
		t.Fatalf("list: %v %v", ids, err)
	}
	st, err := d.GetVolumeStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalVolumes != 3 || st.ProvisionedCapacityGB != 5 || st.TotalCapacityGB <= 0 || st.FreeCapacityGB <= 0 ||
		st.FreeCapacityGB > st.TotalCapacityGB || st.Extra["nodes"] != 1 || st.Extra["unreachable_nodes"] != 0 {
		t.Fatalf("stats: %+v", st)
	}

	// Deletes; again is success (dog says "No VDI found" and exits 0).
	for i := 0; i < 2; i++ {
		if err := d.DeleteSnapshot(ctx, s); err != nil {
			t.Fatalf("delete snapshot (%d): %v", i, err)
		}
		for _, v := range []drivers.Volume{a, b, c} {
			if err := d.DeleteVolume(ctx, v); err != nil {
				t.Fatalf("delete %s (%d): %v", v.ID, i, err)
			}
		}
	}
	if err := d.DeleteSnapshot(ctx, s); err != nil {
		t.Fatalf("delete of a snapshot whose volume is gone: %v", err)
	}
	expectVDIs(t, p, "after the deletes")
	if _, err := d.CreateSnapshot(ctx, s); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("snapshot of a deleted volume: want not_found, got %v", err)
	}
	if _, err := d.CreateVolumeFromSnapshot(ctx, b, s); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("volume from a deleted snapshot: want not_found, got %v", err)
	}
	if err := d.ReadVolume(ctx, a, io.Discard); !drivers.IsKind(err, drivers.KindNotFound) {
		t.Fatalf("read of a deleted volume: want not_found, got %v", err)
	}
}

// TestRealRefusedConnection: nothing listens on the port. dog exits 2
// ("failed to connect to …"), except `dog vdi delete`, which exits 0; each
// is unavailable, the retryable kind, never a success.
func TestRealRefusedConnection(t *testing.T) {
	needSheepdog(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	d := realDriver(t, port)
	v := drivers.Volume{ID: "5b000000-0000-4000-8000-000000000001", SizeGB: 1}
	calls := map[string]error{}
	_, calls["create"] = d.CreateVolume(ctx, v)
	calls["delete"] = d.DeleteVolume(ctx, v)
	calls["delete snapshot"] = d.DeleteSnapshot(ctx, drivers.Snapshot{ID: "5b000000-0000-4000-8000-0000000000f1", VolumeID: v.ID})
	calls["extend"] = d.ExtendVolume(ctx, v, 2)
	_, calls["stats"] = d.GetVolumeStats(ctx)
	calls["read"] = d.ReadVolume(ctx, v, io.Discard)
	_, calls["list"] = d.ListVolumes(ctx)
	for op, err := range calls {
		if !drivers.IsKind(err, drivers.KindUnavailable) || !strings.Contains(err.Error(), "Connection refused") {
			t.Errorf("%s: want unavailable (Connection refused), got %v", op, err)
		}
	}
}

// TestRealClusterStates: a node that waits to be formatted lists no VDI
// and exits 0; the driver must not read that as "not found" (an extend),
// nor a delete's "Waiting for cluster to be formatted" (exit 0) as done.
// Formatted, the same node serves.
func TestRealClusterStates(t *testing.T) {
	needSheepdog(t)
	_, port, err := upNode("", "")
	if err != nil {
		t.Fatal(err)
	}
	d := realDriver(t, port)
	v := drivers.Volume{ID: "5c000000-0000-4000-8000-000000000001", SizeGB: 1}
	calls := map[string]error{}
	_, calls["create"] = d.CreateVolume(ctx, v)
	calls["delete"] = d.DeleteVolume(ctx, v)
	calls["delete snapshot"] = d.DeleteSnapshot(ctx, drivers.Snapshot{ID: "5c000000-0000-4000-8000-0000000000f1", VolumeID: v.ID})
	calls["extend"] = d.ExtendVolume(ctx, v, 2)
	calls["write"] = d.WriteVolume(ctx, v, strings.NewReader("x"))
	_, calls["attach"] = d.InitializeConnection(ctx, v, "att", drivers.Connector{})
	_, calls["stats"] = d.GetVolumeStats(ctx)
	_, calls["list"] = d.ListVolumes(ctx)
	for op, err := range calls {
		if !drivers.IsKind(err, drivers.KindBackend) || !strings.Contains(err.Error(), "Waiting for cluster to be formatted") {
			t.Errorf("%s on a cluster waiting to be formatted: want backend_error naming the state, got %v", op, err)
		}
	}
	if out, err := sheepdogScript("format", strconv.Itoa(port), "1"); err != nil {
		t.Fatalf("format: %v\n%s", err, out)
	}
	if _, err := d.CreateVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
}

// TestRealTwoNodes: two sheep on one `local:` cluster file, two copies of
// every object. The node the driver does not talk to is killed (SIGKILL)
// while volumes are written and created: every request completes, or fails
// with a retryable error and completes when retried; the data reads back
// byte-equal, and the stats drop to one node's capacity.
func TestRealTwoNodes(t *testing.T) {
	needSheepdog(t)
	base, err := os.MkdirTemp("", "ember-sheep2-")
	if err != nil {
		t.Fatal(err)
	}
	real.dirs = append(real.dirs, base) // removed whole by TestMain, after the nodes
	shm := filepath.Join(base, "cluster.shm")
	_, p1, err := upNode(filepath.Join(base, "n1"), shm)
	if err != nil {
		t.Fatal(err)
	}
	dir2, p2, err := upNode(filepath.Join(base, "n2"), shm)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sheepdogScript("format", strconv.Itoa(p1), "2"); err != nil {
		t.Fatalf("format -c 2: %v\n%s", err, out)
	}
	if info := dogCLI(t, p2, "cluster", "info"); !strings.Contains(info, fmt.Sprintf("[127.0.0.1:%d:128, 127.0.0.1:%d:128]", p1, p2)) {
		t.Fatalf("the second node is not in the cluster:\n%s", info)
	}
	d := realDriver(t, p1)
	st, err := d.GetVolumeStats(ctx)
	if err != nil || st.Extra["nodes"] != 2 {
		t.Fatalf("stats of two nodes: %+v %v", st, err)
	}
	twoNodes := st.TotalCapacityGB

	// retry is what the pipeline does with a retryable error.
	var retried int
	retry := func(what string, f func() error) {
		t.Helper()
		for i := 0; ; i++ {
			err := f()
			if err == nil {
				return
			}
			if !drivers.KindOf(err).Retryable() || i == 20 {
				t.Fatalf("%s: %v (kind %s, attempt %d)", what, err, drivers.KindOf(err), i+1)
			}
			retried++
			time.Sleep(200 * time.Millisecond)
		}
	}
	const n = 4
	data := make([][]byte, n)
	vols := make([]drivers.Volume, n)
	for i := range vols {
		vols[i] = drivers.Volume{ID: fmt.Sprintf("5d000000-0000-4000-8000-%012d", i), SizeGB: 1}
		data[i] = randomBytes(t, 32<<20)
	}
	pid2, err := os.ReadFile(filepath.Join(dir2, "sheep.pid"))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vols {
		retry("create "+v.ID, func() error { _, err := d.CreateVolume(ctx, v); return err })
		if i == n/2 {
			// Mid-stream: the write below starts while the node dies.
			done := make(chan error, 1)
			go func() { done <- d.WriteVolume(ctx, v, bytes.NewReader(data[i])) }()
			time.Sleep(50 * time.Millisecond)
			if out, err := exec.Command("kill", "-KILL", strings.TrimSpace(string(pid2))).CombinedOutput(); err != nil {
				t.Fatalf("kill the second node: %v %s", err, out)
			}
			if err := <-done; err != nil {
				if !drivers.KindOf(err).Retryable() {
					t.Fatalf("write while a node dies: %v (kind %s)", err, drivers.KindOf(err))
				}
				retried++
				retry("write "+v.ID, func() error { return d.WriteVolume(ctx, v, bytes.NewReader(data[i])) })
			}
			continue
		}
		retry("write "+v.ID, func() error { return d.WriteVolume(ctx, v, bytes.NewReader(data[i])) })
	}
	t.Logf("%d retries", retried)
	for i, v := range vols {
		readPrefix(t, p1, v, data[i])
	}
	// The stats say so once the cluster has noticed (dog node info skips,
	// or names as unreachable, the dead node).
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		st, err = d.GetVolumeStats(ctx)
		if err == nil && st.Extra["nodes"] == 1 {
			break
		}
		if err != nil && !drivers.KindOf(err).Retryable() {
			t.Fatalf("stats with a node gone: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats 30 s after a node died: %+v %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.TotalCapacityGB >= twoNodes || st.TotalVolumes != n {
		t.Fatalf("stats with one node of two: total %.2f GB (two nodes: %.2f), %d volumes", st.TotalCapacityGB, twoNodes, st.TotalVolumes)
	}
	for _, v := range vols {
		retry("delete "+v.ID, func() error { return d.DeleteVolume(ctx, v) })
	}
	expectVDIs(t, p1, "after the deletes")
}

// recorder runs commands with the local executor and keeps what each
// printed and how it exited, for TestRealOutputMatchesTranscripts.
type recorder struct {
	ex   drivers.Executor
	last struct {
		stdout, stderr string
		exit           int
	}
}

func (r *recorder) Run(ctx context.Context, c drivers.Command) (drivers.Output, error) {
	out, err := r.ex.Run(ctx, c)
	r.last.stdout, r.last.stderr, r.last.exit = string(out.Stdout), string(out.Stderr), 0
	var ce *drivers.CommandError
	if errors.As(err, &ce) {
		r.last.stderr, r.last.exit = ce.Stderr, ce.ExitCode
	}
	return out, err
}

// TestRealOutputMatchesTranscripts provokes on real nodes each answer of
// dog that the transcripts play (sheepdog_test.go: vdiExistsAlready,
// openFailed, snapshotTagExists, snapshotNoVDI, resizeRefused,
// connectFailure, notFormatted, running, nodeInfo, vdiLine) and compares
// stdout, stderr and exit code. Dates, sizes and ids differ from run to
// run: numbers are compared by shape where the transcript's are made up.
func TestRealOutputMatchesTranscripts(t *testing.T) {
	needSheepdog(t)
	rec := &recorder{ex: drivers.LocalExecutor{DefaultTimeout: time.Minute}}
	d := realDriver(t, real.port, rec)
	dog := func(args ...string) { d.run(ctx, "dog", d.dogCmd(args[0], args[1], args[2:]...)) }
	expect := func(what, transcript string, shape bool) {
		t.Helper()
		want := exectest.Parse("$ dog\n" + transcript)[0]
		got := exectest.Step{Stdout: rec.last.stdout, Stderr: rec.last.stderr, ExitCode: rec.last.exit}
		want.Args = nil
		if shape {
			want.Stdout, got.Stdout = shapeOf(want.Stdout), shapeOf(got.Stdout)
		}
		if got.Stdout != want.Stdout || got.Stderr != want.Stderr || got.ExitCode != want.ExitCode {
			t.Errorf("%s:\n real dog:   stdout %q stderr %q exit %d\n transcript: stdout %q stderr %q exit %d",
				what, got.Stdout, got.Stderr, got.ExitCode, want.Stdout, want.Stderr, want.ExitCode)
		}
	}
	t.Cleanup(func() { d.DeleteSnapshot(ctx, sS); d.DeleteVolume(ctx, vA) })

	dog("vdi", "create", nameA, "1G")
	expect("first create", "", false)
	dog("vdi", "create", nameA, "1G")
	expect("create of an existing VDI", vdiExistsAlready(nameA), false)
	dog("vdi", "list", "-r", nameA)
	expect("vdi list", vdiLine, true)
	dog("vdi", "snapshot", "-s", tagS, nameA)
	dog("vdi", "snapshot", "-s", tagS, nameA)
	expect("snapshot with an existing tag", snapshotTagExists(nameA, tagS), false)
	dog("vdi", "snapshot", "-s", tagS, nameB)
	expect("snapshot of a missing VDI", snapshotNoVDI(nameB), false)
	dog("vdi", "resize", nameA, "1048576")
	expect("shrink", resizeRefused(shrinkRefused), false)
	dog("vdi", "resize", nameA, "5497558138880")
	expect("resize past the maximum", resizeRefused(tooLarge), false)
	dog("vdi", "clone", "-s", "snapshot-"+idB, nameA, nameB)
	expect("clone of a missing tag", openFailed(nameA, "snapshot-"+idB, "Failed to find requested tag")+"\n? 1", false)
	dog("vdi", "delete", "-s", "snapshot-"+idB, nameA)
	expect("delete of a missing tag", openFailed(nameA, "snapshot-"+idB, "Failed to find requested tag"), false)
	dog("vdi", "delete", nameB)
	expect("delete of a missing VDI", openFailed(nameB, "", "No VDI found"), false)
	dog("cluster", "info")
	expect("cluster info", running[strings.Index(running, "\n")+1:], true)
	dog("node", "info", "-r")
	expect("node info", nodeInfo, true)

	// A port nothing listens on.
	free, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	refused := realDriver(t, free, rec)
	refused.run(ctx, "dog", refused.dogCmd("cluster", "info"))
	expect("cluster info without a sheep", strings.ReplaceAll(connectFailure, "7000", strconv.Itoa(free)), false)
	refused.run(ctx, "dog", refused.dogCmd("vdi", "delete", nameA))
	expect("delete without a sheep", "! failed to connect to 127.0.0.1:"+strconv.Itoa(free)+": Connection refused\n"+
		"! failed to connect to 127.0.0.1:"+strconv.Itoa(free)+": Connection refused\n"+openFailed(nameA, "", "I/O error"), false)

	// A node that waits to be formatted.
	_, p, err := upNode("", "")
	if err != nil {
		t.Fatal(err)
	}
	waiting := realDriver(t, p, rec)
	waiting.run(ctx, "dog", waiting.dogCmd("cluster", "info"))
	expect("cluster info before the format", notFormatted, false)
	waiting.run(ctx, "dog", waiting.dogCmd("vdi", "delete", nameA))
	expect("delete before the format", openFailed(nameA, "", "Waiting for cluster to be formatted"), false)
}

var (
	digits  = regexp.MustCompile(`[0-9a-f]*[0-9][0-9a-f]*`)
	created = regexp.MustCompile(`Cluster created at .*`)
	members = regexp.MustCompile(`\[[^\]]*\]`)
)

// shapeOf is dog output with its numbers (and hex ids), dates and node
// lists blanked, and one node line per listing.
func shapeOf(s string) string {
	s = created.ReplaceAllString(s, "Cluster created at DATE")
	s = members.ReplaceAllString(s, "[NODES]")
	s = digits.ReplaceAllString(s, "N")
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if len(lines) > 0 && l == lines[len(lines)-1] && strings.HasPrefix(l, "N ") {
			continue
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}
