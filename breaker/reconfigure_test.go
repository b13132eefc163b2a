package breaker

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/vsm-relay/relay/clock"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// TestSetSettings changes one setting in each state and checks that the
// state and counts are kept and the new value applies from then on.
func TestSetSettings(t *testing.T) {
	base := Settings{FailureThreshold: 3, SuccessThreshold: 3, ResetTimeout: time.Minute,
		HalfOpenTimeout: 30 * time.Second, WindowSize: time.Minute}
	with := func(f func(*Settings)) Settings {
		s := base
		f(&s)
		return s
	}
	type check func(t *testing.T, b *Breaker, fc *clock.Fake, rec *recorder)

	// state checks the breaker is in s without advancing the clock.
	state := func(s State) check {
		return func(t *testing.T, b *Breaker, _ *clock.Fake, _ *recorder) {
			t.Helper()
			if got := b.State(); got != s {
				t.Fatalf("State() = %v, want %v", got, s)
			}
		}
	}
	failures := func(n int) check {
		return func(t *testing.T, b *Breaker, _ *clock.Fake, _ *recorder) {
			t.Helper()
			if got := b.Snapshot().FailureCount; got != n {
				t.Fatalf("FailureCount = %d, want %d", got, n)
			}
		}
	}
	advance := func(d time.Duration) check {
		return func(_ *testing.T, _ *Breaker, fc *clock.Fake, _ *recorder) { fc.Advance(d) }
	}
	fails := func(n int) check {
		return func(t *testing.T, b *Breaker, _ *clock.Fake, _ *recorder) {
			t.Helper()
			for range n {
				fail(t, b, err503)
			}
		}
	}
	succeeds := func(n int) check {
		return func(t *testing.T, b *Breaker, _ *clock.Fake, _ *recorder) {
			t.Helper()
			for range n {
				succeed(t, b)
			}
		}
	}
	lastReason := func(want string) check {
		return func(t *testing.T, _ *Breaker, _ *clock.Fake, rec *recorder) {
			t.Helper()
			rs := rec.reasons()
			if len(rs) == 0 || rs[len(rs)-1] != want {
				t.Fatalf("transitions = %q, want the last %q", rs, want)
			}
		}
	}
	retryAt := func(after time.Duration) check {
		return func(t *testing.T, b *Breaker, _ *clock.Fake, _ *recorder) {
			t.Helper()
			s := b.Snapshot()
			if want := s.OpenedAt.Add(after); !s.RetryAt.Equal(want) {
				t.Fatalf("RetryAt = %v, want OpenedAt+%v = %v", s.RetryAt, after, want)
			}
		}
	}
	noRetry := func(t *testing.T, b *Breaker, _ *clock.Fake, _ *recorder) {
		t.Helper()
		if s := b.Snapshot(); !s.RetryAt.IsZero() {
			t.Fatalf("RetryAt = %v, want zero (forced open)", s.RetryAt)
		}
	}

	// Setups, each leaving the breaker in one state at a known time.
	closedTwo := func(t *testing.T, b *Breaker, fc *clock.Fake) {
		fail(t, b, err503)
		fc.Advance(20 * time.Second)
		fail(t, b, err503)
		fc.Advance(10 * time.Second) // failures 30s and 10s old
	}
	open := func(t *testing.T, b *Breaker, fc *clock.Fake) {
		openIt(t, b)
		fc.Advance(10 * time.Second)
	}
	forced := func(_ *testing.T, b *Breaker, _ *clock.Fake) { b.ForceOpen() }
	halfOneSuccess := func(t *testing.T, b *Breaker, fc *clock.Fake) {
		halfOpen(t, b, fc)
		succeed(t, b)
	}

	tests := []struct {
		name  string
		setup func(*testing.T, *Breaker, *clock.Fake)
		to    Settings
		then  []check
	}{
		{"closed, threshold raised: counts kept, opens at the new one", closedTwo,
			with(func(s *Settings) { s.FailureThreshold = 5 }),
			[]check{state(Closed), failures(2), fails(2), state(Closed), fails(1), state(Open),
				lastReason("closed>open: 5 failures within 60s; last: HTTP 503")}},
		{"closed, threshold lowered to the count: stays closed until the next failure", closedTwo,
			with(func(s *Settings) { s.FailureThreshold = 2 }),
			[]check{state(Closed), failures(2), fails(1), state(Open),
				lastReason("closed>open: 2 failures within 60s; last: HTTP 503")}},
		{"closed, threshold lowered below the count: the newest failures kept", closedTwo,
			with(func(s *Settings) { s.FailureThreshold = 1 }),
			// The newest is 10s old: it leaves the window 50s from now,
			// the older one 30s from now.
			[]check{state(Closed), failures(1), advance(40 * time.Second), failures(1),
				advance(10 * time.Second), failures(0)}},
		{"closed, window shrunk: older failures fall out at once", closedTwo,
			with(func(s *Settings) { s.WindowSize = 15 * time.Second }),
			[]check{state(Closed), failures(1), fails(1), state(Closed), fails(1), state(Open),
				lastReason("closed>open: 3 failures within 15s; last: HTTP 503")}},
		{"closed, window grown: failures kept longer", closedTwo,
			with(func(s *Settings) { s.WindowSize = 5 * time.Minute }),
			[]check{advance(time.Minute), failures(2), fails(1), state(Open)}},
		{"closed, reset_timeout: used at the next opening", closedTwo,
			with(func(s *Settings) { s.ResetTimeout = 5 * time.Second }),
			[]check{state(Closed), fails(1), state(Open), retryAt(5 * time.Second),
				advance(5 * time.Second), state(HalfOpen)}},

		{"open, reset_timeout shortened: retry from the opening", open,
			with(func(s *Settings) { s.ResetTimeout = 30 * time.Second }),
			[]check{state(Open), retryAt(30 * time.Second), advance(20*time.Second - time.Nanosecond),
				state(Open), advance(time.Nanosecond), state(HalfOpen),
				lastReason("open>half_open: reset_timeout 30s passed")}},
		{"open, reset_timeout shortened past now: half_open at once", open,
			with(func(s *Settings) { s.ResetTimeout = 5 * time.Second }),
			[]check{state(HalfOpen), lastReason("open>half_open: reset_timeout 5s passed")}},
		{"open, reset_timeout lengthened", open,
			with(func(s *Settings) { s.ResetTimeout = 2 * time.Minute }),
			[]check{retryAt(2 * time.Minute), advance(time.Minute), state(Open),
				advance(50 * time.Second), state(HalfOpen)}},
		{"open, threshold lowered: stays open, counts kept", open,
			with(func(s *Settings) { s.FailureThreshold = 2 }),
			[]check{state(Open), failures(2), retryAt(time.Minute)}},
		{"open, window shrunk: stays open", open,
			with(func(s *Settings) { s.WindowSize = time.Second }),
			[]check{state(Open), failures(0), retryAt(time.Minute)}},

		{"forced open, reset_timeout shortened: still forced", forced,
			with(func(s *Settings) { s.ResetTimeout = time.Nanosecond }),
			[]check{noRetry, advance(time.Hour), state(Open)}},
		{"forced open, threshold changed: still forced", forced,
			with(func(s *Settings) { s.FailureThreshold = 1 }),
			[]check{noRetry, advance(time.Hour), state(Open)}},
		{"forced open, window changed: still forced", forced,
			with(func(s *Settings) { s.WindowSize = time.Second }),
			[]check{noRetry, advance(time.Hour), state(Open)}},

		{"half_open, success_threshold raised: more probes needed", halfOneSuccess,
			with(func(s *Settings) { s.SuccessThreshold = 4 }),
			[]check{state(HalfOpen), succeeds(2), state(HalfOpen), succeeds(1), state(Closed),
				lastReason("half_open>closed: 4 half-open probes succeeded")}},
		{"half_open, success_threshold lowered: successes kept", halfOneSuccess,
			with(func(s *Settings) { s.SuccessThreshold = 2 }),
			[]check{state(HalfOpen), succeeds(1), state(Closed),
				lastReason("half_open>closed: 2 half-open probes succeeded")}},
		{"half_open, success_threshold lowered to the successes: closes now", halfOneSuccess,
			with(func(s *Settings) { s.SuccessThreshold = 1 }),
			[]check{state(Closed),
				lastReason("half_open>closed: 1 half-open probes succeeded (success_threshold lowered to 1)")}},
		{"half_open, half_open_timeout shortened: applies to the period under way", halfOneSuccess,
			with(func(s *Settings) { s.HalfOpenTimeout = 5 * time.Second }),
			[]check{advance(5 * time.Second), state(HalfOpen), advance(time.Nanosecond), state(Open),
				lastReason("half_open>open: half-open probes did not close it within 5s")}},
		{"half_open, reset_timeout changed: used at the next opening", halfOneSuccess,
			with(func(s *Settings) { s.ResetTimeout = 10 * time.Second }),
			[]check{state(HalfOpen), fails(1), state(Open), retryAt(10 * time.Second)}},
		{"half_open, threshold changed: a failed probe still opens it", halfOneSuccess,
			with(func(s *Settings) { s.FailureThreshold = 10 }),
			[]check{state(HalfOpen), fails(1), state(Open)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, base)
			tt.setup(t, b, fc)
			before := b.Snapshot()
			gen := b.Generation()
			if err := b.SetSettings(tt.to); err != nil {
				t.Fatalf("SetSettings: %v", err)
			}
			if got := b.Settings(); got != tt.to.WithDefaults() {
				t.Fatalf("Settings() = %+v, want %+v", got, tt.to.WithDefaults())
			}
			if after := b.Snapshot(); after.State == before.State {
				if b.Generation() != gen {
					t.Errorf("generation %d -> %d without a transition", gen, b.Generation())
				}
				if after.Transitions != before.Transitions || after.LastFailure != before.LastFailure {
					t.Errorf("snapshot changed: %+v -> %+v", before, after)
				}
			}
			for _, c := range tt.then {
				c(t, b, fc, rec)
			}
		})
	}
}

func TestSetSettingsInvalid(t *testing.T) {
	b, _, _ := newTest(t, Settings{FailureThreshold: 2})
	fail(t, b, err503)
	err := b.SetSettings(Settings{FailureThreshold: -1, ResetTimeout: -time.Second})
	var fe *fielderr.Error
	if !errors.As(err, &fe) {
		t.Fatalf("SetSettings(bad) = %v, want a *fielderr.Error", err)
	}
	if got := b.Settings(); got != (Settings{FailureThreshold: 2}).WithDefaults() {
		t.Fatalf("settings changed by a refused SetSettings: %+v", got)
	}
	fail(t, b, err503)
	if s := b.State(); s != Open {
		t.Fatalf("State() = %v, want open: the old threshold still holds", s)
	}
}

// A permit granted before a change is reported as usual after it.
func TestSetSettingsPermitsInFlight(t *testing.T) {
	tests := []struct {
		name      string
		from, to  Settings
		outcome   Outcome
		wantState State
		wantCalls int
	}{
		{"failure counted across a threshold change", Settings{FailureThreshold: 3}, Settings{FailureThreshold: 1},
			Failure, Open, 0},
		{"failure counted when a rate threshold comes on", Settings{FailureThreshold: 3},
			Settings{FailureThreshold: 3, FailureRateThreshold: 0.5, MinimumCalls: 5}, Failure, Closed, 1},
		{"success counted as a call when a rate threshold comes on", Settings{},
			Settings{FailureRateThreshold: 0.5}, Success, Closed, 0},
		{"granted before the slow-call threshold: never slow", Settings{},
			Settings{SlowCallDuration: time.Nanosecond, MinimumCalls: 1}, Failure, Closed, 1},
		{"failure counted when the rate thresholds go off", Settings{FailureThreshold: 1, FailureRateThreshold: 0.5},
			Settings{FailureThreshold: 1}, Failure, Open, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, _ := newTest(t, tt.from)
			p, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			if err := b.SetSettings(tt.to); err != nil {
				t.Fatal(err)
			}
			fc.Advance(time.Second)
			b.Done(p, tt.outcome, err503)
			s := b.Snapshot()
			if s.State != tt.wantState || s.Calls != tt.wantCalls {
				t.Fatalf("state %v calls %d, want %v and %d", s.State, s.Calls, tt.wantState, tt.wantCalls)
			}
			if s.SlowCallRate != 0 {
				t.Fatalf("SlowCallRate = %v, want 0", s.SlowCallRate)
			}
		})
	}
}

// The rate thresholds' call counts move with the window.
func TestSetSettingsCallWindow(t *testing.T) {
	rated := Settings{FailureRateThreshold: 0.9, MinimumCalls: 100, WindowSize: time.Minute}
	tests := []struct {
		name   string
		window time.Duration
		after  time.Duration // between the change and the look
		calls  int
	}{
		{"unchanged window", time.Minute, 0, 8},
		{"grown: all kept", 10 * time.Minute, 0, 8},
		{"grown: kept past the old window", 10 * time.Minute, 5 * time.Minute, 8},
		{"grown: forgotten past the new one", 10 * time.Minute, 10 * time.Minute, 0},
		{"shrunk: only the recent ones", 20 * time.Second, 0, 4},
		{"shrunk below them all", time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, _ := newTest(t, rated)
			calls := func() {
				for i := range 4 {
					p, _ := b.Allow()
					b.Done(p, Outcome(i%2), err503)
				}
			}
			// Four calls already out of the window at the change, which a
			// longer window must not bring back; four 40s before it and
			// four 10s before it.
			calls()
			fc.Advance(5 * time.Minute)
			calls()
			fc.Advance(30 * time.Second)
			calls()
			fc.Advance(10 * time.Second)
			s := rated
			s.WindowSize = tt.window
			if err := b.SetSettings(s); err != nil {
				t.Fatal(err)
			}
			fc.Advance(tt.after)
			if got := b.Snapshot().Calls; got != tt.calls {
				t.Fatalf("Calls = %d, want %d", got, tt.calls)
			}
		})
	}
}

// SetSettings leaves Allow and Done as cheap as they were.
func TestSetSettingsAllocs(t *testing.T) {
	b, err := New("allocs", Settings{FailureRateThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetSettings(Settings{FailureThreshold: 7}); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		p, _ := b.Allow()
		b.Done(p, Success, nil)
	}); n != 0 {
		t.Errorf("Allow+Done after SetSettings: %v allocs, want 0", n)
	}
	// And the closed fast path is back: a plain word with no feature bits.
	if w := b.word.Load(); w&(stateMask|timedBit|windowedBit) != 0 {
		t.Errorf("word = %#x, want closed with no feature bits", w)
	}
}

// TestSetSettingsConcurrent hammers Allow and Done while the settings
// change, for the race detector, then checks the breaker still works.
func TestSetSettingsConcurrent(t *testing.T) {
	b, fc, _ := newTest(t, Settings{FailureThreshold: 3, ResetTimeout: time.Second})
	variants := []Settings{
		{FailureThreshold: 3, ResetTimeout: time.Second},
		{FailureThreshold: 1, SuccessThreshold: 1, ResetTimeout: time.Millisecond, WindowSize: time.Second},
		{FailureThreshold: 50, FailureRateThreshold: 0.5, MinimumCalls: 2},
		{FailureThreshold: 2, SlowCallDuration: time.Millisecond, WindowSize: time.Hour},
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if p, err := b.Allow(); err == nil {
					b.Done(p, Outcome((i+g)%3), err503)
				}
				if i%50 == 0 {
					_ = b.Snapshot()
					fc.Advance(time.Millisecond)
				}
			}
		})
	}
	for i := range 2000 {
		if err := b.SetSettings(variants[i%len(variants)]); err != nil {
			t.Fatal(err)
		}
		_ = b.Settings()
	}
	close(stop)
	wg.Wait()
	if err := b.SetSettings(Settings{FailureThreshold: 1, ResetTimeout: math.MaxInt64}); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	fail(t, b, err503)
	if s := b.State(); s != Open {
		t.Fatalf("State() = %v after a failure at threshold 1, want open", s)
	}
}
