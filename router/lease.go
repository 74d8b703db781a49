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
func (g *Guard) keepLease(ctx context.Context, volumeID, lock string) (context.Context, func() (lost bool)) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		every := g.Lease / 3
		t := time.NewTicker(every)
		defer t.Stop()
		renewed := time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				rctx, rcancel := context.WithTimeout(ctx, every)
				ok, err := g.Renew(rctx, volumeID, lock)
				rcancel()
				switch {
				case err == nil && ok:
					renewed = time.Now()
				case err == nil && !ok:
					cancel(ErrLeaseLost)
					return
				case time.Since(renewed) >= g.Lease-every/2:
					// Unrenewed this long, the lock may expire before the
					// next try: stop now rather than act without it.
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
