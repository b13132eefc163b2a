// Package intake decides how much work the relay takes from each queue.
//
// Every consumer sits behind a Gate. Holds close a gate: its breaker is
// open, the broker blocked or lost a connection the queue's outcomes are
// published on, an operator paused the queue. While any hold is on, the
// consumer is paused and its tasks wait in the broker; while the breaker
// is half-open the gate lets only a few probe tasks through; otherwise the
// full prefetch. A Breaker follows one circuit breaker and drives the
// gates of every queue it guards; Conns follows the relay's publishing
// connections and holds the gates of the queues that publish on them.
package intake

import (
	"sync"
	"time"

	"github.com/vsm-relay/relay/breaker"
)

// Hold is a reason a gate is closed; gates combine them as a bit set.
type Hold uint8

// Reasons a consumer's intake is held. Intake runs only while none holds.
const (
	HoldBreaker     Hold = 1 << iota // its breaker is open
	HoldBlocked                      // the broker blocked the relay's publishing connection
	HoldDown                         // the relay's publishing connection is down
	HoldDestBlocked                  // the broker blocked an outbound destination connection
	HoldDestDown                     // an outbound destination connection is down
	HoldOperator                     // an operator paused the queue
)

// Consumer is what a gate drives (a *broker.Consumer).
type Consumer interface {
	Pause()
	Resume()
	SetPrefetch(n int)
}

// Gate decides one consumer's intake from the holds on it and its
// breaker's state: paused while anything holds it, a few probe tasks at a
// time while half-open, the full prefetch while closed. It is safe for
// concurrent use.
type Gate struct {
	mu       sync.Mutex
	c        Consumer
	normal   int
	probes   int
	holds    Hold
	halfOpen bool
}

// NewGate returns an open gate for c, whose full intake is prefetch.
func NewGate(c Consumer, prefetch int) *Gate {
	return &Gate{c: c, normal: max(1, prefetch), probes: 1}
}

// Set puts hold on or takes it off.
func (g *Gate) Set(hold Hold, on bool) {
	g.mu.Lock()
	if on {
		g.holds |= hold
	} else {
		g.holds &^= hold
	}
	g.apply()
	g.mu.Unlock()
}

// Holds returns the holds on the gate.
func (g *Gate) Holds() Hold {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holds
}

// SetPrefetch changes the gate's full intake.
func (g *Gate) SetPrefetch(n int) {
	g.mu.Lock()
	g.normal = max(1, n)
	g.apply()
	g.mu.Unlock()
}

func (g *Gate) setHalfOpen(on bool, probes int) {
	g.mu.Lock()
	g.halfOpen = on
	g.probes = probes
	g.apply()
	g.mu.Unlock()
}

// apply pushes the gate's state to the consumer; the consumer's calls
// only record the wish and wake its goroutine, so holding g.mu is fine.
func (g *Gate) apply() {
	if g.holds != 0 {
		g.c.Pause()
		return
	}
	if g.halfOpen {
		g.c.SetPrefetch(g.probes)
	} else {
		g.c.SetPrefetch(g.normal)
	}
	g.c.Resume()
}

// Breaker ties a circuit breaker to the gates of every queue it guards:
// open holds them (tasks wait in the broker), half-open lets a few probe
// tasks through, closed resumes full intake. The breaker has no timers of
// its own, so Breaker asks it for its state when reset_timeout or
// half_open_timeout should have passed.
type Breaker struct {
	b *breaker.Breaker

	mu    sync.Mutex
	gates []*Gate
	timer *time.Timer
	done  bool
}

// FollowBreaker returns a Breaker that follows b's transitions.
func FollowBreaker(b *breaker.Breaker) *Breaker {
	in := &Breaker{b: b}
	b.OnStateChange(in.onTransition)
	return in
}

// Add puts g under the breaker, in the breaker's present state.
func (in *Breaker) Add(g *Gate) {
	in.mu.Lock()
	in.gates = append(in.gates, g)
	in.mu.Unlock()
	switch in.b.State() {
	case breaker.Open:
		g.Set(HoldBreaker, true)
	case breaker.HalfOpen:
		g.setHalfOpen(true, in.probesPerGate())
	}
}

// Remove takes g from under the breaker.
func (in *Breaker) Remove(g *Gate) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, x := range in.gates {
		if x == g {
			in.gates = append(in.gates[:i], in.gates[i+1:]...)
			return
		}
	}
}

// probesPerGate shares the breaker's half-open probe slots among the
// queues it guards.
func (in *Breaker) probesPerGate() int {
	in.mu.Lock()
	n := len(in.gates)
	in.mu.Unlock()
	if n == 0 {
		return 1
	}
	return max(1, (in.b.Settings().SuccessThreshold+n-1)/n)
}

func (in *Breaker) onTransition(t breaker.Transition) {
	probes := in.probesPerGate()
	in.mu.Lock()
	gates := append([]*Gate(nil), in.gates...)
	in.mu.Unlock()
	switch t.To {
	case breaker.Open:
		for _, g := range gates {
			g.Set(HoldBreaker, true)
		}
		wait := time.Second // forced open: look again now and then
		if !t.RetryAt.IsZero() {
			wait = time.Until(t.RetryAt) + 10*time.Millisecond
		}
		in.schedule(wait)
	case breaker.HalfOpen:
		for _, g := range gates {
			g.setHalfOpen(true, probes)
			g.Set(HoldBreaker, false)
		}
		in.schedule(in.b.Settings().HalfOpenTimeout + 10*time.Millisecond)
	case breaker.Closed:
		in.stopTimer()
		for _, g := range gates {
			g.setHalfOpen(false, probes)
			g.Set(HoldBreaker, false)
		}
	}
}

// schedule asks the breaker for its state after d, which makes it take
// any transition that time has brought (and notify onTransition).
func (in *Breaker) schedule(d time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return
	}
	if in.timer != nil {
		in.timer.Stop()
	}
	in.timer = time.AfterFunc(max(d, time.Millisecond), func() {
		if in.b.State() != breaker.Closed {
			// Still not closed (probes under way, or forced open):
			// keep looking so a stalled half-open is noticed.
			in.schedule(time.Second)
		}
	})
}

func (in *Breaker) stopTimer() {
	in.mu.Lock()
	if in.timer != nil {
		in.timer.Stop()
		in.timer = nil
	}
	in.mu.Unlock()
}

// Close stops the breaker's timers; the gates stay as they are.
func (in *Breaker) Close() {
	in.mu.Lock()
	in.done = true
	if in.timer != nil {
		in.timer.Stop()
	}
	in.mu.Unlock()
}
