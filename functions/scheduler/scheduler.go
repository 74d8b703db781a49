// Package scheduler places new volumes on backends (SPEC §4 scheduling), as
// Cinder's filter scheduler does with its CapacityFilter and CapacityWeigher,
// from the capacity stats that the stats timer keeps in Redis.
//
// Redis keys, each backend's under its own hash tag so that every script
// touches one Redis Cluster slot:
//
//	<prefix>:{backend:<name>}:stats   hash: stats (drivers.Stats JSON), at (ms, the
//	                                   backend slot's clock when the stats call began), ver
//	<prefix>:{backend:<name>}:claims  hash: volume id -> "<size_gb>:<claimed at ms>"
//	<prefix>:{<volume_id>}:sched      the backend a volume was placed on (sticky)
//
// Stats lag: between two stats runs a backend's figures do not show the
// volumes placed on it since. Each placement therefore records a claim
// (volume id, size) on the chosen backend, and Pick counts the claims made
// since the backend's latest stats as consumed (as Cinder's
// HostState.consume_from_volume does in memory): provisioned space always,
// free space on thick backends. Claims older than the
// latest stats stop counting and are pruned when stats are stored. A claim
// is made with an optimistic check: the claim script succeeds only if the
// backend's version (bumped by every claim and every stats write) is the one
// the decision was made on; otherwise Pick reads again and decides again.
// So concurrent creates see each other's claims and spread as the weigher
// says, and none is placed on a backend that the claims before it filled.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/functions"
)

// Defaults.
const (
	DefaultStaleAfter = 3 * time.Minute // three stats intervals of 60 s
	DefaultStickyTTL  = 7 * 24 * time.Hour
	maxAttempts       = 64
)

// Config configures a Scheduler.
type Config struct {
	// Prefix is the Redis key prefix (default "ember"), as the guard's.
	Prefix string
	// StaleAfter: stats older than this exclude their backend.
	StaleAfter time.Duration
	// StickyTTL is how long a placement is remembered for a re-run create.
	StickyTTL time.Duration
}

// Scheduler implements functions.Scheduler on Redis.
type Scheduler struct {
	rdb     redis.UniversalClient
	cfg     Config
	refresh func(ctx context.Context, backend string) error
}

// OnMissingStats sets how the scheduler takes a backend's stats itself when
// it finds none in Redis (a Redis that restarted empty, a backend just
// added): router/timers' Stats.Backend, which stores them as a stats round
// does. Without it, or while the refresh brings nothing, such a backend is
// dropped; when every candidate lacks stats the create is retried (a
// transient error) rather than refused: nothing says the volume cannot fit.
// Set it before the first Pick.
func (s *Scheduler) OnMissingStats(refresh func(ctx context.Context, backend string) error) {
	s.refresh = refresh
}

var _ functions.Scheduler = (*Scheduler)(nil)

// New returns a scheduler over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Scheduler {
	if cfg.Prefix == "" {
		cfg.Prefix = "ember"
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	if cfg.StickyTTL <= 0 {
		cfg.StickyTTL = DefaultStickyTTL
	}
	return &Scheduler{rdb: rdb, cfg: cfg}
}

// StaleAfter is the age past which stats exclude their backend.
func (s *Scheduler) StaleAfter() time.Duration { return s.cfg.StaleAfter }

func (s *Scheduler) backendKey(name, suffix string) string {
	return s.cfg.Prefix + ":{backend:" + name + "}:" + suffix
}

func (s *Scheduler) stickyKey(volumeID string) string {
	return s.cfg.Prefix + ":{" + volumeID + "}:sched"
}

// KEYS: stats.
var clockScript = redis.NewScript(`
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`)

// Clock returns the time of the Redis node that holds the backend's keys.
// Stats times, claim times and staleness all use this one clock, so that
// replicas with skewed clocks agree on what is stale and which claims count.
func (s *Scheduler) Clock(ctx context.Context, backend string) (time.Time, error) {
	ms, err := clockScript.Run(ctx, s.rdb, []string{s.backendKey(backend, "stats")}).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("scheduler clock %s: %w", backend, err)
	}
	return time.UnixMilli(ms), nil
}

// KEYS: stats, claims. ARGV: stats JSON, at ms.
var storeScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'at') or '0')
local at = tonumber(ARGV[2])
if at < cur then return 0 end
redis.call('HSET', KEYS[1], 'stats', ARGV[1], 'at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
local c = redis.call('HGETALL', KEYS[2])
for i = 1, #c, 2 do
  local cat = tonumber(string.match(c[i + 1], ':(%d+)$') or '0')
  if cat < at then redis.call('HDEL', KEYS[2], c[i]) end
end
return 1
`)

// StoreStats records a backend's stats taken at at (the Clock reading
// before the stats call began). Claims made before at are reflected in the
// stats and stop counting. Older stats never replace newer ones; the
// result says whether these were stored.
func (s *Scheduler) StoreStats(ctx context.Context, backend string, st drivers.Stats, at time.Time) (bool, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return false, err
	}
	keys := []string{s.backendKey(backend, "stats"), s.backendKey(backend, "claims")}
	n, err := storeScript.Run(ctx, s.rdb, keys, raw, at.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("store stats %s: %w", backend, err)
	}
	return n == 1, nil
}

// KEYS: stats, claims. ARGV: volume id (its own claim is not counted).
var readScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'stats', 'at', 'ver')
local at = tonumber(s[2] or '0')
local sum, n = 0, 0
local c = redis.call('HGETALL', KEYS[2])
for i = 1, #c, 2 do
  if c[i] ~= ARGV[1] then
    local size, cat = string.match(c[i + 1], '^(%d+):(%d+)$')
    if size and tonumber(cat) >= at then sum = sum + tonumber(size); n = n + 1 end
  end
end
return {s[1] or '', tostring(at), s[3] or '0', tostring(now), tostring(sum), tostring(n)}
`)

// View is what Pick knows of a backend: its latest stats and the claims
// made on it since.
type View struct {
	Backend string
	// Stats are the latest stored stats (nil if none).
	Stats *drivers.Stats
	// At is when they were taken; Age how old they are by the Redis clock.
	At  time.Time
	Age time.Duration
	// ClaimedGB and Claims are the claims since the stats (not counting the
	// volume being placed).
	ClaimedGB int
	Claims    int
	// at is the stats time as Redis holds it: a claim holds only on these
	// stats.
	at string
}

// Read returns a backend's view, as Pick would see it for volumeID.
func (s *Scheduler) Read(ctx context.Context, backend, volumeID string) (View, error) {
	keys := []string{s.backendKey(backend, "stats"), s.backendKey(backend, "claims")}
	res, err := readScript.Run(ctx, s.rdb, keys, volumeID).StringSlice()
	if err != nil {
		return View{}, fmt.Errorf("read stats %s: %w", backend, err)
	}
	v := View{Backend: backend, at: res[1]}
	at, _ := strconv.ParseInt(res[1], 10, 64)
	now, _ := strconv.ParseInt(res[3], 10, 64)
	v.ClaimedGB, _ = strconv.Atoi(res[4])
	v.Claims, _ = strconv.Atoi(res[5])
	if res[0] != "" {
		var st drivers.Stats
		if err := json.Unmarshal([]byte(res[0]), &st); err != nil {
			return View{}, fmt.Errorf("stats of %s: %w", backend, err)
		}
		v.Stats = &st
		v.At = time.UnixMilli(at)
		v.Age = time.Duration(now-at) * time.Millisecond
	}
	return v, nil
}

// KEYS: stats, claims. ARGV: volume id, size GB, the stats time the
// decision read, the most GB the other claims since may total.
//
// The claim holds if the stats are the ones read and the claims made since
// (by concurrent creates) still leave room for this one: many creates
// placed at once on one backend each succeed at the first try while there
// is room, instead of all but one retrying on every concurrent claim.
var claimScript = redis.NewScript(`
local at = redis.call('HGET', KEYS[1], 'at') or '0'
if tonumber(at) ~= tonumber(ARGV[3]) then return 0 end
local sum = 0
local c = redis.call('HGETALL', KEYS[2])
for i = 1, #c, 2 do
  if c[i] ~= ARGV[1] then
    local size, cat = string.match(c[i + 1], '^(%d+):(%d+)$')
    if size and tonumber(cat) >= tonumber(at) then sum = sum + tonumber(size) end
  end
end
if sum > tonumber(ARGV[4]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. string.format('%d', now))
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return 1
`)

// roomFor is the most GB the claims on v (other than the volume being
// placed) may total for sizeGB still to pass Filter: the claim script's
// bound. Filter only gets stricter as claims grow.
func roomFor(v View, sizeGB int) int {
	if Filter(v, sizeGB) != "" {
		return -1
	}
	lo, hi := v.ClaimedGB, v.ClaimedGB+1
	for hi < 1<<30 {
		w := v
		w.ClaimedGB = hi
		if Filter(w, sizeGB) != "" {
			break
		}
		lo, hi = hi, hi*2
	}
	for lo+1 < hi { // Filter passes at lo, fails at hi
		mid := (lo + hi) / 2
		w := v
		w.ClaimedGB = mid
		if Filter(w, sizeGB) == "" {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// Effective figures of a backend: its stats less what was claimed since.
type capacity struct {
	total, free, provisioned float64
	reserved                 float64 // GB kept free: floor(total × reserved_percentage / 100)
	thin                     bool
	ratio                    float64
}

func effective(v View) capacity {
	st := v.Stats
	c := capacity{
		total: st.TotalCapacityGB, free: st.FreeCapacityGB,
		provisioned: st.ProvisionedCapacityGB + float64(v.ClaimedGB),
		reserved:    math.Floor(st.TotalCapacityGB * float64(st.ReservedPercentage) / 100),
		ratio:       st.MaxOverSubscriptionRatio,
	}
	// Cinder: thin is the default provisioning type, used where the backend
	// supports it with a usable ratio.
	c.thin = st.ThinProvisioningSupport && st.MaxOverSubscriptionRatio >= 1
	// A claimed thick volume takes its size from the free space at once; a
	// thin one only from the provisioned (over-subscribable) space, as a
	// new sparse volume does. (Cinder's consume_from_volume takes it from
	// both, which refuses thin creates beyond the physical free space
	// until the next stats.)
	if !c.thin {
		c.free -= float64(v.ClaimedGB)
	}
	return c
}

// Filter is Cinder's CapacityFilter: "" if the backend can take sizeGB,
// else why not.
func Filter(v View, sizeGB int) string {
	st := v.Stats
	req := float64(sizeGB)
	if st.TotalCapacityGB <= 0 {
		return "reports no capacity (total 0 GB)"
	}
	c := effective(v)
	freeAfter := c.free - c.reserved
	// claimed says how claims changed a stats figure.
	claimed := func(stat float64, op string) string {
		if v.ClaimedGB == 0 {
			return ""
		}
		return fmt.Sprintf(" (%s GB in its stats %s %d GB claimed by %d creates since)", gb(stat), op, v.ClaimedGB, v.Claims)
	}
	if c.thin {
		if c.provisioned+req > c.total*c.ratio {
			return fmt.Sprintf("provisioned %s GB%s + %d GB requested exceeds %s GB total × max_over_subscription_ratio %s",
				gb(c.provisioned), claimed(st.ProvisionedCapacityGB, "plus"), sizeGB, gb(c.total), gb(c.ratio))
		}
		if freeAfter*c.ratio < req {
			return fmt.Sprintf("free %s GB%s after reserving %d%% (%s GB) × max_over_subscription_ratio %s is less than %d GB requested",
				gb(c.free), "", st.ReservedPercentage, gb(c.reserved), gb(c.ratio), sizeGB)
		}
		return ""
	}
	if freeAfter < req {
		return fmt.Sprintf("free %s GB%s after reserving %d%% (%s GB) is less than %d GB requested",
			gb(c.free), claimed(st.FreeCapacityGB, "less"), st.ReservedPercentage, gb(c.reserved), sizeGB)
	}
	return ""
}

// Weight is Cinder's CapacityWeigher: the virtual free capacity, for thin
// backends total × ratio − provisioned − reserve, else free − reserve.
func Weight(v View) float64 {
	c := effective(v)
	if c.thin {
		return c.total*c.ratio - c.provisioned - c.reserved
	}
	return c.free - c.reserved
}

func gb(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Pick places p on one of its candidates (functions.Scheduler). A second
// Pick for the same volume id returns the first answer.
func (s *Scheduler) Pick(ctx context.Context, p functions.Placement) (string, error) {
	sticky := s.stickyKey(p.VolumeID)
	prev, err := s.rdb.Get(ctx, sticky).Result()
	switch {
	case err == nil:
		return prev, nil
	case !errors.Is(err, redis.Nil):
		return "", fmt.Errorf("scheduler: %w", err)
	}
	if len(p.Candidates) == 0 {
		return "", &functions.Failure{Code: functions.CodeNoValidBackend, Message: "no candidate backends"}
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		best, why, unknown, err := s.choose(ctx, p)
		if err != nil {
			return "", err
		}
		if best == nil && unknown {
			return "", drivers.Errorf(drivers.KindUnavailable, "scheduler", "no capacity stats yet for any of %s",
				strings.Join(p.Candidates, ", "))
		}
		if best == nil {
			return "", &functions.Failure{Code: functions.CodeNoValidBackend,
				Message: fmt.Sprintf("no backend can hold %d GB: %s", p.SizeGB, strings.Join(why, "; "))}
		}
		keys := []string{s.backendKey(best.Backend, "stats"), s.backendKey(best.Backend, "claims")}
		ok, err := claimScript.Run(ctx, s.rdb, keys, p.VolumeID, p.SizeGB, best.at, roomFor(*best, p.SizeGB)).Int()
		if err != nil {
			return "", fmt.Errorf("scheduler claim on %s: %w", best.Backend, err)
		}
		if ok == 0 {
			// New stats arrived, or concurrent creates took the room since
			// we read: decide again on the new figures.
			continue
		}
		set, err := s.rdb.SetNX(ctx, sticky, best.Backend, s.cfg.StickyTTL).Result()
		if err != nil {
			return "", fmt.Errorf("scheduler: %w", err)
		}
		if !set {
			// A concurrent Pick of the same volume won: its answer stands.
			// Ours is withdrawn (the volume's claim on the winner counts).
			prev, err := s.rdb.Get(ctx, sticky).Result()
			if err != nil {
				return "", fmt.Errorf("scheduler: %w", err)
			}
			if prev != best.Backend {
				s.rdb.HDel(ctx, s.backendKey(best.Backend, "claims"), p.VolumeID)
			}
			return prev, nil
		}
		return best.Backend, nil
	}
	return "", fmt.Errorf("scheduler: %d placement attempts for volume %s lost to concurrent claims", maxAttempts, p.VolumeID)
}

// choose reads every candidate and returns the best that fits, or why
// each one was dropped; unknown reports that every candidate was dropped
// for want of stats.
func (s *Scheduler) choose(ctx context.Context, p functions.Placement) (best *View, why []string, unknown bool, err error) {
	cands := append([]string(nil), p.Candidates...)
	sort.Strings(cands)
	var fit []View
	missing := 0
	for _, name := range cands {
		v, err := s.Read(ctx, name, p.VolumeID)
		if err != nil {
			return nil, nil, false, err
		}
		note := ""
		if v.Stats == nil && s.refresh != nil {
			if rerr := s.refresh(ctx, name); rerr != nil {
				note = " (" + rerr.Error() + ")"
			} else if v, err = s.Read(ctx, name, p.VolumeID); err != nil {
				return nil, nil, false, err
			}
		}
		switch {
		case v.Stats == nil:
			missing++
			why = append(why, name+": no capacity stats yet"+note)
		case v.Age > s.cfg.StaleAfter:
			why = append(why, fmt.Sprintf("%s: stats are stale (taken %s ago, stale after %s)", name,
				v.Age.Truncate(time.Second), s.cfg.StaleAfter))
		default:
			if r := Filter(v, p.SizeGB); r != "" {
				why = append(why, name+": "+r)
				continue
			}
			fit = append(fit, v)
		}
	}
	if len(fit) == 0 {
		return nil, why, missing == len(cands), nil
	}
	// Most virtual free space first; ties go to the first name.
	sort.SliceStable(fit, func(i, j int) bool { return Weight(fit[i]) > Weight(fit[j]) })
	return &fit[0], nil, false, nil
}

// Forget drops a volume's placement and claim (for a create that was
// refused before it used the space). Not needed for correctness: a claim
// stops counting at the backend's next stats.
func (s *Scheduler) Forget(ctx context.Context, volumeID string) error {
	backend, err := s.rdb.Get(ctx, s.stickyKey(volumeID)).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.rdb.HDel(ctx, s.backendKey(backend, "claims"), volumeID).Err(); err != nil {
		return err
	}
	return s.rdb.Del(ctx, s.stickyKey(volumeID)).Err()
}
