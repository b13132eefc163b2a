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

	// What the breaker saw, so that the pain of an opening can be graded.
	//
	// Threshold is failure_threshold and Window is window_size.
	// FailureSpan is the time from the oldest to the newest failure
	// within the window: failure_threshold failures in a second say more
	// than the same number spread over a minute. Calls and SlowCallRate,
	// like FailureRate, are only known when a rate threshold is on: a
	// breaker without one counts no successes while closed, which is what
	// keeps its hot path free of shared writes; Calls is then 0.
	Threshold    int
	Window       time.Duration
	FailureSpan  time.Duration
	Calls        int
	SlowCallRate float64

	// Origin is the peer whose message caused the transition (see
	// OpenByPeer and HalfOpenNow); empty when the breaker decided by
	// itself, which includes an opening by failures some of which peers
	// reported (RecordPeerFailures).
	Origin string
}

// emit queues a transition for the listeners; b.mu is held. The origin
// set for this transition by the caller is consumed.
func (b *Breaker) emit(from State, now int64, reason string) {
	b.transitions++
	origin := b.origin
	b.origin = ""
	if len(b.listeners) == 0 {
		return
	}
	n, oldest, newest := b.failures.spread(now, b.window)
	t := Transition{
		Breaker:      b.name,
		From:         from,
		To:           b.state,
		At:           b.at(now),
		Reason:       reason,
		FailureCount: n,
		Threshold:    b.s.FailureThreshold,
		Window:       b.s.WindowSize,
		FailureSpan:  time.Duration(newest - oldest),
		Origin:       origin,
	}
	if b.windowed {
		c := b.calls.sum(now)
		t.Calls, t.FailureRate, t.SlowCallRate = c.calls, c.failureRate(), c.slowRate()
	}
	if b.state == Open && !b.forced {
		t.RetryAt = b.at(b.retryAt.Load())
	}
	b.queue = append(b.queue, t)
}

// FailureEvent tells failure listeners (OnFailure) of one failure counted in
// the closed state, as the breaker's own caller reported it through Done
// or Call. Failures of half-open probes, and those reported by peers
// through RecordPeerFailures, are not told.
type FailureEvent struct {
	Breaker string
	At      time.Time
	Reason  string // the failure's error text; may be empty
}

// OnFailure adds fn to the listeners told of every failure counted while
// closed. They are called on the failure path only, after the breaker's
// lock is released, by the goroutine that reported the failure: fn must
// be quick and must not block. That goroutine tells them before it
// delivers a transition the failure caused, but another goroutine already
// delivering transitions may deliver it first. A panic in fn is recovered
// and logged. A nil fn is ignored.
func (b *Breaker) OnFailure(fn func(FailureEvent)) {
	if fn == nil {
		return
	}
	b.mu.Lock()
	ls := make([]func(FailureEvent), len(b.failureListeners), len(b.failureListeners)+1)
	copy(ls, b.failureListeners)
	b.failureListeners = append(ls, fn)
	b.mu.Unlock()
}

// unlockTellFailure releases b.mu, tells the failure listeners fls of f,
// then delivers any transitions waiting, as unlockAndNotify does.
func (b *Breaker) unlockTellFailure(fls []func(FailureEvent), f FailureEvent) {
	if b.unlock() {
		// Deferred, so that a failure listener ending the goroutine does
		// not leave the transitions undelivered.
		defer b.drain()
	}
	for _, fn := range fls {
		b.tellFailure(fn, f)
	}
}

func (b *Breaker) tellFailure(fn func(FailureEvent), f FailureEvent) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("circuit breaker failure listener panicked", "breaker", b.name, "panic", r)
		}
	}()
	fn(f)
}

// unlockAndNotify releases b.mu and, if transitions are waiting and no
// other goroutine is delivering them, delivers them.
func (b *Breaker) unlockAndNotify() {
	if b.unlock() {
		b.drain()
	}
}

// unlock releases b.mu and reports whether the caller must now drain: if
// transitions are waiting and no other goroutine is delivering them, the
// caller is made the one that does.
func (b *Breaker) unlock() bool {
	drain := len(b.queue) > 0 && !b.draining
	if drain {
		b.draining = true
	}
	b.mu.Unlock()
	return drain
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
