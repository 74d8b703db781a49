package drivers

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

type blockingExecutor struct {
	running, most atomic.Int64
	release       chan struct{}
	entered       chan struct{}
}

func (b *blockingExecutor) Run(ctx context.Context, cmd Command) (Output, error) {
	n := b.running.Add(1)
	for {
		m := b.most.Load()
		if n <= m || b.most.CompareAndSwap(m, n) {
			break
		}
	}
	b.entered <- struct{}{}
	<-b.release
	b.running.Add(-1)
	return Output{}, nil
}

// TestBoundedRunsAtMostNCommands: ten commands, three slots; the fourth
// waits until one ends, and a waiter whose context ends gives up.
func TestBoundedRunsAtMostNCommands(t *testing.T) {
	inner := &blockingExecutor{release: make(chan struct{}), entered: make(chan struct{}, 10)}
	ex := Bounded(inner, 3)
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = ex.Run(context.Background(), Command{Args: []string{"true"}}) }()
	}
	for i := 0; i < 3; i++ {
		<-inner.entered
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ex.Run(ctx, Command{Args: []string{"true"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter with an ended context: %v", err)
	}
	for i := 0; i < 10; i++ {
		inner.release <- struct{}{}
		if i < 7 {
			<-inner.entered
		}
	}
	wg.Wait()
	if m := inner.most.Load(); m != 3 {
		t.Fatalf("at most %d commands ran at once, want 3", m)
	}
}
