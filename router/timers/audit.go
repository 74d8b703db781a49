package timers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
)

// Audit publishes volume.exists for every live volume of the registry, and
// snapshot.exists for each of their live snapshots, once per audit period
// (Cinder's cinder-volume-usage-audit). Periods are aligned to multiples of
// Period (the hour, by default); when one ends, one replica publishes it.
type Audit struct {
	RDB redis.UniversalClient
	Out Output
	// Prefix is the Redis key prefix (default "ember"), as the guard's.
	Prefix string
	// Period is the audit period (default 1 h).
	Period time.Duration
	// Lease is how long a replica holds a period while publishing it; a
	// replica that died holding it is replaced after this (default 2 min).
	Lease time.Duration
	Log   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// CatchUp is how many periods before the one that just ended Run also
	// publishes when no replica did (every replica was down when they
	// ended): default and at most MaxCatchUp; negative, none.
	CatchUp int

	once  sync.Once
	owner string
}

func (a *Audit) defaults() {
	a.once.Do(func() {
		if a.Prefix == "" {
			a.Prefix = "ember"
		}
		if a.Period <= 0 {
			a.Period = DefaultAuditPeriod
		}
		if a.Lease <= 0 {
			a.Lease = 2 * time.Minute
		}
		if a.Log == nil {
			a.Log = slog.New(slog.DiscardHandler)
		}
		if a.Now == nil {
			a.Now = time.Now
		}
		if a.CatchUp == 0 || a.CatchUp > MaxCatchUp {
			a.CatchUp = MaxCatchUp
		}
		if a.CatchUp < 0 {
			a.CatchUp = 0
		}
		a.owner = uuid.NewString()
	})
}

// MaxCatchUp bounds Audit.CatchUp. A period's done marker is kept at least
// 7 periods after it ends, so within this many periods before the last one
// a missing marker means the period was never published (one period of
// margin for clock skew between the replicas and Redis), and the burst
// after an outage is bounded: at most 6 periods of the whole registry.
const MaxCatchUp = 5

// LastPeriod is the latest period that has ended at now.
func (a *Audit) LastPeriod(now time.Time) (begin, end time.Time) {
	a.defaults()
	end = now.Truncate(a.Period)
	return end.Add(-a.Period), end
}

// guardKey names a period by its length and beginning: after audit.period
// changes (1h to 1d, say), an hourly period's marker must not pass for the
// daily period that begins at the same instant.
func (a *Audit) guardKey(begin time.Time) string {
	return a.Prefix + ":{audit}:" + strconv.FormatInt(int64(a.Period/time.Second), 10) + "s:" + strconv.FormatInt(begin.Unix(), 10)
}

// KEYS: guard. ARGV: owner, lease ms.
var takePeriodScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == 'done' then return 'done' end
if v and v ~= ARGV[1] then return 'busy' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'mine'
`)

// KEYS: guard. ARGV: owner, lease ms.
var renewPeriodScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// KEYS: guard. ARGV: owner, keep ms.
var donePeriodScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2]) return 1 end
return 0
`)

// RunPeriod publishes the period [begin, end) unless another replica has
// published it or is publishing it; it reports whether this one did.
func (a *Audit) RunPeriod(ctx context.Context, begin, end time.Time) (bool, error) {
	a.defaults()
	key := a.guardKey(begin)
	state, err := takePeriodScript.Run(ctx, a.RDB, []string{key}, a.owner, a.Lease.Milliseconds()).Text()
	if err != nil {
		return false, fmt.Errorf("audit %s: %w", begin.Format(time.RFC3339), err)
	}
	if state != "mine" {
		return false, nil
	}
	// Keep the period while publishing; a lost lease lets another replica
	// redo it (with the same event ids).
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(a.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-t.C:
				renewPeriodScript.Run(kctx, a.RDB, []string{key}, a.owner, a.Lease.Milliseconds())
			}
		}
	}()
	n, err := a.Publish(kctx, begin, end)
	if err != nil {
		// Free the period for another try at once.
		a.RDB.Del(ctx, key) // best effort; the lease expires anyway
		return false, err
	}
	keep := 7 * a.Period
	if keep < 24*time.Hour {
		keep = 24 * time.Hour
	}
	if err := donePeriodScript.Run(ctx, a.RDB, []string{key}, a.owner, keep.Milliseconds()).Err(); err != nil {
		return true, err
	}
	a.Log.Info("audit published", "period_beginning", events.FormatTime(begin), "events", n)
	return true, nil
}

// Publish publishes the audit events of [begin, end) without the guard,
// and returns how many.
func (a *Audit) Publish(ctx context.Context, begin, end time.Time) (int, error) {
	a.defaults()
	vols, err := a.Registry(ctx)
	if err != nil {
		return 0, err
	}
	var recs []events.Record
	total := 0
	for _, v := range vols {
		ns := Notices(v, begin, end)
		for _, n := range ns {
			rec, err := events.BuildNotice(n, a.Out.Mode)
			if err != nil {
				return 0, err
			}
			recs = append(recs, rec)
			total++
		}
		if len(recs) >= 500 {
			if err := a.Out.publish(recs); err != nil {
				return 0, err
			}
			recs = recs[:0]
		}
	}
	if err := a.Out.publish(recs); err != nil {
		return 0, err
	}
	return total, nil
}

// live reports whether a volume or snapshot status counts in an audit: not
// deleted (tombstones), not a create that failed or is under way.
func live(status string) bool {
	switch status {
	case functions.StatusDeleted, functions.StatusError, functions.StatusCreating, "":
		return false
	}
	return true
}

// createdBy reports whether a resource created at created existed before end.
func createdBy(created string, end time.Time) bool {
	if created == "" {
		return true
	}
	t, err := time.Parse(events.TimeFormat, created)
	if err != nil {
		t, err = time.Parse(time.RFC3339Nano, created)
	}
	return err != nil || t.Before(end)
}

// Notices are the audit events of one volume for [begin, end): its
// volume.exists and a snapshot.exists per snapshot, or none if it is not
// live or was created after the period.
func Notices(v *functions.Volume, begin, end time.Time) []events.Notice {
	if !live(v.Status) || !createdBy(v.CreatedAt, end) {
		return nil
	}
	b, e := events.FormatTime(begin), events.FormatTime(end)
	disc := strconv.FormatInt(begin.Unix(), 10)
	data := v.Notification()
	data.AuditPeriodBeginning, data.AuditPeriodEnding = b, e
	out := []events.Notice{{Type: events.VolumeExists, Source: "/ember/" + v.Backend, Subject: v.ID, Key: v.ID,
		Discriminator: disc, Time: end, Data: data}}
	ids := make([]string, 0, len(v.Snapshots))
	for id := range v.Snapshots {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := v.Snapshots[id]
		if s.ID == "" {
			s.ID = id
		}
		if !live(s.Status) || !createdBy(s.CreatedAt, end) {
			continue
		}
		sd := v.SnapshotNotification(s)
		sd.AuditPeriodBeginning, sd.AuditPeriodEnding = b, e
		out = append(out, events.Notice{Type: events.SnapshotExists, Source: "/ember/" + v.Backend, Subject: s.ID,
			Key: v.ID, Discriminator: disc, Time: end, Data: sd})
	}
	return out
}

// Registry reads every volume record (<prefix>:{<volume_id>}:vol), on
// every master of a Redis Cluster, sorted by id.
func (a *Audit) Registry(ctx context.Context) ([]*functions.Volume, error) {
	a.defaults()
	pattern := globEscape(a.Prefix) + ":{*}:vol"
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			keys = append(keys, it.Val())
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := a.RDB.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, a.RDB)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: scan registry: %w", err)
	}
	sort.Strings(keys)
	keys = dedupe(keys) // SCAN may return a key twice
	var vols []*functions.Volume
	for i := 0; i < len(keys); i += 500 {
		batch := keys[i:min(i+500, len(keys))]
		pipe := a.RDB.Pipeline()
		cmds := make([]*redis.StringCmd, len(batch))
		for j, k := range batch {
			cmds[j] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("audit: read registry: %w", err)
		}
		for j, c := range cmds {
			raw, err := c.Bytes()
			if err != nil {
				continue // gone since the scan
			}
			v := new(functions.Volume)
			if err := json.Unmarshal(raw, v); err != nil {
				a.Log.Warn("audit: unreadable registry record", "key", batch[j], "err", err)
				continue
			}
			if v.ID == "" {
				continue
			}
			vols = append(vols, v)
		}
	}
	return vols, nil
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, k := range s {
		if i == 0 || k != s[i-1] {
			out = append(out, k)
		}
	}
	return out
}

// globEscape quotes SCAN MATCH metacharacters.
func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

// Due publishes the period that ended at now, and the CatchUp periods
// before it, oldest first, each unless a replica has published it or is
// publishing it; it returns how many this replica published.
func (a *Audit) Due(ctx context.Context, now time.Time) (int, error) {
	a.defaults()
	last, _ := a.LastPeriod(now)
	var errs []error
	n := 0
	for k := a.CatchUp; k >= 0; k-- {
		begin := last.Add(-time.Duration(k) * a.Period)
		did, err := a.RunPeriod(ctx, begin, begin.Add(a.Period))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if did {
			n++
			if k > 0 {
				a.Log.Info("audit: made up a missed period", "period_beginning", events.FormatTime(begin))
			}
		}
	}
	return n, errors.Join(errs...)
}

// Run publishes each period once it ends (and, after an outage, the
// CatchUp periods before it that nobody published), until ctx ends. It
// checks often enough (every Period/10, at most every 30 s) to take over a
// period whose publisher died.
func (a *Audit) Run(ctx context.Context) {
	a.defaults()
	check := a.Period / 10
	if check > 30*time.Second {
		check = 30 * time.Second
	}
	if check < 100*time.Millisecond {
		check = 100 * time.Millisecond
	}
	for {
		now := a.Now()
		if _, err := a.Due(ctx, now); err != nil && ctx.Err() == nil {
			a.Log.Warn("audit", "err", err)
		}
		_, end := a.LastPeriod(now)
		// Wake at the next period's end, or sooner to take over a dead
		// replica's period. The wait is read from Now, the clock that
		// decides the periods, so that a test's clock never makes it spin.
		wait := end.Add(a.Period).Sub(a.Now())
		if wait > check {
			wait = check
		}
		if !sleepUntil(ctx, time.Now().Add(wait)) {
			return
		}
	}
}
