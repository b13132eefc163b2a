package breaker

import (
	"math"
	"testing"
	"time"
)

func TestAllocs(t *testing.T) {
	b, err := New("allocs", Settings{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func()
	}{
		{"Allow+Done(Success)", func() {
			p, _ := b.Allow()
			b.Done(p, Success, nil)
		}},
		{"Allow+Done(Neutral)", func() {
			p, _ := b.Allow()
			b.Done(p, Neutral, err503)
		}},
		{"State", func() { _ = b.State() }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", tt.name, n)
		}
	}
	// Rejections while open and counted failures do not allocate either.
	open, _ := New("open", Settings{FailureThreshold: 1})
	if n := testing.AllocsPerRun(1000, func() {
		p, _ := open.Allow()
		open.Done(p, Failure, err503)
	}); n != 0 {
		t.Errorf("Allow+Done(Failure)/rejection: %v allocs, want 0", n)
	}
	rated, _ := New("rated", Settings{FailureRateThreshold: 0.5, SlowCallDuration: time.Second, MinimumCalls: math.MaxInt})
	if n := testing.AllocsPerRun(1000, func() {
		p, _ := rated.Allow()
		rated.Done(p, Success, nil)
	}); n != 0 {
		t.Errorf("Allow+Done(Success) with rate thresholds: %v allocs, want 0", n)
	}
}

func FuzzSettingsValidate(f *testing.F) {
	f.Add(0, 0, int64(0), int64(0), int64(0), int64(0), 0.0, 0, int64(0), 0.0)
	f.Add(3, 2, int64(time.Minute), int64(30*time.Second), int64(time.Minute), int64(10*time.Second), 0.5, 10, int64(time.Second), 0.5)
	f.Add(-1, 10001, int64(-1), int64(math.MaxInt64), int64(1), int64(-5), math.NaN(), -3, int64(0), 0.7)
	f.Add(1, 1, int64(1), int64(1), int64(1), int64(1), 1.0, 1, int64(1), 1.0)
	f.Fuzz(func(t *testing.T, failures, successes int, reset, halfOpen, window, timeout int64,
		rate float64, minCalls int, slow int64, slowRate float64) {
		s := Settings{
			FailureThreshold: failures, SuccessThreshold: successes,
			ResetTimeout: time.Duration(reset), HalfOpenTimeout: time.Duration(halfOpen),
			WindowSize: time.Duration(window), Timeout: time.Duration(timeout),
			FailureRateThreshold: rate, MinimumCalls: minCalls,
			SlowCallDuration: time.Duration(slow), SlowCallRateThreshold: slowRate,
		}
		err := s.Validate()
		b, newErr := New("fuzz", s)
		if err != nil {
			if newErr == nil {
				t.Fatalf("New accepted settings Validate rejects (%v): %+v", err, s)
			}
			return
		}
		if newErr != nil {
			t.Fatalf("New rejected valid settings: %v: %+v", newErr, s)
		}
		if derr := s.WithDefaults().Validate(); derr != nil {
			t.Fatalf("WithDefaults made valid settings invalid: %v: %+v", derr, s)
		}
		eff := b.Settings()
		if eff.FailureThreshold < 1 || eff.SuccessThreshold < 1 || eff.WindowSize <= 0 || eff.Timeout <= 0 || eff.MinimumCalls < 1 {
			t.Fatalf("effective settings leave a zero: %+v", eff)
		}
		// A valid breaker works: drive it through a few calls.
		for i := range 3 {
			if p, err := b.Allow(); err == nil {
				b.Done(p, Outcome(i%3), err503)
			}
		}
		_ = b.Snapshot()
	})
}
