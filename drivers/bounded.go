package drivers

import (
	"context"
	"fmt"
)

// DefaultMaxCommands is how many commands one backend runs at once unless
// configured (Backend.MaxCommands): Cinder bounds each backend's volume
// manager with a pool of 20 native threads.
const DefaultMaxCommands = 20

// Bounded is an Executor that runs at most n commands of ex at a time: a
// backend's storage host is not overrun when many requests run at once.
// A command waiting for a slot gives up when its context ends.
func Bounded(ex Executor, n int) Executor {
	if n <= 0 {
		n = DefaultMaxCommands
	}
	return &bounded{ex: ex, slots: make(chan struct{}, n)}
}

type bounded struct {
	ex    Executor
	slots chan struct{}
}

func (b *bounded) Run(ctx context.Context, cmd Command) (Output, error) {
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return Output{}, &CommandError{Args: cmd.Args, ExitCode: -1,
			Err: fmt.Errorf("waiting for one of the backend's %d command slots: %w", cap(b.slots), ctx.Err())}
	}
	defer func() { <-b.slots }()
	return b.ex.Run(ctx, cmd)
}
