package router

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// What the reconcile sweep (router/reconcile) needs of the guard beyond the
// delivery protocol: to see without taking it whether a volume's lock is
// held, to scan the registry, and to keep a lock it took with Lock.

// Held reports whether a live owner holds the volume's lock. It only reads:
// the answer may be stale at once, so acting on a volume still needs Lock.
func (g *Guard) Held(ctx context.Context, volumeID string) (bool, error) {
	n, err := g.rdb.Exists(ctx, g.key(volumeID, "lock")).Result()
	if err != nil {
		return false, fmt.Errorf("held %s: %w", volumeID, err)
	}
	return n == 1, nil
}

// Client is the guard's Redis client and Prefix its key prefix, for a scan
// of the registry (timers.Audit.Registry reads <prefix>:{<id>}:vol).
func (g *Guard) Client() redis.UniversalClient { return g.rdb }

// Prefix is the guard's key prefix.
func (g *Guard) Prefix() string { return g.prefix }

// KeepLease renews a lock taken with Lock while its holder acts, as the
// router renews its own (keepLease): the returned context ends when the
// lease is lost or could not be renewed in time; stop ends the renewals
// and reports whether the lease was lost.
func (g *Guard) KeepLease(ctx context.Context, volumeID, lock string, since time.Time) (context.Context, func() (lost bool)) {
	return g.keepLease(ctx, volumeID, lock, since)
}
