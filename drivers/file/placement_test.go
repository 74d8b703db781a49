package file

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
)

// countingExecutor counts the programs run through a real LocalExecutor.
type countingExecutor struct {
	drivers.LocalExecutor
	mu   sync.Mutex
	runs map[string]int
}

func (c *countingExecutor) Run(ctx context.Context, cmd drivers.Command) (drivers.Output, error) {
	c.mu.Lock()
	c.runs[cmd.Args[0]]++
	c.mu.Unlock()
	return c.LocalExecutor.Run(ctx, cmd)
}

// TestCreatesDoNotScanTheShare: a create places the volume by df and the
// provisioned bytes of the share, which one scan (find over every volume
// file) answers for a minute, corrected by what this driver placed since;
// a stats round scans again. Before, every create scanned the whole share.
func TestCreatesDoNotScanTheShare(t *testing.T) {
	ex := &countingExecutor{runs: map[string]int{}}
	d, _ := openWith(t, "raw", ex)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := d.CreateVolume(ctx, drivers.Volume{ID: uuid.NewString(), SizeGB: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if n := ex.runs["find"]; n != 1 {
		t.Fatalf("5 creates scanned the share %d times, want once: %v", n, ex.runs)
	}
	s, err := d.GetVolumeStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ex.runs["find"] != 2 || s.TotalVolumes != 5 || s.ProvisionedCapacityGB != 5 {
		t.Fatalf("stats round: %+v, runs %v", s, ex.runs)
	}
	t.Logf("commands for 5 creates and a stats round: %v", ex.runs)
}
