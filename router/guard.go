package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Guard keeps delivery state in Redis (DELIVERY.md): the per-volume lease
// lock with its fencing counter, the two-phase idempotency record of each
// request, and the volume registry. Every key of a volume carries its id as
// a hash tag, so each script touches one Redis Cluster slot, and each step
// of a request is one round trip.
type Guard struct {
	rdb    redis.UniversalClient
	prefix string
	// Lease is how long a lock (and the claim it carries) lives unrenewed.
	Lease time.Duration
	// DoneTTL is how long a completed request's results are kept for
	// redeliveries and duplicates.
	DoneTTL time.Duration
	// calls counts round trips by step, for metrics and benchmarks.
	calls func(step string)
}

// NewGuard returns a guard over rdb with keys under prefix (default "ember").
func NewGuard(rdb redis.UniversalClient, prefix string, lease, doneTTL time.Duration) *Guard {
	if prefix == "" {
		prefix = "ember"
	}
	return &Guard{rdb: rdb, prefix: prefix, Lease: lease, DoneTTL: doneTTL, calls: func(string) {}}
}

func (g *Guard) key(volumeID, suffix string) string {
	return g.prefix + ":{" + volumeID + "}:" + suffix
}

// RequestKey names a request's idempotency record among its volume's keys.
// A CloudEvent's identity is its (source, id); the key adds the input type
// and the volume, so that a request of another type or for another volume
// that reuses a (source, id), by accident or on purpose, is never answered
// with a stranger's stored results. A reuse of the same type and volume
// with another payload is caught by the stored fingerprint (see stored).
func RequestKey(typ, volumeID, source, id string) string {
	h := sha256.Sum256([]byte(typ + "\x00" + volumeID + "\x00" + source + "\x00" + id))
	return hex.EncodeToString(h[:16])
}

// ClaimState is what a claim found.
type ClaimState int

const (
	// Claimed: the lock is ours with a fresh token; run the request.
	Claimed ClaimState = iota
	// Done: the request completed before; publish its stored results.
	Done
	// Busy: a live owner holds the volume (this request or another); retry later.
	Busy
)

// Claim is the outcome of a claim.
type Claim struct {
	State ClaimState
	// Lock is the value that proves ownership (owner|token|request) to
	// Renew, Complete and Release.
	Lock  string
	Token int64
	// Volume is the registry record as stored (nil if none).
	Volume []byte
	// Stored is the completed request's record (Done only).
	Stored []byte
	// At is when the claim was asked for: the lock expires no earlier than
	// At + Lease unless renewed.
	At time.Time
}

// KEYS: lock, fence, req, vol. ARGV: owner, request key, lease ms.
var claimScript = redis.NewScript(`
local done = redis.call('GET', KEYS[3])
if done then return {'done', done} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'busy'} end
local token = redis.call('INCR', KEYS[2])
local lock = ARGV[1] .. '|' .. token .. '|' .. ARGV[2]
redis.call('SET', KEYS[1], lock, 'PX', ARGV[3])
local vol = redis.call('GET', KEYS[4])
if not vol then vol = '' end
return {'claimed', lock, token, vol}
`)

// Claim takes the volume's lock for request reqKey, unless the request is
// done already or the volume is held by a live owner. A dead owner's lock
// expires after its lease, and the next claim takes over with a new token.
func (g *Guard) Claim(ctx context.Context, volumeID, reqKey, owner string) (Claim, error) {
	g.calls("claim")
	at := time.Now()
	keys := []string{g.key(volumeID, "lock"), g.key(volumeID, "fence"), g.key(volumeID, "req:"+reqKey), g.key(volumeID, "vol")}
	res, err := claimScript.Run(ctx, g.rdb, keys, owner, reqKey, g.Lease.Milliseconds()).Slice()
	if err != nil {
		return Claim{}, fmt.Errorf("claim %s: %w", volumeID, err)
	}
	if res[0] == "done" {
		return Claim{State: Done, Stored: []byte(res[1].(string))}, nil
	}
	return claimed("claim", volumeID, res, at)
}

// claimed reads the reply of the claim and lock scripts: {'busy'} or
// {'claimed', lock, token, volume record (empty if none)}.
func claimed(op, volumeID string, res []any, at time.Time) (Claim, error) {
	switch res[0] {
	case "busy":
		return Claim{State: Busy}, nil
	case "claimed":
		c := Claim{State: Claimed, Lock: res[1].(string), Token: res[2].(int64), At: at}
		if v := res[3].(string); v != "" {
			c.Volume = []byte(v)
		}
		return c, nil
	}
	return Claim{}, fmt.Errorf("%s %s: unexpected reply %v", op, volumeID, res)
}

// KEYS: lock. ARGV: lock value, lease ms.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// Renew extends the lease if lock still holds it; false means the lease
// was lost (expired and perhaps taken over).
func (g *Guard) Renew(ctx context.Context, volumeID, lock string) (bool, error) {
	g.calls("renew")
	n, err := renewScript.Run(ctx, g.rdb, []string{g.key(volumeID, "lock")}, lock, g.Lease.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew %s: %w", volumeID, err)
	}
	return n == 1, nil
}

// KEYS: lock, req, vol. ARGV: lock value, stored record, ttl ms, volume record (empty = unchanged).
var completeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4]) end
redis.call('DEL', KEYS[1])
return 1
`)

// ErrLeaseLost means the lock no longer holds this owner's token: another
// owner may have taken over, and this one must not publish.
var ErrLeaseLost = errors.New("lease lost: the volume lock is no longer held with this fencing token")

// Complete is the commit point: only while lock still holds our token, it
// stores the request's results, replaces the volume record (when volume is
// not nil) and releases the lock, in one step.
func (g *Guard) Complete(ctx context.Context, volumeID, reqKey, lock string, stored, volume []byte) error {
	g.calls("complete")
	keys := []string{g.key(volumeID, "lock"), g.key(volumeID, "req:"+reqKey), g.key(volumeID, "vol")}
	n, err := completeScript.Run(ctx, g.rdb, keys, lock, stored, g.DoneTTL.Milliseconds(), volume).Int()
	if err != nil {
		return fmt.Errorf("complete %s: %w", volumeID, err)
	}
	if n != 1 {
		return ErrLeaseLost
	}
	return nil
}

// KEYS: lock. ARGV: lock value.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Release gives the lock up without completing (the request will be
// redelivered and claimed again).
func (g *Guard) Release(ctx context.Context, volumeID, lock string) error {
	g.calls("release")
	return releaseScript.Run(ctx, g.rdb, []string{g.key(volumeID, "lock")}, lock).Err()
}

// Volume reads a volume's registry record (nil if none).
func (g *Guard) Volume(ctx context.Context, volumeID string) ([]byte, error) {
	b, err := g.rdb.Get(ctx, g.key(volumeID, "vol")).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

// KEYS: lock, fence, vol. ARGV: owner, tag, lease ms.
var lockScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {'busy'} end
local token = redis.call('INCR', KEYS[2])
local lock = ARGV[1] .. '|' .. token .. '|' .. ARGV[2]
redis.call('SET', KEYS[1], lock, 'PX', ARGV[3])
local vol = redis.call('GET', KEYS[3])
if not vol then vol = '' end
return {'claimed', lock, token, vol}
`)

// Lock takes another volume's lock for a request that reads it (the source
// of a create from a snapshot or a clone, SPEC §4), with its own fencing
// token. It carries no idempotency record: that lives with the request's
// own volume. State is Claimed or Busy.
func (g *Guard) Lock(ctx context.Context, volumeID, reqKey, owner string) (Claim, error) {
	g.calls("lock")
	at := time.Now()
	keys := []string{g.key(volumeID, "lock"), g.key(volumeID, "fence"), g.key(volumeID, "vol")}
	res, err := lockScript.Run(ctx, g.rdb, keys, owner, reqKey, g.Lease.Milliseconds()).Slice()
	if err != nil {
		return Claim{}, fmt.Errorf("lock %s: %w", volumeID, err)
	}
	return claimed("lock", volumeID, res, at)
}

// KEYS: lock, vol. ARGV: lock value, volume record.
var saveScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
`)

// Save replaces the volume's registry record mid-request, only while lock
// still holds our token: the checkpoint of a multi-step operation (a
// migration switches backends before it deletes the source copy), so that
// a re-run after a crash knows which steps are done.
func (g *Guard) Save(ctx context.Context, volumeID, lock string, volume []byte) error {
	g.calls("save")
	n, err := saveScript.Run(ctx, g.rdb, []string{g.key(volumeID, "lock"), g.key(volumeID, "vol")}, lock, volume).Int()
	if err != nil {
		return fmt.Errorf("save %s: %w", volumeID, err)
	}
	if n != 1 {
		return ErrLeaseLost
	}
	return nil
}

// indexKey holds the volume a snapshot or backup id belongs to; hash-tagged
// by the id, so it has its own slot.
func (g *Guard) indexKey(kind, id string) string {
	return g.prefix + ":{" + kind + ":" + id + "}:volume"
}

// KEYS: index. ARGV: volume id.
var bindScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// Bind records that snapshot or backup id belongs to volumeID unless it is
// bound already, and returns the volume it is bound to (functions.Index).
// A binding is never removed: ids are not reused, as volume ids are not.
func (g *Guard) Bind(ctx context.Context, kind, id, volumeID string) (string, error) {
	g.calls("bind")
	owner, err := bindScript.Run(ctx, g.rdb, []string{g.indexKey(kind, id)}, volumeID).Text()
	if err != nil {
		return "", fmt.Errorf("bind %s %s: %w", kind, id, err)
	}
	return owner, nil
}

// Lookup returns the volume a snapshot or backup id is bound to, "" if none.
func (g *Guard) Lookup(ctx context.Context, kind, id string) (string, error) {
	v, err := g.rdb.Get(ctx, g.indexKey(kind, id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}
