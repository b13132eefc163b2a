package peers

import (
	"context"
	"testing"

	"github.com/failsafe-go/failsafe-go"
	fsbulkhead "github.com/failsafe-go/failsafe-go/bulkhead"
	fsbreaker "github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/sony/gobreaker/v2"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
)

// poolSize leaves every pool uncontended even in the parallel runs, which
// start GOMAXPROCS goroutines.
const poolSize = 1024

// op is one successful pass through a policy, reporting any failure.
type op func() error

// breakerOps builds, per peer, one pass of a successful call through a
// closed breaker. Each peer gets a fresh breaker per benchmark.
func breakerOps(tb testing.TB) map[string]op {
	rb, err := breaker.New("bench", breaker.Settings{})
	if err != nil {
		tb.Fatal(err)
	}
	gb := gobreaker.NewCircuitBreaker[any](gobreaker.Settings{Name: "bench"})
	fcb := fsbreaker.NewWithDefaults[any]()
	fcbExec := fsbreaker.NewWithDefaults[any]()
	exec := failsafe.With[any](fcbExec)
	succeed := func() (any, error) { return nil, nil }
	succeedRun := func() error { return nil }
	return map[string]op{
		"relay": func() error {
			p, err := rb.Allow()
			if err != nil {
				return err
			}
			rb.Done(p, breaker.Success, nil)
			return nil
		},
		"gobreaker": func() error {
			_, err := gb.Execute(succeed)
			return err
		},
		"failsafe-permit": func() error {
			if !fcb.TryAcquirePermit() {
				return fsbreaker.ErrOpen
			}
			fcb.RecordSuccess()
			return nil
		},
		"failsafe-executor": func() error {
			return exec.Run(succeedRun)
		},
	}
}

// bulkheadOps builds, per peer, one checkout and checkin of a free slot.
func bulkheadOps(tb testing.TB) map[string]op {
	rb, err := bulkhead.New("bench", bulkhead.Settings{Size: poolSize})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(rb.Close)
	fb := fsbulkhead.New[any](poolSize)
	exec := failsafe.With[any](fsbulkhead.New[any](poolSize))
	ctx := context.Background()
	work := func(bulkhead.Handle) error { return nil }
	succeedRun := func() error { return nil }
	return map[string]op{
		"relay": func() error {
			return rb.WithResource(ctx, work)
		},
		"failsafe-permit": func() error {
			if !fb.TryAcquirePermit() {
				return fsbulkhead.ErrFull
			}
			fb.ReleasePermit()
			return nil
		},
		"failsafe-executor": func() error {
			return exec.Run(succeedRun)
		},
	}
}

var (
	breakerPeers  = []string{"relay", "gobreaker", "failsafe-permit", "failsafe-executor"}
	bulkheadPeers = []string{"relay", "failsafe-permit", "failsafe-executor"}
)

func BenchmarkBreaker(b *testing.B)         { runSerial(b, breakerPeers, breakerOps) }
func BenchmarkBreakerParallel(b *testing.B) { runParallel(b, breakerPeers, breakerOps) }
func BenchmarkBulkhead(b *testing.B)        { runSerial(b, bulkheadPeers, bulkheadOps) }
func BenchmarkBulkheadParallel(b *testing.B) {
	runParallel(b, bulkheadPeers, bulkheadOps)
}

// The op is called through a func value in every peer's loop alike, so
// the indirection costs each the same.

func runSerial(b *testing.B, peers []string, build func(testing.TB) map[string]op) {
	for _, name := range peers {
		b.Run(name, func(b *testing.B) {
			f := build(b)[name]
			b.ReportAllocs()
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func runParallel(b *testing.B, peers []string, build func(testing.TB) map[string]op) {
	for _, name := range peers {
		b.Run(name, func(b *testing.B) {
			f := build(b)[name]
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := f(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestPeersSucceed runs every op a few times, so that a broken setup
// fails as a test rather than only inside a benchmark run.
func TestPeersSucceed(t *testing.T) {
	for kind, build := range map[string]func(testing.TB) map[string]op{"breaker": breakerOps, "bulkhead": bulkheadOps} {
		ops := build(t)
		for name, f := range ops {
			for range 3 {
				if err := f(); err != nil {
					t.Errorf("%s/%s: %v", kind, name, err)
				}
			}
		}
	}
	if got := len(breakerOps(t)); got != len(breakerPeers) {
		t.Errorf("%d breaker ops, %d names", got, len(breakerPeers))
	}
	if got := len(bulkheadOps(t)); got != len(bulkheadPeers) {
		t.Errorf("%d bulkhead ops, %d names", got, len(bulkheadPeers))
	}
}
