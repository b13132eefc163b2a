package breaker

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vsm-relay/relay/clock"
)

var (
	start   = time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)
	err503  = errors.New("HTTP 503")
	errDown = errors.New("connection refused")
)

// recorder keeps every transition it is told of.
type recorder struct {
	mu sync.Mutex
	ts []Transition
}

func (r *recorder) listen(t Transition) {
	r.mu.Lock()
	r.ts = append(r.ts, t)
	r.mu.Unlock()
}

func (r *recorder) all() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Transition(nil), r.ts...)
}

// reasons returns "from>to: reason" for each transition, for compact
// comparison.
func (r *recorder) reasons() []string {
	var out []string
	for _, t := range r.all() {
		out = append(out, t.From.String()+">"+t.To.String()+": "+t.Reason)
	}
	return out
}

func newTest(t *testing.T, s Settings, opts ...Option) (*Breaker, *clock.Fake, *recorder) {
	t.Helper()
	fc := clock.NewFake(start)
	rec := &recorder{}
	b, err := New("test", s, append([]Option{WithClock(fc), WithListener(rec.listen)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b, fc, rec
}

// fail makes one failed call through b.
func fail(t *testing.T, b *Breaker, reason error) {
	t.Helper()
	p, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	b.Done(p, Failure, reason)
}

func succeed(t *testing.T, b *Breaker) {
	t.Helper()
	p, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	b.Done(p, Success, nil)
}

// openIt drives b open with failures.
func openIt(t *testing.T, b *Breaker) {
	t.Helper()
	for range b.Settings().FailureThreshold {
		fail(t, b, err503)
	}
	if s := b.State(); s != Open {
		t.Fatalf("after %d failures state = %v, want open", b.Settings().FailureThreshold, s)
	}
}

// halfOpen drives b open and then half_open.
func halfOpen(t *testing.T, b *Breaker, fc *clock.Fake) {
	t.Helper()
	openIt(t, b)
	fc.Advance(b.Settings().ResetTimeout)
	if s := b.State(); s != HalfOpen {
		t.Fatalf("after reset_timeout state = %v, want half_open", s)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
