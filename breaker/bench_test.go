package breaker

import (
	"context"
	"testing"
)

// BenchmarkBreakerCall is the relay's path: a closed breaker, a successful
// call, through Allow and Done.
func BenchmarkBreakerCall(b *testing.B) {
	br, _ := New("bench", Settings{})
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		br.Done(p, Success, nil)
	}
}

func BenchmarkBreakerCallParallel(b *testing.B) {
	br, _ := New("bench", Settings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := br.Allow()
			if err != nil {
				// Not Fatal: FailNow must run on the benchmark's own goroutine.
				b.Error(err)
				return
			}
			br.Done(p, Success, nil)
		}
	})
}

// BenchmarkBreakerCallFn measures Call, which pays for the timeout context
// on every call.
func BenchmarkBreakerCallFn(b *testing.B) {
	br, _ := New("bench", Settings{})
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Call(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBreakerFailure reports failures, each counted (the lock, the
// clock, the ring) but none opening the breaker: with a 1ns window no two
// fall within it.
func BenchmarkBreakerFailure(b *testing.B) {
	br, _ := New("bench", Settings{WindowSize: 1})
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		br.Done(p, Failure, err503)
	}
}

// BenchmarkBreakerRejectOpen is the cost of being turned away while open.
func BenchmarkBreakerRejectOpen(b *testing.B) {
	br, _ := New("bench", Settings{})
	br.ForceOpen()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Allow(); err == nil {
			b.Fatal("allowed while open")
		}
	}
}

// BenchmarkBreakerCallRated is the closed path with both rate thresholds
// on: the clock twice and the lock once per call.
func BenchmarkBreakerCallRated(b *testing.B) {
	br, _ := New("bench", Settings{FailureRateThreshold: 0.5, SlowCallDuration: 1 << 40})
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		br.Done(p, Success, nil)
	}
}
