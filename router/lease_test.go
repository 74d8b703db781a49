package router

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/internal/testenv"
)

// TestLeaseKeeperCancelsWhenTheLockIsTakenOver: another owner holds the
// lock now (our lease expired while we were stalled, and it claimed): the
// running work is cancelled at the next renewal, and stop reports the loss.
func TestLeaseKeeperCancelsWhenTheLockIsTakenOver(t *testing.T) {
	g := NewGuard(testenv.Redis(t), "l"+testenv.Unique(), 600*time.Millisecond, time.Hour)
	vol := uuid.NewString()
	c, err := g.Claim(context.Background(), vol, RequestKey("t", vol, "/s", "1"), "A")
	if err != nil || c.State != Claimed {
		t.Fatalf("claim: %+v %v", c, err)
	}
	ctx, stop := g.keepLease(context.Background(), vol, c.Lock, c.At)
	// Renewals keep it for several leases.
	select {
	case <-ctx.Done():
		t.Fatal("lease lost while it was being renewed")
	case <-time.After(1500 * time.Millisecond):
	}
	// The takeover: the lock now holds another owner's value.
	if err := g.rdb.Set(context.Background(), g.key(vol, "lock"), "B|99|x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("work not cancelled after the lock was taken over")
	}
	if !stop() {
		t.Fatal("stop did not report the lost lease")
	}
	// Our stale token cannot complete.
	if err := g.Complete(context.Background(), vol, RequestKey("t", vol, "/s", "1"), c.Lock, []byte("{}"), nil); err != ErrLeaseLost {
		t.Fatalf("complete with a stale token: %v", err)
	}
}

// TestLeaseKeeperCancelsWhenRedisIsGone: renewals fail (Redis is away); the
// work is cancelled before the lock could expire unrenewed, rather than go
// on without it. miniredis is the stand-in here: it can be closed at will.
func TestLeaseKeeperCancelsWhenRedisIsGone(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	lease := 900 * time.Millisecond
	g := NewGuard(rdb, "l", lease, time.Hour)
	c, err := g.Claim(context.Background(), "v", "r", "A")
	if err != nil || c.State != Claimed {
		t.Fatalf("claim: %+v %v", c, err)
	}
	ctx, stop := g.keepLease(context.Background(), "v", c.Lock, c.At)
	began := c.At
	mr.Close()
	select {
	case <-ctx.Done():
	case <-time.After(3 * lease):
		t.Fatal("work went on without a renewable lease")
	}
	if waited := time.Since(began); waited > lease {
		t.Fatalf("cancelled after %s, later than the lease of %s", waited, lease)
	}
	if !stop() {
		t.Fatal("stop did not report the lost lease")
	}
}
