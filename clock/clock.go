// Package clock is the time source the relay's components are handed, so
// that every time-driven transition can be tested without sleeping.
//
// Components take a Clock and default to Real. Tests use a *Fake and move
// it forward explicitly. Anything that must wait on a timer (bulkhead
// checkout timeouts, backoff sleeps) is tested with testing/synctest
// instead, which fakes the runtime's own timers.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Real is the wall clock (with Go's monotonic reading).
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Fake is a Clock that only moves when told to. It is safe for concurrent
// use. The zero value reads as the zero time; use NewFake for a fixed,
// readable start.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// NewFake returns a Fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d and returns the new time.
func (f *Fake) Advance(d time.Duration) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	return f.now
}

// Set moves the clock to t.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}
