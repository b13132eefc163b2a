package breaker

import (
	"testing"
	"time"
)

// call is one call for the rate tests: how long it takes on the fake
// clock, its outcome, and how long to wait before the next one.
type call struct {
	took    time.Duration
	outcome Outcome
	gap     time.Duration
}

func runCalls(t *testing.T, b *Breaker, fc interface{ Advance(time.Duration) time.Time }, calls []call) {
	t.Helper()
	for i, c := range calls {
		p, err := b.Allow()
		if err != nil {
			t.Fatalf("call %d: Allow: %v", i, err)
		}
		fc.Advance(c.took)
		b.Done(p, c.outcome, err503)
		fc.Advance(c.gap)
	}
}

func repeat(n int, c call) []call {
	out := make([]call, n)
	for i := range out {
		out[i] = c
	}
	return out
}

func TestFailureRate(t *testing.T) {
	s := Settings{FailureThreshold: 100, FailureRateThreshold: 0.5, MinimumCalls: 8, WindowSize: time.Minute}
	ok, bad := call{outcome: Success}, call{outcome: Failure}
	tests := []struct {
		name   string
		calls  []call
		want   State
		reason string
		snap   Snapshot // Calls, FailureCount, FailureRate checked
	}{
		{
			name:  "below minimum_calls it is not judged",
			calls: repeat(7, bad),
			want:  Closed,
			snap:  Snapshot{Calls: 7, FailureCount: 7, FailureRate: 1},
		},
		{
			name:   "at minimum_calls and at the threshold it opens",
			calls:  append(repeat(4, ok), repeat(4, bad)...),
			want:   Open,
			reason: "closed>open: failure rate 50% over 8 calls within 60s (threshold 50%)",
			snap:   Snapshot{Calls: 8, FailureCount: 4, FailureRate: 0.5},
		},
		{
			name:   "the reason rounds the rate",
			calls:  append(repeat(3, ok), repeat(5, bad)...),
			want:   Open,
			reason: "closed>open: failure rate 62% over 8 calls within 60s (threshold 50%)",
			snap:   Snapshot{Calls: 8, FailureCount: 5, FailureRate: 0.625},
		},
		{
			name:  "below the threshold stays closed",
			calls: append(repeat(9, ok), repeat(8, bad)...),
			want:  Closed,
			snap:  Snapshot{Calls: 17, FailureCount: 8, FailureRate: 8.0 / 17},
		},
		{
			name:  "neutral calls are not calls",
			calls: append(repeat(20, call{outcome: Neutral}), repeat(7, bad)...),
			want:  Closed,
			snap:  Snapshot{Calls: 7, FailureCount: 7, FailureRate: 1},
		},
		{
			name: "calls older than the window are forgotten",
			calls: append(append(repeat(4, ok), call{outcome: Failure, gap: 61 * time.Second}),
				repeat(7, bad)...),
			want: Closed,
			snap: Snapshot{Calls: 7, FailureCount: 7, FailureRate: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, s)
			runCalls(t, b, fc, tt.calls)
			snap := b.Snapshot()
			if snap.State != tt.want {
				t.Fatalf("state %v, want %v", snap.State, tt.want)
			}
			if snap.Calls != tt.snap.Calls || snap.FailureCount != tt.snap.FailureCount || snap.FailureRate != tt.snap.FailureRate || snap.SlowCallRate != 0 {
				t.Fatalf("Calls %d FailureCount %d FailureRate %v SlowCallRate %v, want %d %d %v 0",
					snap.Calls, snap.FailureCount, snap.FailureRate, snap.SlowCallRate,
					tt.snap.Calls, tt.snap.FailureCount, tt.snap.FailureRate)
			}
			var want []string
			if tt.reason != "" {
				want = []string{tt.reason}
				if got := rec.all()[0].FailureRate; got != tt.snap.FailureRate {
					t.Errorf("Transition.FailureRate = %v, want %v", got, tt.snap.FailureRate)
				}
			}
			if got := rec.reasons(); !equalStrings(got, want) {
				t.Fatalf("transitions %q, want %q", got, want)
			}
		})
	}
}

func TestSlowCallRate(t *testing.T) {
	s := Settings{SlowCallDuration: 2 * time.Second, SlowCallRateThreshold: 0.5, MinimumCalls: 4, FailureThreshold: 100}
	fast, slow := call{took: 2 * time.Second, outcome: Success}, call{took: 2*time.Second + time.Nanosecond, outcome: Success}
	slowFail := call{took: 3 * time.Second, outcome: Failure}
	tests := []struct {
		name   string
		calls  []call
		want   State
		reason string
		rate   float64
	}{
		{"a call of exactly slow_call_duration is not slow", repeat(6, fast), Closed, "", 0},
		{"below minimum_calls it is not judged", repeat(3, slow), Closed, "", 1},
		{"half slow at minimum_calls opens it", []call{fast, slow, fast, slow}, Open,
			"closed>open: slow-call rate 50% over 4 calls within 60s (slower than 2s; threshold 50%)", 0.5},
		{"slow failures count as slow", []call{fast, fast, slowFail, slowFail}, Open,
			"closed>open: slow-call rate 50% over 4 calls within 60s (slower than 2s; threshold 50%)", 0.5},
		{"below the threshold stays closed", []call{fast, slow, fast, fast, fast}, Closed, "", 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, s)
			runCalls(t, b, fc, tt.calls)
			snap := b.Snapshot()
			if snap.State != tt.want || snap.SlowCallRate != tt.rate {
				t.Fatalf("state %v SlowCallRate %v, want %v %v", snap.State, snap.SlowCallRate, tt.want, tt.rate)
			}
			var want []string
			if tt.reason != "" {
				want = []string{tt.reason}
			}
			if got := rec.reasons(); !equalStrings(got, want) {
				t.Fatalf("transitions %q, want %q", got, want)
			}
		})
	}
}

func TestSlowCallDefaultThreshold(t *testing.T) {
	// With only slow_call_duration set, every call in the window must be
	// slow (rate 1) before it opens.
	b, fc, rec := newTest(t, Settings{SlowCallDuration: time.Second, MinimumCalls: 3})
	slow := call{took: 2 * time.Second, outcome: Success}
	runCalls(t, b, fc, []call{slow, slow, {outcome: Success}, slow})
	if got := b.State(); got != Closed {
		t.Fatalf("3 of 4 slow: %v, want closed", got)
	}
	b.Reset()
	runCalls(t, b, fc, repeat(3, slow))
	want := []string{"closed>open: slow-call rate 100% over 3 calls within 60s (slower than 1s; threshold 100%)"}
	if got := rec.reasons(); !equalStrings(got, want) {
		t.Fatalf("transitions %q, want %q", got, want)
	}
}

func TestSlowProbeReopens(t *testing.T) {
	b, fc, rec := newTest(t, Settings{FailureThreshold: 1, SlowCallDuration: time.Second, MinimumCalls: 50})
	halfOpen(t, b, fc)
	runCalls(t, b, fc, []call{{took: time.Second, outcome: Success}})
	p, _ := b.Allow()
	fc.Advance(1500 * time.Millisecond)
	b.Done(p, Success, nil)
	if got := b.State(); got != Open {
		t.Fatalf("after a slow probe: %v, want open", got)
	}
	want := "half_open>open: half-open probe took 1.5s (slower than 1s)"
	if rs := rec.reasons(); rs[len(rs)-1] != want {
		t.Fatalf("last transition %q, want %q", rs[len(rs)-1], want)
	}
}

func TestRatesClearedOnClose(t *testing.T) {
	b, fc, _ := newTest(t, Settings{FailureThreshold: 100, FailureRateThreshold: 0.5, MinimumCalls: 2, SuccessThreshold: 1})
	runCalls(t, b, fc, repeat(2, call{outcome: Failure}))
	fc.Advance(DefaultResetTimeout)
	runCalls(t, b, fc, []call{{outcome: Success}})
	if snap := b.Snapshot(); snap.State != Closed || snap.Calls != 0 || snap.FailureCount != 0 {
		t.Fatalf("after closing: %+v", snap)
	}
	// The probe's success is not a closed-state call: one failure now is
	// one call, below minimum_calls.
	runCalls(t, b, fc, []call{{outcome: Failure}})
	if snap := b.Snapshot(); snap.State != Closed || snap.Calls != 1 {
		t.Fatalf("one failure after closing: %+v", snap)
	}
}
