package drivers

import "context"

// A copy that a driver makes inside its backend (a clone, a volume from a
// snapshot) never passes through Ember, so Ember cannot count its bytes;
// only the driver's tool can tell how far it is (qemu-img convert -p).
//
// The reporter travels in the context rather than as a parameter: the
// value is scoped to one request, as context values are meant to be; it is
// optional (most drivers' copies are instant or give no figure); and it
// leaves the Driver interface, its implementations and every wrapper as
// they are. A driver that cannot report simply never calls ReportProgress.

type progressKey struct{}

// WithProgress returns ctx carrying report, which ReportProgress calls with
// the percent done (0..100) of the copy the driver is making.
func WithProgress(ctx context.Context, report func(percent int)) context.Context {
	if report == nil {
		return ctx
	}
	return context.WithValue(ctx, progressKey{}, report)
}

// ReportProgress tells ctx's reporter, if it has one, that the copy under
// way is percent done; values outside 0..100 are clamped. The reporter may
// be called from the goroutine that reads a command's output.
func ReportProgress(ctx context.Context, percent int) {
	report, _ := ctx.Value(progressKey{}).(func(int))
	if report == nil {
		return
	}
	report(min(max(percent, 0), 100))
}
