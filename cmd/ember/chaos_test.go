package main

// The reliability campaign (docs/RELIABILITY.md): `ember serve` processes
// under a continuous mixed stream of requests on the file backend, while
// the tests kill them, restart the broker or Redis under them, or make them
// join and leave one consumer group. A rig is one deployment (topics,
// groups, Redis keys, backend directory); a workload is the clients; verify
// checks what every test must leave behind.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Shopify/sarama"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
)

// chaosTypes are the functions the campaign drives: a volume's life on the
// file backend (create, snapshot, extend, snapshot delete, delete).
var chaosTypes = []string{events.VolumeRequested, events.VolumeDeleted, events.VolumeExtendRequested,
	events.SnapshotRequested, events.SnapshotDeleted}

const chaosLease = 3 * time.Second

// envInt reads a positive count from the environment (the long runs of
// `make chaos`), def when unset.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// rig is one Ember deployment under test.
type rig struct {
	t         *testing.T
	brokers   []string
	redisURL  string
	rdb       *redis.Client
	keyPrefix string
	dir       string // the file backend's directory
	cfgPath   string
	rc        router.Config
	results   *testenv.Results
	procs     []*proc
}

func newRig(t *testing.T, brokers []string, redisURL string) *rig {
	t.Helper()
	u := testenv.Unique()
	r := &rig{t: t, brokers: brokers, redisURL: redisURL, keyPrefix: "k" + u, dir: t.TempDir(),
		cfgPath: filepath.Join(t.TempDir(), "ember.yaml")}
	cfg := fmt.Sprintf(`instance: chaos
kafka: {brokers: [%q], topic_prefix: "x%s.", group_prefix: "g%s", partitions: 4}
redis: {url: %q, key_prefix: %q}
delivery: {lease: %s, command_timeout: 2s, nack_delay: 100ms}
backends:
  - {name: local, driver: file, options: {dir: %q}}
`, brokers[0], u, u, redisURL, r.keyPrefix, chaosLease, r.dir)
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.rc = router.Config{Brokers: brokers, TopicPrefix: "x" + u + ".", Partitions: 4}
	r.rc.SetDefaults()
	all := functions.All(&functions.Env{})
	fns := map[string]functions.Function{}
	var topics []string
	for _, typ := range chaosTypes {
		fns[typ] = all[typ]
		topics = append(topics, events.ResultTypes(typ)...)
	}
	if err := r.rc.EnsureTopics(fns); err != nil {
		t.Fatal(err)
	}
	r.results = testenv.Collect(t, brokers, r.rc.SaramaConfig(), r.rc.TopicPrefix, topics)
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	r.rdb = redis.NewClient(opt)
	t.Cleanup(func() { r.rdb.Close() })
	return r
}

// serve starts one `ember serve` of the rig (env adds variables).
func (r *rig) serve(env ...string) *proc {
	r.t.Helper()
	addr := freeAddr(r.t)
	p := startEmber(r.t, env, "serve", "--config", r.cfgPath, "--http", addr, "--functions", strings.Join(chaosTypes, ","))
	p.http = addr
	r.procs = append(r.procs, p)
	if dir := os.Getenv("EMBER_CHAOS_LOGDIR"); dir != "" && len(r.procs) == 1 {
		// For diagnosis: every process's output, once the test is over.
		r.t.Cleanup(func() {
			for i, p := range r.procs {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%02d.log", r.t.Name(), i)), p.stderr.Bytes(), 0o644)
			}
		})
	}
	return p
}

// exited reports whether the process has ended. The result goes back
// into p.done for whoever waits next (kill, stop).
func (p *proc) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// sleep waits d, or until the process exits.
func (p *proc) sleep(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end) && !p.exited(); {
		time.Sleep(min(20*time.Millisecond, time.Until(end)))
	}
}

// kill sends SIGKILL and reaps the process.
func (p *proc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// logCount counts the lines of every process's output that contain s.
func (r *rig) logCount(s string) int {
	n := 0
	for _, p := range r.procs {
		n += strings.Count(p.stderr.String(), s)
	}
	return n
}

// wreq is one request the workload sent.
type wreq struct {
	id, typ, vol   string
	snapshot       string // the snapshot id a snapshot request names
	sent, answered time.Time
	phase, code    string // end or error; the error code
	msg            string // the error message
}

// chain is one volume's life as its client drove it.
type chain struct {
	vol     string
	size    int
	snaps   map[string]bool
	deleted bool
	broken  bool // a step had no answer or an unexpected one
}

// workload is a set of clients, each driving volumes through create,
// snapshot, extend, snapshot, snapshot delete and (every other volume)
// delete. A client sends a volume's next request when the previous one
// was answered, as an orchestrator does: requests of one volume go to
// different topics, which Kafka does not order among themselves.
type workload struct {
	r       *rig
	prod    sarama.SyncProducer
	wait    time.Duration // how long a client waits for an answer
	stop    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	reqs    []*wreq
	chains  []*chain
	answers atomic.Int64
}

func (r *rig) workload(clients int) *workload {
	r.t.Helper()
	sc := r.rc.SaramaConfig()
	sc.Producer.Retry.Max = 3
	prod, err := sarama.NewSyncProducer(r.brokers, sc)
	if err != nil {
		r.t.Fatal(err)
	}
	w := &workload{r: r, prod: prod, wait: 4 * time.Minute}
	for i := 0; i < clients; i++ {
		w.wg.Add(1)
		go w.client(i)
	}
	r.t.Cleanup(func() { w.finish(); prod.Close() })
	return w
}

// finish stops sending new volumes and waits for the clients to finish
// the volume each is on.
func (w *workload) finish() {
	w.stop.Store(true)
	w.wg.Wait()
}

func (w *workload) client(n int) {
	defer w.wg.Done()
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(n)))
	for !w.stop.Load() {
		c := &chain{vol: uuid.NewString(), snaps: map[string]bool{}}
		w.mu.Lock()
		w.chains = append(w.chains, c)
		w.mu.Unlock()
		s1, s2 := uuid.NewString(), uuid.NewString()
		steps := []struct {
			typ   string
			data  map[string]any
			apply func()
		}{
			{events.VolumeRequested, map[string]any{"volume_id": c.vol, "project_id": exampleProject, "user_id": exampleUser, "size_gb": 1}, func() { c.size = 1 }},
			{events.SnapshotRequested, map[string]any{"snapshot_id": s1, "volume_id": c.vol, "project_id": exampleProject}, func() { c.snaps[s1] = true }},
			{events.VolumeExtendRequested, map[string]any{"volume_id": c.vol, "project_id": exampleProject, "new_size_gb": 2}, func() { c.size = 2 }},
			{events.SnapshotRequested, map[string]any{"snapshot_id": s2, "volume_id": c.vol, "project_id": exampleProject}, func() { c.snaps[s2] = true }},
			{events.SnapshotDeleted, map[string]any{"snapshot_id": s1, "volume_id": c.vol, "project_id": exampleProject}, func() { delete(c.snaps, s1) }},
			// Every other volume goes: its last snapshot, then itself
			// (a volume with snapshots is not deleted, as in Cinder).
			{events.SnapshotDeleted, map[string]any{"snapshot_id": s2, "volume_id": c.vol, "project_id": exampleProject}, func() { delete(c.snaps, s2) }},
			{events.VolumeDeleted, map[string]any{"volume_id": c.vol, "project_id": exampleProject}, func() { c.deleted = true }},
		}
		if rnd.IntN(2) == 0 {
			steps = steps[:len(steps)-2]
		}
		for _, s := range steps {
			q := w.send(s.typ, c.vol, s.data)
			if q.phase != events.PhaseEnd {
				c.broken = true
				break
			}
			s.apply()
		}
	}
}

// burst sends n blank creates of new volumes that all hash to partition 0
// of the input topic, without waiting: many records of one partition in
// flight at once. Each is then followed like any request (finish waits).
func (w *workload) burst(n int) {
	part := sarama.NewHashPartitioner(w.r.rc.Topic(events.VolumeRequested))
	for i := 0; i < n; i++ {
		vol := uuid.NewString()
		for {
			p, err := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(vol)}, w.r.rc.Partitions)
			if err == nil && p == 0 {
				break
			}
			vol = uuid.NewString()
		}
		c := &chain{vol: vol, snaps: map[string]bool{}}
		w.mu.Lock()
		w.chains = append(w.chains, c)
		w.mu.Unlock()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			q := w.send(events.VolumeRequested, vol, map[string]any{"volume_id": vol, "project_id": exampleProject, "user_id": exampleUser, "size_gb": 1})
			if q.phase == events.PhaseEnd {
				c.size = 1
			} else {
				c.broken = true
			}
		}()
	}
}

// inFlight reads ember_in_flight_records of volume.requested from p's
// /metrics; -1 when it cannot.
func (p *proc) inFlight() int {
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, `ember_in_flight_records{type="volume.requested"}`) {
			f := strings.Fields(line)
			n, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return -1
}

// send publishes one request (retrying the publication, with the same
// id, while the broker is away) and waits for its terminal result.
func (w *workload) send(typ, vol string, data map[string]any) *wreq {
	raw, _ := json.Marshal(data)
	q := &wreq{id: uuid.NewString(), typ: typ, vol: vol, sent: time.Now()}
	q.snapshot, _ = data["snapshot_id"].(string)
	w.mu.Lock()
	w.reqs = append(w.reqs, q)
	w.mu.Unlock()
	rec, err := events.NewInput(typ, "/chaos", q.id, raw, time.Time{})
	if err != nil {
		panic(err)
	}
	pm, _ := events.KafkaMarshaler{}.Marshal(w.r.rc.Topic(typ), rec.Message())
	for deadline := time.Now().Add(w.wait); ; {
		if _, _, err = w.prod.SendMessage(pm); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return q
	}
	end, fail := events.ResultType(typ, events.PhaseEnd), events.ResultType(typ, events.PhaseError)
	for deadline := time.Now().Add(w.wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if rs := w.r.results.Of(end, q.id); len(rs) > 0 {
			w.answer(q, rs[0].Time, events.PhaseEnd, "")
			return q
		}
		if rs := w.r.results.Of(fail, q.id); len(rs) > 0 {
			code, msg := "", ""
			if e := rs[0].Data.Error; e != nil {
				code, msg = e.Code, e.Message
			}
			w.answer(q, rs[0].Time, events.PhaseError, code)
			w.mu.Lock()
			q.msg = msg
			w.mu.Unlock()
			return q
		}
	}
	return q
}

// answer records q's terminal result, published at (the record's
// timestamp, so that an answer published before a kill and read after it
// does not count as recovery).
func (w *workload) answer(q *wreq, at time.Time, phase, code string) {
	if at.IsZero() {
		at = time.Now()
	}
	w.mu.Lock()
	q.answered, q.phase, q.code = at, phase, code
	w.mu.Unlock()
	w.answers.Add(1)
}

// progressSince waits up to max for an answer after n answers; it reports
// whether one came. It gives up early when a serving process exits.
func (w *workload) progressSince(n int64, max time.Duration, serving ...*proc) bool {
	for deadline := time.Now().Add(max); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if w.answers.Load() > n {
			return true
		}
		for _, p := range serving {
			if p.exited() {
				return false
			}
		}
	}
	return false
}

// recovery is the time from t0 to the first answer after it.
func (w *workload) recovery(t0 time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	best := time.Duration(-1)
	for _, q := range w.reqs {
		if q.answered.After(t0) && (best < 0 || q.answered.Sub(t0) < best) {
			best = q.answered.Sub(t0)
		}
	}
	return best
}

// maxGap is the longest time between consecutive answers from..to.
func (w *workload) maxGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	ts := []time.Time{from, to}
	for _, q := range w.reqs {
		if q.answered.After(from) && q.answered.Before(to) {
			ts = append(ts, q.answered)
		}
	}
	w.mu.Unlock()
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i].Sub(ts[i-1]))
	}
	return gap
}

// report is what a test's verify found; every figure of
// docs/RELIABILITY.md comes from one.
type report struct {
	Requests, Answered, Lost  int
	DupResultIDs              int // requests with more than one distinct terminal result id
	Errors                    map[string]int
	Volumes, Orphans, Missing int // backend objects vs the registry
	Mismatch                  int // registry vs what the clients were told
	// Unrequested counts backend files that no request asked for (a
	// name no client's create or snapshot used): a second effect even
	// where the registry was lost.
	Unrequested     int
	LeftAfterDelete int // volumes a client was told deleted whose files remain
	LocksPastLease  int
	Problems        []string
}

func (rp report) String() string {
	codes := make([]string, 0, len(rp.Errors))
	for c, n := range rp.Errors {
		codes = append(codes, fmt.Sprintf("%s=%d", c, n))
	}
	sort.Strings(codes)
	return fmt.Sprintf("requests=%d answered=%d lost=%d dup_result_ids=%d errors=[%s] volumes=%d orphans=%d unrequested=%d missing=%d registry_mismatch=%d left_after_delete=%d locks_past_lease=%d",
		rp.Requests, rp.Answered, rp.Lost, rp.DupResultIDs, strings.Join(codes, " "), rp.Volumes, rp.Orphans, rp.Unrequested, rp.Missing, rp.Mismatch, rp.LeftAfterDelete, rp.LocksPastLease)
}

// verify checks, after the workload finished and every Ember stopped:
// one terminal result id per request (.end or .error; the same id again is
// allowed), backend files exactly as the final registry says, the registry
// as the clients were told, and no lock held past its lease.
func (r *rig) verify(w *workload) report {
	r.t.Helper()
	ctx := context.Background()
	rp := report{Errors: map[string]int{}}
	problem := func(format string, args ...any) {
		if len(rp.Problems) < 20 {
			rp.Problems = append(rp.Problems, fmt.Sprintf(format, args...))
		}
	}
	time.Sleep(time.Second) // let the last publications reach the collector
	w.mu.Lock()
	reqs, chains := slices.Clone(w.reqs), slices.Clone(w.chains)
	w.mu.Unlock()
	rp.Requests = len(reqs)
	for _, q := range reqs {
		terminal := append(r.results.Of(events.ResultType(q.typ, events.PhaseEnd), q.id), r.results.Of(events.ResultType(q.typ, events.PhaseError), q.id)...)
		switch n := testenv.DistinctIDs(terminal); {
		case n == 0:
			rp.Lost++
			problem("%s %s (volume %s): no terminal result", q.typ, q.id, q.vol)
		case n > 1:
			rp.DupResultIDs++
			problem("%s %s: %d distinct terminal result ids", q.typ, q.id, n)
		}
		if len(terminal) > 0 {
			rp.Answered++
		}
		if q.phase == events.PhaseError {
			rp.Errors[q.code]++
			problem("%s %s (volume %s): .error %s: %s", q.typ, q.id, q.vol, q.code, q.msg)
		}
	}

	// The registry.
	registry := map[string]*functions.Volume{}
	iter := r.rdb.Scan(ctx, 0, r.keyPrefix+":{*}:vol", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		id := k[strings.Index(k, "{")+1 : strings.Index(k, "}")]
		raw, err := r.rdb.Get(ctx, k).Bytes()
		if err != nil {
			r.t.Fatal(err)
		}
		v := new(functions.Volume)
		if err := json.Unmarshal(raw, v); err != nil {
			r.t.Fatalf("registry %s: %v", k, err)
		}
		registry[id] = v
	}
	if err := iter.Err(); err != nil {
		r.t.Fatal(err)
	}

	// The backend: volume-<id>, volume-<id>.info and volume-<id>.<snapshot>.
	requested := map[string]bool{}
	for _, q := range reqs {
		switch q.typ {
		case events.VolumeRequested:
			requested["volume-"+q.vol] = true
			requested["volume-"+q.vol+".info"] = true
		case events.SnapshotRequested:
			requested["volume-"+q.vol+"."+q.snapshot] = true
		}
	}
	files := map[string][]string{}
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		if !requested[name] {
			rp.Unrequested++
			problem("file %s: no request asked for it", name)
		}
		if !strings.HasPrefix(name, "volume-") || len(name) < len("volume-")+36 {
			rp.Orphans++
			problem("unknown file %s", name)
			continue
		}
		id := name[len("volume-") : len("volume-")+36]
		files[id] = append(files[id], name)
	}
	for id, names := range files {
		v := registry[id]
		if v == nil || v.Tombstoned() {
			rp.Orphans += len(names)
			problem("volume %s: files %v but registry %v", id, names, v)
			continue
		}
		want := map[string]bool{"volume-" + id: true}
		for s := range v.Snapshots {
			want["volume-"+id+"."+s] = true
		}
		for _, n := range names {
			if !want[n] && n != "volume-"+id+".info" {
				rp.Orphans++
				problem("volume %s: orphan file %s", id, n)
			}
			delete(want, n)
		}
		for n := range want {
			rp.Missing++
			problem("volume %s: registry has %s, backend does not", id, n)
		}
	}
	for id, v := range registry {
		if !v.Tombstoned() && v.Status != functions.StatusError {
			rp.Volumes++
			if len(files[id]) == 0 {
				rp.Missing++
				problem("volume %s: in the registry (%s), no file", id, v.Status)
			}
		}
	}
	// The registry against what each client was told.
	for _, c := range chains {
		v := registry[c.vol]
		switch {
		case c.broken:
			// Its last step was not answered with .end: counted above.
		case c.size == 0:
		case c.deleted:
			if len(files[c.vol]) > 0 {
				rp.LeftAfterDelete++
				problem("volume %s: deleted, files %v", c.vol, files[c.vol])
			}
			if v == nil || !v.Tombstoned() {
				rp.Mismatch++
				problem("volume %s: deleted, registry %+v", c.vol, v)
			}
		default:
			var snaps []string
			if v != nil {
				for s := range v.Snapshots {
					snaps = append(snaps, s)
				}
			}
			if v == nil || v.Status != functions.StatusAvailable || v.SizeGB != c.size || len(snaps) != len(c.snaps) {
				rp.Mismatch++
				problem("volume %s: client expects size %d, snapshots %d; registry %+v", c.vol, c.size, len(c.snaps), v)
				continue
			}
			for _, s := range snaps {
				if !c.snaps[s] {
					rp.Mismatch++
					problem("volume %s: snapshot %s not expected", c.vol, s)
				}
			}
		}
	}

	// Locks: each held one expires within its lease; after a lease, none.
	locks := func() (n, past int) {
		it := r.rdb.Scan(ctx, 0, r.keyPrefix+":{*}:lock", 1000).Iterator()
		for it.Next(ctx) {
			n++
			if ttl := r.rdb.PTTL(ctx, it.Val()).Val(); ttl < 0 || ttl > chaosLease {
				past++
			}
		}
		return n, past
	}
	_, rp.LocksPastLease = locks()
	time.Sleep(chaosLease + 500*time.Millisecond)
	if n, _ := locks(); n > 0 {
		rp.LocksPastLease += n
		problem("%d locks still held a lease after everything stopped", n)
	}
	return rp
}

// logReport prints the figures in one greppable line.
func logReport(t *testing.T, row string, rp report, extra string) {
	t.Logf("RELIABILITY %s: %s %s", row, rp, extra)
	for _, p := range rp.Problems {
		t.Log("  problem:", p)
	}
}

// durations summarises recovery times.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("median %s max %s", s[len(s)/2].Round(100*time.Millisecond), s[len(s)-1].Round(100*time.Millisecond))
}

// requireClean fails the test on what must never happen, under any fault.
func requireClean(t *testing.T, rp report) {
	t.Helper()
	if rp.Lost != 0 || rp.DupResultIDs != 0 || rp.Orphans != 0 || rp.Unrequested != 0 || rp.Missing != 0 || rp.Mismatch != 0 || rp.LeftAfterDelete != 0 || rp.LocksPastLease != 0 {
		t.Errorf("reliability broken: %s", rp)
	}
}

// freePortPair finds a port p in 61000..64999 with p and p+1 free: the
// campaign's own Kafka (broker, controller) and Redis live in the 6xxxx
// range, away from the shared test servers.
func freePortPair(t *testing.T) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		p := 61000 + rand.IntN(3999)
		ok := true
		for _, q := range []int{p, p + 1} {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port pair in 61000..64999")
	return 0
}

// waitPortFree waits until nothing listens on port any more.
func waitPortFree(t *testing.T, port int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
	}
	t.Fatalf("port %d still in use", port)
}

// script runs deploy/testenv/<name> with args (env adds variables).
func script(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join("..", "..", "deploy", "testenv", name), args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// ownKafka starts a broker of this test's own (deploy/testenv/kafka.sh) and
// returns its address and a restart function that stops it for down and
// starts it again on the same data.
func ownKafka(t *testing.T) (string, func(down time.Duration)) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts its own Kafka")
	}
	testenv.Kafka(t) // the real components are there (make test / make chaos)
	dir, port := t.TempDir(), freePortPair(t)
	script(t, nil, "kafka.sh", "up", dir, strconv.Itoa(port))
	t.Cleanup(func() { script(t, nil, "kafka.sh", "down", dir) })
	return fmt.Sprintf("127.0.0.1:%d", port), func(down time.Duration) {
		script(t, nil, "kafka.sh", "down", dir)
		waitPortFree(t, port)
		time.Sleep(down)
		script(t, nil, "kafka.sh", "restart", dir, strconv.Itoa(port))
	}
}

// ownRedis starts a redis-server of this test's own (redis.sh), with an
// append-only file fsynced on every write when persist is set, and returns
// its URL and a restart function.
func ownRedis(t *testing.T, persist bool) (string, func(down time.Duration)) {
	t.Helper()
	testenv.RedisURL(t)
	dir, port := t.TempDir(), freePortPair(t)
	var env []string
	if persist {
		env = []string{"EMBER_REDIS_PERSIST=1"}
	}
	script(t, env, "redis.sh", "up", dir, strconv.Itoa(port))
	t.Cleanup(func() { script(t, nil, "redis.sh", "down", dir) })
	return fmt.Sprintf("redis://127.0.0.1:%d/0", port), func(down time.Duration) {
		// SIGKILL, as a crash: with persistence every write is in the AOF.
		if pid, err := os.ReadFile(filepath.Join(dir, "redis.pid")); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
			os.Remove(filepath.Join(dir, "redis.pid"))
		}
		waitPortFree(t, port)
		time.Sleep(down)
		script(t, env, "redis.sh", "up", dir, strconv.Itoa(port))
	}
}
