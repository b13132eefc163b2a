package breaker

import (
	"errors"
	"testing"
	"time"
)

// step advances the fake clock, then makes one call with the outcome.
type step struct {
	after   time.Duration
	outcome Outcome
	reason  error
}

func TestClosedWindow(t *testing.T) {
	s := Settings{FailureThreshold: 3, WindowSize: time.Minute}
	tests := []struct {
		name      string
		steps     []step
		want      State
		failures  int
		reasons   []string
		lastError string
	}{
		{
			name:     "threshold failures within the window open it",
			steps:    []step{{0, Failure, errDown}, {time.Second, Failure, errDown}, {time.Second, Failure, err503}},
			want:     Open,
			failures: 3,
			reasons:  []string{"closed>open: 3 failures within 60s; last: HTTP 503"},
		},
		{
			name:     "one short of the threshold stays closed",
			steps:    []step{{0, Failure, err503}, {time.Second, Failure, err503}},
			want:     Closed,
			failures: 2,
		},
		{
			// A fixed 60s interval starting at 0 would split this burst
			// into 59s | 61s, 62s and never open.
			name:     "a burst straddling a fixed-interval boundary opens it",
			steps:    []step{{59 * time.Second, Failure, err503}, {2 * time.Second, Failure, err503}, {time.Second, Failure, err503}},
			want:     Open,
			failures: 3,
			reasons:  []string{"closed>open: 3 failures within 60s; last: HTTP 503"},
		},
		{
			name:     "failures older than the window are forgotten",
			steps:    []step{{0, Failure, err503}, {30 * time.Second, Failure, err503}, {30 * time.Second, Failure, err503}},
			want:     Closed,
			failures: 2, // the first is exactly 60s old: out
		},
		{
			name:     "just inside the window still counts",
			steps:    []step{{0, Failure, err503}, {30 * time.Second, Failure, err503}, {30*time.Second - time.Nanosecond, Failure, err503}},
			want:     Open,
			failures: 3,
			reasons:  []string{"closed>open: 3 failures within 60s; last: HTTP 503"},
		},
		{
			name: "successes in between do not clear failures",
			steps: []step{{0, Failure, err503}, {0, Success, nil}, {0, Success, nil},
				{0, Failure, err503}, {0, Success, nil}, {0, Failure, err503}},
			want:     Open,
			failures: 3,
			reasons:  []string{"closed>open: 3 failures within 60s; last: HTTP 503"},
		},
		{
			name:     "neutral outcomes never count",
			steps:    []step{{0, Neutral, err503}, {0, Neutral, err503}, {0, Neutral, err503}, {0, Failure, errDown}},
			want:     Closed,
			failures: 1,
		},
		{
			name:     "a failure without a reason",
			steps:    []step{{0, Failure, nil}, {0, Failure, nil}, {0, Failure, nil}},
			want:     Open,
			failures: 3,
			reasons:  []string{"closed>open: 3 failures within 60s"},
		},
		{
			name:     "an unknown outcome is a failure",
			steps:    []step{{0, Outcome(7), err503}, {0, Outcome(7), err503}, {0, Outcome(7), err503}},
			want:     Open,
			failures: 3,
			reasons:  []string{"closed>open: 3 failures within 60s; last: HTTP 503"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, s)
			for _, st := range tt.steps {
				fc.Advance(st.after)
				p, err := b.Allow()
				if err != nil {
					t.Fatalf("Allow: %v", err)
				}
				b.Done(p, st.outcome, st.reason)
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("State() = %v, want %v", got, tt.want)
			}
			if got := b.Snapshot().FailureCount; got != tt.failures {
				t.Errorf("FailureCount = %d, want %d", got, tt.failures)
			}
			if got := rec.reasons(); !equalStrings(got, tt.reasons) {
				t.Errorf("transitions = %q, want %q", got, tt.reasons)
			}
		})
	}
}

func TestOpenRejectsThenHalfOpens(t *testing.T) {
	for _, ask := range []struct {
		name string
		fn   func(b *Breaker) State
	}{
		{"State", func(b *Breaker) State { return b.State() }},
		{"Snapshot", func(b *Breaker) State { return b.Snapshot().State }},
		{"Allow", func(b *Breaker) State {
			if _, err := b.Allow(); err != nil {
				return Open
			}
			return HalfOpen
		}},
	} {
		t.Run(ask.name, func(t *testing.T) {
			b, fc, rec := newTest(t, Settings{FailureThreshold: 1, ResetTimeout: 2 * time.Minute})
			fail(t, b, err503)
			opened := fc.Now()
			fc.Advance(2*time.Minute - time.Nanosecond)
			if _, err := b.Allow(); err != ErrOpen {
				t.Fatalf("Allow() while open = %v, want ErrOpen", err)
			}
			if got := ask.fn(b); got != Open {
				t.Fatalf("1ns before reset_timeout: %v, want open", got)
			}
			fc.Advance(time.Nanosecond)
			if got := ask.fn(b); got != HalfOpen {
				t.Fatalf("at reset_timeout: %v, want half_open", got)
			}
			want := []string{"closed>open: 1 failures within 60s; last: HTTP 503", "open>half_open: reset_timeout 120s passed"}
			if got := rec.reasons(); !equalStrings(got, want) {
				t.Fatalf("transitions = %q, want %q", got, want)
			}
			ts := rec.all()
			if !ts[0].At.Equal(opened) || !ts[0].RetryAt.Equal(opened.Add(2*time.Minute)) {
				t.Errorf("open transition At=%v RetryAt=%v, want %v and +2m", ts[0].At, ts[0].RetryAt, opened)
			}
			if !ts[1].At.Equal(opened.Add(2*time.Minute)) || !ts[1].RetryAt.IsZero() {
				t.Errorf("half_open transition At=%v RetryAt=%v", ts[1].At, ts[1].RetryAt)
			}
		})
	}
}

func TestHalfOpenProbeSlots(t *testing.T) {
	b, fc, _ := newTest(t, Settings{FailureThreshold: 1, SuccessThreshold: 3})
	halfOpen(t, b, fc)

	var ps []Permit
	for i := range 3 {
		p, err := b.Allow()
		if err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		ps = append(ps, p)
	}
	_, err := b.Allow()
	if err != ErrTooManyProbes || !errors.Is(err, ErrOpen) || !errors.Is(err, ErrTooManyProbes) {
		t.Fatalf("fourth Allow = %v, want ErrTooManyProbes (which is ErrOpen)", err)
	}

	// A neutral outcome gives its slot back.
	b.Done(ps[0], Neutral, nil)
	p, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow after a neutral probe: %v", err)
	}
	ps[0] = p

	// A success keeps its slot: it counts toward closing.
	b.Done(ps[1], Success, nil)
	if _, err := b.Allow(); err != ErrTooManyProbes {
		t.Fatalf("Allow after a successful probe = %v, want ErrTooManyProbes", err)
	}
	if got := b.Snapshot().SuccessCount; got != 1 {
		t.Fatalf("SuccessCount = %d, want 1", got)
	}
}

func TestHalfOpenOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		outcomes []Outcome
		want     State
		reason   string
	}{
		{"success_threshold successes close it", []Outcome{Success, Success, Success}, Closed, "half_open>closed: 3 half-open probes succeeded"},
		{"successes around neutrals close it", []Outcome{Success, Neutral, Success, Neutral, Success}, Closed, "half_open>closed: 3 half-open probes succeeded"},
		{"fewer successes leave it half-open", []Outcome{Success, Success}, HalfOpen, ""},
		{"a failed probe reopens it", []Outcome{Success, Success, Failure}, Open, "half_open>open: half-open probe failed: HTTP 503"},
		{"a first failed probe reopens it", []Outcome{Failure}, Open, "half_open>open: half-open probe failed: HTTP 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, Settings{FailureThreshold: 2, SuccessThreshold: 3})
			halfOpen(t, b, fc)
			for _, o := range tt.outcomes {
				p, err := b.Allow()
				if err != nil {
					t.Fatalf("Allow: %v", err)
				}
				b.Done(p, o, err503)
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("State() = %v, want %v", got, tt.want)
			}
			rs := rec.reasons()
			if last := rs[len(rs)-1]; tt.reason != "" && last != tt.reason {
				t.Fatalf("last transition %q, want %q", last, tt.reason)
			}
			snap := b.Snapshot()
			switch tt.want {
			case Closed:
				if snap.FailureCount != 0 || snap.SuccessCount != 0 || !snap.OpenedAt.IsZero() {
					t.Fatalf("closed snapshot not cleared: %+v", snap)
				}
			case Open:
				if !snap.RetryAt.Equal(fc.Now().Add(DefaultResetTimeout)) {
					t.Fatalf("RetryAt = %v, want %v", snap.RetryAt, fc.Now().Add(DefaultResetTimeout))
				}
				if snap.FailureCount != 1 {
					t.Fatalf("FailureCount = %d, want 1 (the probe; the others are a reset_timeout old)", snap.FailureCount)
				}
			}
		})
	}
}

func TestHalfOpenTimeout(t *testing.T) {
	b, fc, rec := newTest(t, Settings{FailureThreshold: 1, HalfOpenTimeout: 30 * time.Second})
	halfOpen(t, b, fc)

	// Nobody probing: the half-open period does not run out.
	fc.Advance(time.Hour)
	if got := b.State(); got != HalfOpen {
		t.Fatalf("idle half-open after 1h: %v, want half_open", got)
	}

	p, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	fc.Advance(30 * time.Second)
	if got := b.State(); got != HalfOpen {
		t.Fatalf("30s after the first probe: %v, want half_open", got)
	}
	fc.Advance(time.Nanosecond)
	if got := b.State(); got != Open {
		t.Fatalf("past half_open_timeout: %v, want open", got)
	}
	want := "half_open>open: half-open probes did not close it within 30s"
	if rs := rec.reasons(); rs[len(rs)-1] != want {
		t.Fatalf("last transition %q, want %q", rs[len(rs)-1], want)
	}
	// The late probe's success belongs to the period that ran out.
	b.Done(p, Success, nil)
	if snap := b.Snapshot(); snap.State != Open || snap.SuccessCount != 0 {
		t.Fatalf("after a stale success: %+v", snap)
	}
}

func TestStalePermits(t *testing.T) {
	t.Run("a failure granted while closed is ignored once open", func(t *testing.T) {
		b, fc, _ := newTest(t, Settings{FailureThreshold: 2})
		late, _ := b.Allow()
		openIt(t, b)
		b.Done(late, Failure, errors.New("late"))
		if snap := b.Snapshot(); snap.FailureCount != 2 || snap.LastFailure != "HTTP 503" {
			t.Fatalf("stale failure counted: %+v", snap)
		}
		// Nor once closed again.
		fc.Advance(DefaultResetTimeout)
		for range DefaultSuccessThreshold {
			succeed(t, b)
		}
		fail(t, b, err503)
		b.Done(late, Failure, errors.New("late"))
		if snap := b.Snapshot(); snap.State != Closed || snap.FailureCount != 1 {
			t.Fatalf("stale failure counted after close: %+v", snap)
		}
	})
	t.Run("a probe from an earlier half-open period frees no slot", func(t *testing.T) {
		b, fc, _ := newTest(t, Settings{FailureThreshold: 1, SuccessThreshold: 2})
		halfOpen(t, b, fc)
		old, _ := b.Allow()
		fail(t, b, err503) // second probe fails: open again
		fc.Advance(DefaultResetTimeout)
		p1, err1 := b.Allow()
		_, err2 := b.Allow()
		if err1 != nil || err2 != nil {
			t.Fatalf("new probes: %v, %v", err1, err2)
		}
		b.Done(old, Neutral, nil)
		if _, err := b.Allow(); err != ErrTooManyProbes {
			t.Fatalf("old neutral freed a slot: Allow = %v", err)
		}
		b.Done(old, Success, nil)
		if got := b.Snapshot().SuccessCount; got != 0 {
			t.Fatalf("old success counted: SuccessCount = %d", got)
		}
		b.Done(p1, Neutral, nil)
		if _, err := b.Allow(); err != nil {
			t.Fatalf("current neutral did not free a slot: %v", err)
		}
	})
	t.Run("the zero permit is ignored", func(t *testing.T) {
		b, _, _ := newTest(t, Settings{FailureThreshold: 1})
		b.Done(Permit{}, Failure, err503)
		if snap := b.Snapshot(); snap.State != Closed || snap.FailureCount != 0 {
			t.Fatalf("zero permit counted: %+v", snap)
		}
	})
	t.Run("Reset makes calls in flight stale", func(t *testing.T) {
		b, _, rec := newTest(t, Settings{FailureThreshold: 2})
		fail(t, b, err503)
		inFlight, _ := b.Allow()
		b.Reset()
		b.Done(inFlight, Failure, err503)
		fail(t, b, err503)
		if snap := b.Snapshot(); snap.State != Closed || snap.FailureCount != 1 {
			t.Fatalf("after Reset: %+v", snap)
		}
		if rs := rec.reasons(); len(rs) != 0 {
			t.Fatalf("Reset of a closed breaker told listeners: %q", rs)
		}
	})
}

func TestResetAndForceOpen(t *testing.T) {
	b, fc, rec := newTest(t, Settings{FailureThreshold: 1})
	b.ForceOpen()
	fc.Advance(24 * time.Hour)
	if got := b.State(); got != Open {
		t.Fatalf("forced open after a day: %v", got)
	}
	if _, err := b.Allow(); err != ErrOpen {
		t.Fatalf("Allow while forced open = %v", err)
	}
	if snap := b.Snapshot(); !snap.RetryAt.IsZero() || !snap.OpenedAt.Equal(start) {
		t.Fatalf("forced snapshot: %+v", snap)
	}
	b.ForceOpen() // already open: no transition
	b.Reset()
	if got := b.State(); got != Closed {
		t.Fatalf("after Reset: %v", got)
	}
	// Forcing an ordinarily open breaker keeps it open past reset_timeout.
	fail(t, b, err503)
	b.ForceOpen()
	fc.Advance(DefaultResetTimeout)
	if got := b.State(); got != Open {
		t.Fatalf("forced after opening: %v", got)
	}
	b.Reset()
	// And forcing a half-open one opens it.
	fail(t, b, err503)
	fc.Advance(DefaultResetTimeout)
	b.ForceOpen()
	want := []string{
		"closed>open: forced open",
		"open>closed: reset manually",
		"closed>open: 1 failures within 60s; last: HTTP 503",
		"open>closed: reset manually",
		"closed>open: 1 failures within 60s; last: HTTP 503",
		"open>half_open: reset_timeout 60s passed",
		"half_open>open: forced open",
	}
	if got := rec.reasons(); !equalStrings(got, want) {
		t.Fatalf("transitions =\n%q\nwant\n%q", got, want)
	}
	if ts := rec.all(); !ts[0].RetryAt.IsZero() || !ts[len(ts)-1].RetryAt.IsZero() {
		t.Fatalf("forced transitions carry a RetryAt")
	}
}

func TestSnapshot(t *testing.T) {
	b, fc, _ := newTest(t, Settings{FailureThreshold: 3, ResetTimeout: 90 * time.Second})
	if got, want := b.Snapshot(), (Snapshot{Name: "test", State: Closed}); got != want {
		t.Fatalf("new: %+v, want %+v", got, want)
	}
	fail(t, b, errDown)
	fc.Advance(time.Second)
	fail(t, b, errDown)
	fc.Advance(time.Second)
	fail(t, b, err503)
	opened := fc.Now()
	want := Snapshot{
		Name: "test", State: Open, FailureCount: 3, OpenedAt: opened,
		RetryAt: opened.Add(90 * time.Second), LastFailure: "HTTP 503", Transitions: 1,
	}
	if got := b.Snapshot(); got != want {
		t.Fatalf("open:\n%+v, want\n%+v", got, want)
	}
	fc.Advance(90 * time.Second) // the failures age out meanwhile
	succeed(t, b)
	want = Snapshot{
		Name: "test", State: HalfOpen, SuccessCount: 1, OpenedAt: opened,
		LastFailure: "HTTP 503", Transitions: 2,
	}
	if got := b.Snapshot(); got != want {
		t.Fatalf("half-open:\n%+v, want\n%+v", got, want)
	}
	if b.Name() != "test" || b.Settings() != (Settings{FailureThreshold: 3, ResetTimeout: 90 * time.Second}).WithDefaults() {
		t.Fatalf("Name %q, Settings %+v", b.Name(), b.Settings())
	}
}

func TestStringsAndText(t *testing.T) {
	for _, tt := range []struct {
		s    State
		want string
		num  int32
	}{{Closed, "closed", 0}, {HalfOpen, "half_open", 1}, {Open, "open", 2}} {
		txt, err := tt.s.MarshalText()
		if tt.s.String() != tt.want || string(txt) != tt.want || err != nil || int32(tt.s) != tt.num {
			t.Errorf("%d: String %q, MarshalText %q %v", tt.num, tt.s.String(), txt, err)
		}
	}
	if got := State(9).String(); got != "State(9)" {
		t.Errorf("State(9).String() = %q", got)
	}
	if _, err := State(9).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown state must fail")
	}
	if ErrOpen.Error() != "circuit breaker is open" ||
		ErrTooManyProbes.Error() != "circuit breaker is half-open and all probe slots are taken" {
		t.Errorf("error texts: %q, %q", ErrOpen, ErrTooManyProbes)
	}
	if errors.Is(ErrOpen, ErrTooManyProbes) {
		t.Error("ErrOpen must not be ErrTooManyProbes")
	}
	for o, want := range map[Outcome]string{Success: "success", Failure: "failure", Neutral: "neutral"} {
		if o.String() != want {
			t.Errorf("Outcome %d String = %q, want %q", o, o.String(), want)
		}
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	_, err := New("x", Settings{FailureThreshold: -1, FailureRateThreshold: 2})
	if err == nil {
		t.Fatal("New accepted bad settings")
	}
	want := "failure_rate_threshold: must be a fraction between 0 and 1, got 2\nfailure_threshold: must not be negative, got -1"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}
