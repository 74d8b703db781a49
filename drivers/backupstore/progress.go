package backupstore

import "time"

// ProgressFunc learns how many of total bytes a backup or restore has done.
// The caller turns it into <op>.progress events.
type ProgressFunc func(done, total int64)

// progressInterval is the SPEC's "at most once a second".
const progressInterval = time.Second

// progress throttles a ProgressFunc to one call a second, plus the final one.
type progress struct {
	fn    ProgressFunc
	total int64
	now   func() time.Time
	last  time.Time
}

func newProgress(fn ProgressFunc, total int64, now func() time.Time) *progress {
	return &progress{fn: fn, total: total, now: now, last: now()}
}

// update reports done if a second has passed since the last report.
func (p *progress) update(done int64) {
	if p.fn == nil {
		return
	}
	if t := p.now(); t.Sub(p.last) >= progressInterval {
		p.last = t
		p.fn(done, p.total)
	}
}

// finish reports 100%: done of done, since a volume stream may be shorter
// than the size announced at the start.
func (p *progress) finish(done int64) {
	if p.fn != nil {
		p.fn(done, done)
	}
}
