package intake

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/clock"
)

// fakeConsumer records what a gate asked of it.
type fakeConsumer struct {
	mu       sync.Mutex
	paused   bool
	prefetch int
}

func (f *fakeConsumer) Pause()            { f.mu.Lock(); f.paused = true; f.mu.Unlock() }
func (f *fakeConsumer) Resume()           { f.mu.Lock(); f.paused = false; f.mu.Unlock() }
func (f *fakeConsumer) SetPrefetch(n int) { f.mu.Lock(); f.prefetch = n; f.mu.Unlock() }

func (f *fakeConsumer) state() (bool, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused, f.prefetch
}

func TestIntakeFollowsBreakerStates(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC))
	b, err := breaker.New("svc", breaker.Settings{FailureThreshold: 2, SuccessThreshold: 4, ResetTimeout: time.Minute, HalfOpenTimeout: time.Minute}, breaker.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	in := FollowBreaker(b)
	defer in.Close()
	a, c := &fakeConsumer{prefetch: 64}, &fakeConsumer{prefetch: 32}
	in.Add(NewGate(a, 64))
	in.Add(NewGate(c, 32))

	fail := func() {
		p, err := b.Allow()
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		b.Done(p, breaker.Failure, errors.New("HTTP 503"))
	}
	fail()
	fail() // opens
	for _, f := range []*fakeConsumer{a, c} {
		if paused, _ := f.state(); !paused {
			t.Fatal("breaker open, intake not paused")
		}
	}

	clk.Advance(time.Minute + time.Second)
	if st := b.State(); st != breaker.HalfOpen {
		t.Fatalf("state %s, want half_open", st)
	}
	// Four probe slots shared by two queues: two each.
	for _, f := range []*fakeConsumer{a, c} {
		if paused, pf := f.state(); paused || pf != 2 {
			t.Fatalf("half-open: paused=%v prefetch=%d, want running with 2 probes", paused, pf)
		}
	}
	for i := 0; i < 4; i++ {
		p, err := b.Allow()
		if err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		b.Done(p, breaker.Success, nil)
	}
	if st := b.State(); st != breaker.Closed {
		t.Fatalf("state %s after 4 probe successes", st)
	}
	if paused, pf := a.state(); paused || pf != 64 {
		t.Fatalf("closed: queue a paused=%v prefetch=%d, want 64", paused, pf)
	}
	if paused, pf := c.state(); paused || pf != 32 {
		t.Fatalf("closed: queue c paused=%v prefetch=%d, want 32", paused, pf)
	}
}

func TestGateHoldsCombine(t *testing.T) {
	f := &fakeConsumer{}
	g := NewGate(f, 16)
	steps := []struct {
		name       string
		do         func()
		wantPaused bool
		wantPF     int
	}{
		{"blocked", func() { g.Set(HoldBlocked, true) }, true, 0},
		{"breaker too", func() { g.Set(HoldBreaker, true) }, true, 0},
		{"unblocked, breaker still open", func() { g.Set(HoldBlocked, false) }, true, 0},
		{"half-open", func() { g.setHalfOpen(true, 3); g.Set(HoldBreaker, false) }, false, 3},
		{"blocked while half-open", func() { g.Set(HoldBlocked, true) }, true, 3},
		{"unblocked", func() { g.Set(HoldBlocked, false) }, false, 3},
		{"closed", func() { g.setHalfOpen(false, 3) }, false, 16},
	}
	for _, s := range steps {
		s.do()
		paused, pf := f.state()
		if paused != s.wantPaused || pf != s.wantPF {
			t.Fatalf("%s: paused=%v prefetch=%d, want paused=%v prefetch=%d", s.name, paused, pf, s.wantPaused, s.wantPF)
		}
	}
}
