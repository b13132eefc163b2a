package breaker

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRecordPeerFailures(t *testing.T) {
	s := Settings{FailureThreshold: 5, WindowSize: time.Minute}
	tests := []struct {
		name       string
		setup      func(t *testing.T, b *Breaker)
		local      int           // local failures before the peer's
		n          int           // failures the peer reports
		age        time.Duration // how long before now the peer saw them
		wantCount  bool
		wantState  State
		wantFailed int // FailureCount afterwards
	}{
		{name: "counted", local: 1, n: 2, wantCount: true, wantState: Closed, wantFailed: 3},
		{name: "fill the window and open", local: 2, n: 3, wantCount: true, wantState: Open, wantFailed: 5},
		{name: "more than the threshold", n: 50, wantCount: true, wantState: Open, wantFailed: 5},
		{name: "older than the window", local: 1, n: 4, age: time.Minute, wantState: Closed, wantFailed: 1},
		{name: "from the future taken as now", local: 4, n: 1, age: -time.Hour, wantCount: true, wantState: Open, wantFailed: 5},
		{name: "none", local: 1, n: 0, wantState: Closed, wantFailed: 1},
		{name: "negative", local: 1, n: -3, wantState: Closed, wantFailed: 1},
		{
			name: "before the last transition", n: 5, age: time.Second, wantState: Closed,
			setup: func(t *testing.T, b *Breaker) { b.Reset() },
		},
		{
			name: "while open", n: 5, wantState: Open, wantFailed: 5,
			setup: func(t *testing.T, b *Breaker) { openIt(t, b) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, s)
			fc.Advance(10 * time.Second)
			if tt.setup != nil {
				tt.setup(t, b)
			}
			for range tt.local {
				fail(t, b, err503)
			}
			before := len(rec.all())
			at := fc.Now().Add(-tt.age)
			if got := b.RecordPeerFailures("relay-b", tt.n, at, "HTTP 502"); got != tt.wantCount {
				t.Fatalf("RecordPeerFailures = %v, want %v", got, tt.wantCount)
			}
			snap := b.Snapshot()
			if snap.State != tt.wantState || snap.FailureCount != tt.wantFailed {
				t.Fatalf("state %v with %d failures, want %v with %d", snap.State, snap.FailureCount, tt.wantState, tt.wantFailed)
			}
			ts := rec.all()[before:]
			if tt.wantCount && tt.wantState == Open {
				if len(ts) != 1 {
					t.Fatalf("transitions %v, want one opening", ts)
				}
				tr := ts[0]
				if tr.Origin != "" || !strings.Contains(tr.Reason, "relay-b: HTTP 502") {
					t.Fatalf("opening origin %q reason %q, want no origin and a reason naming relay-b", tr.Origin, tr.Reason)
				}
			} else if len(ts) != 0 {
				t.Fatalf("unexpected transitions %v", ts)
			}
		})
	}
}

// Peer failures reported late must not break the window's time order: the
// breaker must still forget them a window after they were counted, and
// must not open on failures that are no longer within the window.
func TestRecordPeerFailuresKeepsWindowOrder(t *testing.T) {
	b, fc, _ := newTest(t, Settings{FailureThreshold: 3, WindowSize: 10 * time.Second})
	fail(t, b, err503)                                    // t=0
	fc.Advance(5 * time.Second)                           // t=5
	b.RecordPeerFailures("relay-b", 1, start, "late")     // seen at t=0, counted at t=0 (latest)
	fc.Advance(6 * time.Second)                           // t=11: both forgotten
	b.RecordPeerFailures("relay-b", 1, fc.Now(), "fresh") // t=11
	if s := b.Snapshot(); s.State != Closed || s.FailureCount != 1 {
		t.Fatalf("state %v with %d failures, want closed with 1", s.State, s.FailureCount)
	}
	fail(t, b, err503)
	fail(t, b, err503)
	if s := b.State(); s != Open {
		t.Fatalf("state %v after 3 failures within the window, want open", s)
	}
}

func TestOpenByPeer(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, b *Breaker)
		age      time.Duration
		want     bool
		wantFrom State
	}{
		{name: "closed", want: true, wantFrom: Closed},
		{name: "half open", want: true, wantFrom: HalfOpen, setup: func(t *testing.T, b *Breaker) {
			openIt(t, b)
			b.HalfOpenNow("relay-c", time.Now().Add(time.Hour))
		}},
		{name: "already open", setup: func(t *testing.T, b *Breaker) { openIt(t, b) }},
		{name: "forced open", setup: func(t *testing.T, b *Breaker) { b.ForceOpen() }},
		{name: "stale", age: time.Second, setup: func(t *testing.T, b *Breaker) { b.Reset() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, Settings{FailureThreshold: 2, ResetTimeout: 30 * time.Second})
			fc.Advance(time.Minute)
			if tt.setup != nil {
				tt.setup(t, b)
			}
			before := len(rec.all())
			if got := b.OpenByPeer("relay-b", "2 failures within 60s", fc.Now().Add(-tt.age)); got != tt.want {
				t.Fatalf("OpenByPeer = %v, want %v", got, tt.want)
			}
			ts := rec.all()[before:]
			if !tt.want {
				if len(ts) != 0 {
					t.Fatalf("unexpected transitions %v", ts)
				}
				return
			}
			if len(ts) != 1 {
				t.Fatalf("transitions %v, want one", ts)
			}
			tr := ts[0]
			if tr.From != tt.wantFrom || tr.To != Open || tr.Origin != "relay-b" ||
				tr.Reason != "opened at relay-b: 2 failures within 60s" || !tr.RetryAt.Equal(fc.Now().Add(30*time.Second)) {
				t.Fatalf("transition %+v", tr)
			}
			if !b.LastTransition().Equal(fc.Now()) {
				t.Fatalf("LastTransition = %v, want %v", b.LastTransition(), fc.Now())
			}
			// It probes on its own reset_timeout.
			fc.Advance(30 * time.Second)
			if s := b.State(); s != HalfOpen {
				t.Fatalf("after reset_timeout state = %v, want half_open", s)
			}
		})
	}
}

func TestHalfOpenNow(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, b *Breaker)
		age   time.Duration
		want  bool
	}{
		{name: "open", want: true, setup: func(t *testing.T, b *Breaker) { openIt(t, b) }},
		{name: "closed", setup: func(t *testing.T, b *Breaker) {}},
		{name: "forced open", setup: func(t *testing.T, b *Breaker) { b.ForceOpen() }},
		{name: "opened after the peer closed", age: time.Second, setup: func(t *testing.T, b *Breaker) { openIt(t, b) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, Settings{FailureThreshold: 1})
			fc.Advance(time.Minute)
			tt.setup(t, b)
			gen := b.Generation()
			before := len(rec.all())
			if got := b.HalfOpenNow("relay-b", fc.Now().Add(-tt.age)); got != tt.want {
				t.Fatalf("HalfOpenNow = %v, want %v", got, tt.want)
			}
			ts := rec.all()[before:]
			if !tt.want {
				if len(ts) != 0 || b.Generation() != gen {
					t.Fatalf("unexpected transitions %v", ts)
				}
				return
			}
			if len(ts) != 1 || ts[0].To != HalfOpen || ts[0].Origin != "relay-b" ||
				ts[0].Reason != "closed at relay-b after its probes succeeded" {
				t.Fatalf("transitions %+v", ts)
			}
			if b.Generation() != gen+1 {
				t.Fatalf("Generation %d, want %d", b.Generation(), gen+1)
			}
			succeed(t, b) // a probe is admitted at once
		})
	}
}

func TestOnFailure(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	note := func(tag string) func(FailureEvent) {
		return func(f FailureEvent) {
			mu.Lock()
			seen = append(seen, tag+" "+f.Breaker+" "+f.Reason)
			mu.Unlock()
		}
	}
	b, fc, _ := newTest(t, Settings{FailureThreshold: 2, SuccessThreshold: 1}, WithFailureListener(note("option")))
	b.OnFailure(note("method"))
	b.OnFailure(nil)
	b.OnFailure(func(FailureEvent) { panic("listener bug") })
	// The transition a failure causes is told after the failure.
	b.OnStateChange(func(tr Transition) { note("transition")(FailureEvent{Breaker: tr.To.String()}) })

	succeed(t, b)
	fail(t, b, err503)
	b.RecordPeerFailures("relay-b", 1, fc.Now(), "peer")
	fc.Advance(time.Minute)
	b.State()
	p, _ := b.Allow()
	b.Done(p, Failure, errDown) // a probe failure is not told
	want := []string{
		"option test HTTP 503", "method test HTTP 503",
		"transition open ", "transition half_open ", "transition open ",
	}
	mu.Lock()
	defer mu.Unlock()
	if !equalStrings(seen, want) {
		t.Fatalf("seen %q\nwant %q", seen, want)
	}
}

// The transition carries what the breaker saw, so that its pain can be
// graded.
func TestTransitionGrading(t *testing.T) {
	tests := []struct {
		name      string
		s         Settings
		calls     []bool // true: failure; one second apart
		wantCount int
		wantSpan  time.Duration
		wantCalls int
		wantRate  float64
	}{
		{
			name: "by count", s: Settings{FailureThreshold: 3, WindowSize: time.Minute},
			calls: []bool{true, false, true, true}, wantCount: 3, wantSpan: 3 * time.Second,
		},
		{
			name: "by count with a rate threshold", s: Settings{FailureThreshold: 3, FailureRateThreshold: 0.9, MinimumCalls: 100},
			calls: []bool{true, false, true, true}, wantCount: 3, wantSpan: 3 * time.Second, wantCalls: 4, wantRate: 0.75,
		},
		{
			name: "by rate", s: Settings{FailureThreshold: 100, FailureRateThreshold: 0.5, MinimumCalls: 4},
			calls: []bool{false, true, false, true}, wantCount: 2, wantSpan: 2 * time.Second, wantCalls: 4, wantRate: 0.5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, fc, rec := newTest(t, tt.s)
			for _, failed := range tt.calls {
				if failed {
					fail(t, b, err503)
				} else {
					succeed(t, b)
				}
				fc.Advance(time.Second)
			}
			ts := rec.all()
			if len(ts) != 1 || ts[0].To != Open {
				t.Fatalf("transitions %v, want one opening", ts)
			}
			tr := ts[0]
			want := b.Settings()
			if tr.FailureCount != tt.wantCount || tr.FailureSpan != tt.wantSpan || tr.Calls != tt.wantCalls ||
				tr.FailureRate != tt.wantRate || tr.Threshold != want.FailureThreshold || tr.Window != want.WindowSize {
				t.Fatalf("got count %d span %v calls %d rate %v threshold %d window %v\nwant %d %v %d %v %d %v",
					tr.FailureCount, tr.FailureSpan, tr.Calls, tr.FailureRate, tr.Threshold, tr.Window,
					tt.wantCount, tt.wantSpan, tt.wantCalls, tt.wantRate, want.FailureThreshold, want.WindowSize)
			}
		})
	}
}

// A failure told to a failure listener costs no allocation.
func TestFailureListenerDoesNotAllocate(t *testing.T) {
	var n int
	b, err := New("allocs", Settings{FailureThreshold: maxThreshold}, WithFailureListener(func(FailureEvent) { n++ }))
	if err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(1000, func() {
		p, _ := b.Allow()
		b.Done(p, Failure, err503)
	}); a != 0 {
		t.Fatalf("Allow+Done(Failure) with a failure listener: %v allocs, want 0", a)
	}
	if n == 0 {
		t.Fatal("the failure listener was never called")
	}
}
