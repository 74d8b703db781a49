package kafkasub

import "sync"

// limiter counts the records a Subscriber holds, against MaxInFlight. A
// partition that finds no room waits on the channel it is given, which is
// closed when a slot frees; every waiting partition then tries again.
type limiter struct {
	mu   sync.Mutex
	n    int
	max  int
	wake chan struct{}
}

func newLimiter(max int) *limiter { return &limiter{max: max} }

// acquire takes a slot, or returns a channel closed when one may be free.
func (l *limiter) acquire() (bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n < l.max {
		l.n++
		return true, nil
	}
	return false, l.waitLocked()
}

// room reports whether a slot is free without taking it, or returns a
// channel closed when one may be.
func (l *limiter) room() (bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n < l.max {
		return true, nil
	}
	return false, l.waitLocked()
}

func (l *limiter) waitLocked() chan struct{} {
	if l.wake == nil {
		l.wake = make(chan struct{})
	}
	return l.wake
}

// release frees k slots.
func (l *limiter) release(k int) {
	if k == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n -= k
	if l.n < 0 {
		panic("kafkasub: limiter released more than it gave")
	}
	if l.wake != nil && l.n < l.max {
		close(l.wake)
		l.wake = nil
	}
}

func (l *limiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}
