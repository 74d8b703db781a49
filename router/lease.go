package router

import (
	"context"
	"time"
)

// keepLease renews the volume lock every lease/3 while the driver runs. The
// returned context is cancelled when the lease is lost (the lock now holds
// another token) or cannot be renewed before it would expire (Redis is
// gone): exec.CommandContext then kills the running command, and the
// request stops before publishing. stop ends the renewals and reports
// whether the lease was lost.
//
// since is when the lock was taken (Claim.At): the first deadline counts
// from there, not from now, for publishing .start may have taken a while.
func (g *Guard) keepLease(ctx context.Context, volumeID, lock string, since time.Time) (context.Context, func() (lost bool)) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		every := g.Lease / 3
		t := time.NewTicker(every)
		defer t.Stop()
		renewed := since
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				// The lock expires Lease after the last renewal that took
				// effect; stop acting a margin before that, however the
				// renewal fails (refused at once, or hanging).
				deadline := renewed.Add(g.Lease - every/2)
				rctx, rcancel := context.WithDeadline(ctx, deadline)
				tried := time.Now()
				ok, err := g.Renew(rctx, volumeID, lock)
				rcancel()
				switch {
				case err == nil && ok:
					renewed = tried // PEXPIRE ran after this: a safe lower bound
				case err == nil && !ok:
					cancel(ErrLeaseLost)
					return
				case !time.Now().Add(every).Before(deadline):
					// The next try would come too late: the lock may expire
					// unrenewed before it. Stop now rather than act without it.
					cancel(ErrLeaseLost)
					return
				}
			}
		}
	}()
	return ctx, func() bool {
		close(done)
		<-finished
		lost := context.Cause(ctx) == ErrLeaseLost
		cancel(nil)
		return lost
	}
}
