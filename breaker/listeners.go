package breaker

import (
	"time"
)

// Transition tells listeners that a breaker changed state.
//
// Listeners are called after the breaker's lock is released, one at a
// time, in the order the transitions happened, by whichever goroutine
// found no other already calling them: usually the one whose call (Allow,
// Done, State, Snapshot, Reset, ForceOpen) made the transition. Other
// callers never wait for a listener. A listener may call back into the
// breaker; transitions it causes are delivered after the current one.
// A listener that panics is recovered (and logged, see WithLogger); the
// other listeners are still called.
type Transition struct {
	Breaker      string
	From, To     State
	At           time.Time
	Reason       string    // in words, for people: "3 failures within 60s; last: HTTP 503"
	FailureCount int       // failures within the window at the time
	FailureRate  float64   // failure rate within the window, when a rate threshold is on
	RetryAt      time.Time // when To is Open (and not forced): when it goes half_open
}

// emit queues a transition for the listeners; b.mu is held.
func (b *Breaker) emit(from State, now int64, reason string) {
	b.transitions++
	if len(b.listeners) == 0 {
		return
	}
	t := Transition{
		Breaker:      b.name,
		From:         from,
		To:           b.state,
		At:           b.at(now),
		Reason:       reason,
		FailureCount: b.failures.count(now, b.window),
	}
	if b.windowed {
		t.FailureRate = b.calls.sum(now).failureRate()
	}
	if b.state == Open && !b.forced {
		t.RetryAt = b.at(b.retryAt.Load())
	}
	b.queue = append(b.queue, t)
}

// unlockAndNotify releases b.mu and, if transitions are waiting and no
// other goroutine is delivering them, delivers them.
func (b *Breaker) unlockAndNotify() {
	drain := len(b.queue) > 0 && !b.draining
	if drain {
		b.draining = true
	}
	b.mu.Unlock()
	if drain {
		b.drain()
	}
}

// drain calls the listeners for every queued transition until the queue
// stays empty. Only one goroutine drains at a time, which is what keeps
// the listeners' calls in order.
func (b *Breaker) drain() {
	finished := false
	defer func() {
		// Reached only if a listener ended the goroutine (runtime.Goexit,
		// as t.FailNow does): let the next transition find a drainer.
		if !finished {
			b.mu.Lock()
			b.draining = false
			b.mu.Unlock()
		}
	}()
	var spent []Transition
	for {
		b.mu.Lock()
		if spent != nil {
			b.spare = spent[:0]
		}
		batch := b.queue
		if len(batch) == 0 {
			b.draining = false
			b.mu.Unlock()
			finished = true
			return
		}
		b.queue, b.spare = b.spare, nil
		listeners := b.listeners
		b.mu.Unlock()
		for i := range batch {
			for _, fn := range listeners {
				b.tell(fn, batch[i])
			}
		}
		clear(batch)
		spent = batch
	}
}

func (b *Breaker) tell(fn func(Transition), t Transition) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("circuit breaker listener panicked",
				"breaker", b.name, "from", t.From.String(), "to", t.To.String(), "panic", r)
		}
	}()
	fn(t)
}
