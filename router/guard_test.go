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

// guards returns the guard over the real redis-server and, for speed
// comparisons, over miniredis (an in-process stand-in).
func guards(t testing.TB) map[string]*Guard {
	mr := miniredis.RunT(t)
	mini := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { mini.Close() })
	return map[string]*Guard{
		"redis":     NewGuard(testenv.Redis(t), "g"+testenv.Unique(), 3*time.Second, time.Hour),
		"miniredis": NewGuard(mini, "g"+testenv.Unique(), 3*time.Second, time.Hour),
	}
}

func TestGuardProtocol(t *testing.T) {
	g := guards(t)["redis"]
	ctx := context.Background()
	vol := uuid.NewString()
	req := RequestKey("t", vol, "/s", "1")
	a, err := g.Claim(ctx, vol, req, "A")
	if err != nil || a.State != Claimed || a.Token != 1 {
		t.Fatalf("first claim: %+v %v", a, err)
	}
	if b, _ := g.Claim(ctx, vol, req, "B"); b.State != Busy {
		t.Fatalf("duplicate of a live claim: %+v", b)
	}
	if b, _ := g.Claim(ctx, vol, RequestKey("t", vol, "/s", "2"), "B"); b.State != Busy {
		t.Fatalf("another request on a held volume: %+v", b)
	}
	if ok, _ := g.Renew(ctx, vol, a.Lock); !ok {
		t.Fatal("renew by the owner failed")
	}
	// The owner dies: after the lease, B takes over with a higher token.
	time.Sleep(g.Lease + 200*time.Millisecond)
	b, _ := g.Claim(ctx, vol, req, "B")
	if b.State != Claimed || b.Token != 2 {
		t.Fatalf("takeover: %+v", b)
	}
	// The stale owner wakes up: it can neither renew nor complete.
	if ok, _ := g.Renew(ctx, vol, a.Lock); ok {
		t.Fatal("stale owner renewed")
	}
	if err := g.Complete(ctx, vol, req, a.Lock, []byte(`{"results":[]}`), []byte(`{"stale":true}`)); err != ErrLeaseLost {
		t.Fatalf("stale complete: %v", err)
	}
	if err := g.Complete(ctx, vol, req, b.Lock, []byte(`{"results":[]}`), []byte(`{"id":"v"}`)); err != nil {
		t.Fatal(err)
	}
	if d, _ := g.Claim(ctx, vol, req, "C"); d.State != Done || string(d.Stored) != `{"results":[]}` {
		t.Fatalf("after complete: %+v", d)
	}
	if v, _ := g.Volume(ctx, vol); string(v) != `{"id":"v"}` {
		t.Fatalf("registry: %s", v)
	}
	// The lock was released by complete: the next request claims at once.
	if n, _ := g.Claim(ctx, vol, RequestKey("t", vol, "/s", "3"), "C"); n.State != Claimed || string(n.Volume) != `{"id":"v"}` {
		t.Fatalf("next request: %+v", n)
	}
}

// BenchmarkGuardRequest measures the Redis side of one request (claim then
// complete: two round trips) on the real redis-server, against miniredis as
// the in-process baseline of the same run.
func BenchmarkGuardRequest(b *testing.B) {
	for name, g := range guards(b) {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			calls := 0
			g.calls = func(string) { calls++ }
			vol := uuid.NewString()
			stored := []byte(`{"results":[{"id":"x","type":"volume.create.end","key":"k","headers":{},"value":"e30="}]}`)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := g.Claim(ctx, vol, RequestKey("t", vol, "/bench", uuid.NewString()), "o")
				if err != nil || c.State != Claimed {
					b.Fatal(c, err)
				}
				if err := g.Complete(ctx, vol, RequestKey("t", vol, "/bench", "x"), c.Lock, stored, []byte(`{}`)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(calls)/float64(b.N), "roundtrips/op")
		})
	}
}
