package bulkhead

import (
	"context"
	"runtime"
	"testing"
)

func BenchmarkBulkheadWithResource(b *testing.B) {
	bh := mustNew(b, Settings{Size: 10})
	ctx := context.Background()
	fn := func(Handle) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := bh.WithResource(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBulkheadWithResourceParallel(b *testing.B) {
	bh := mustNew(b, Settings{Size: 2 * runtime.GOMAXPROCS(0)})
	ctx := context.Background()
	fn := func(Handle) error { return nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bh.WithResource(ctx, fn); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkBulkheadCheckoutCheckin(b *testing.B) {
	bh := mustNew(b, Settings{Size: 10})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		h, err := bh.Checkout(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := bh.Checkin(h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBulkheadRateLimited(b *testing.B) {
	bh := mustNew(b, Settings{Size: 10, RateLimit: 1e12})
	ctx := context.Background()
	fn := func(Handle) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := bh.WithResource(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBulkheadWithResourceExactHoldTimes(b *testing.B) {
	bh := mustNew(b, Settings{Size: 10}, WithExactHoldTimes())
	ctx := context.Background()
	fn := func(Handle) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := bh.WithResource(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBulkheadStats(b *testing.B) {
	bh := mustNew(b, Settings{Size: 20, Overflow: 10})
	b.ReportAllocs()
	for b.Loop() {
		_ = bh.Stats()
	}
}

// BenchmarkReferenceChannelPermit is the yardstick for the benchmarks
// above: the shape of failsafe-go's bulkhead permit (TryAcquirePermit and
// ReleasePermit behind an interface: a non-blocking send on a buffered
// channel and a receive).
func BenchmarkReferenceChannelPermit(b *testing.B) {
	var p permits = &chanPermits{make(chan struct{}, 10)}
	b.ReportAllocs()
	for b.Loop() {
		if p.TryAcquirePermit() {
			p.ReleasePermit()
		}
	}
}

func BenchmarkReferenceChannelPermitParallel(b *testing.B) {
	var p permits = &chanPermits{make(chan struct{}, 2*runtime.GOMAXPROCS(0))}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if p.TryAcquirePermit() {
				p.ReleasePermit()
			}
		}
	})
}

type permits interface {
	TryAcquirePermit() bool
	ReleasePermit()
}

type chanPermits struct{ sem chan struct{} }

func (p *chanPermits) TryAcquirePermit() bool {
	select {
	case p.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (p *chanPermits) ReleasePermit() { <-p.sem }
