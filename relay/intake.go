package relay

import (
	"sync"
	"time"

	"github.com/vsm-relay/relay/breaker"
)

// Reasons a consumer's intake is held. Intake runs only while none holds.
const (
	holdBreaker     uint8 = 1 << iota // its breaker is open
	holdBlocked                       // the broker blocked the relay's publishing connection
	holdDown                          // the relay's publishing connection is down
	holdDestBlocked                   // the broker blocked an outbound destination connection
	holdDestDown                      // an outbound destination connection is down
)

// consumer is what a gate drives (a *broker.Consumer).
type consumer interface {
	Pause()
	Resume()
	SetPrefetch(n int)
}

// gate decides one consumer's intake from the reasons that hold it and
// its breaker's state: paused while anything holds it, a few probe tasks
// at a time while half-open, the full prefetch while closed.
type gate struct {
	mu       sync.Mutex
	c        consumer
	normal   int
	probes   int
	holds    uint8
	halfOpen bool
}

func (g *gate) set(hold uint8, on bool) {
	g.mu.Lock()
	if on {
		g.holds |= hold
	} else {
		g.holds &^= hold
	}
	g.apply()
	g.mu.Unlock()
}

func (g *gate) setHalfOpen(on bool) {
	g.mu.Lock()
	g.halfOpen = on
	g.apply()
	g.mu.Unlock()
}

// apply pushes the gate's state to the consumer; the consumer's calls
// only record the wish and wake its goroutine, so holding g.mu is fine.
func (g *gate) apply() {
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

// intake ties a breaker to the gates of every queue it guards: open
// pauses them (tasks wait in the broker), half-open lets a few probe
// tasks through, closed resumes full intake. The breaker has no timers of
// its own, so intake asks it for its state when reset_timeout or
// half_open_timeout should have passed.
type intake struct {
	b     *breaker.Breaker
	gates []*gate

	mu    sync.Mutex
	timer *time.Timer
	done  bool
}

func newIntake(b *breaker.Breaker) *intake {
	in := &intake{b: b}
	b.OnStateChange(in.onTransition)
	return in
}

func (in *intake) add(g *gate) {
	in.mu.Lock()
	in.gates = append(in.gates, g)
	in.mu.Unlock()
}

// probesPerGate shares the breaker's half-open probe slots among the
// queues it guards.
func (in *intake) probesPerGate() int {
	n := len(in.gates)
	if n == 0 {
		return 1
	}
	return max(1, (in.b.Settings().SuccessThreshold+n-1)/n)
}

func (in *intake) onTransition(t breaker.Transition) {
	in.mu.Lock()
	gates := append([]*gate(nil), in.gates...)
	probes := in.probesPerGate()
	in.mu.Unlock()
	for _, g := range gates {
		g.mu.Lock()
		g.probes = probes
		g.mu.Unlock()
	}
	switch t.To {
	case breaker.Open:
		for _, g := range gates {
			g.set(holdBreaker, true)
		}
		wait := time.Second // forced open: look again now and then
		if !t.RetryAt.IsZero() {
			wait = time.Until(t.RetryAt) + 10*time.Millisecond
		}
		in.schedule(wait)
	case breaker.HalfOpen:
		for _, g := range gates {
			g.setHalfOpen(true)
			g.set(holdBreaker, false)
		}
		in.schedule(in.b.Settings().HalfOpenTimeout + 10*time.Millisecond)
	case breaker.Closed:
		in.stopTimer()
		for _, g := range gates {
			g.setHalfOpen(false)
			g.set(holdBreaker, false)
		}
	}
}

// schedule asks the breaker for its state after d, which makes it take
// any transition that time has brought (and notify onTransition).
func (in *intake) schedule(d time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return
	}
	if in.timer != nil {
		in.timer.Stop()
	}
	in.timer = time.AfterFunc(max(d, time.Millisecond), func() {
		st := in.b.State()
		if st != breaker.Closed {
			// Still not closed (probes under way, or forced open):
			// keep looking so a stalled half-open is noticed.
			in.schedule(time.Second)
		}
	})
}

func (in *intake) stopTimer() {
	in.mu.Lock()
	if in.timer != nil {
		in.timer.Stop()
		in.timer = nil
	}
	in.mu.Unlock()
}

func (in *intake) close() {
	in.mu.Lock()
	in.done = true
	if in.timer != nil {
		in.timer.Stop()
	}
	in.mu.Unlock()
}
