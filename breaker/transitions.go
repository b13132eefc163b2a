package breaker

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// This file is the state machine. Every function here runs with b.mu held
// and is handed the time the caller read.
//
//	closed    -> open       failure_threshold failures within window_size
//	closed    -> open       failure or slow-call rate reached over minimum_calls
//	open      -> half_open  reset_timeout passed (not when forced open)
//	half_open -> closed     success_threshold probes succeeded
//	half_open -> open       a probe failed, or was slow
//	half_open -> open       half_open_timeout passed since the first probe
//	any       -> closed     Reset
//	any       -> open       ForceOpen (stays open until Reset)
//
// The time-driven transitions happen when the breaker is next asked
// (Allow, Done, State, Snapshot): there are no timers or goroutines.

// advance makes the transitions that time has brought about by now.
func (b *Breaker) advance(now int64) {
	switch b.state {
	case Open:
		if !b.forced && now >= b.retryAt.Load() {
			b.toHalfOpen(now, "reset_timeout "+fmtDur(b.s.ResetTimeout)+" passed")
		}
	case HalfOpen:
		// The period is timed from its first probe, not from when it was
		// entered: with nobody calling, nothing is being learned, and a
		// breaker re-opened for that would punish the next caller.
		if b.probing && now-b.halfOpenSince > b.halfOpenTimeout {
			b.toOpen(now, false, "half-open probes did not close it within "+fmtDur(b.s.HalfOpenTimeout))
		}
	}
}

// recordClosed counts the outcome of a call made while closed.
func (b *Breaker) recordClosed(now int64, p Permit, failed bool, text string) {
	if b.windowed {
		slow := b.isSlow(now, p)
		b.calls.add(now, failed, slow)
	}
	if failed {
		b.lastFailure = text
		b.failures.add(now)
		if b.failures.full(now, b.window) {
			reason := strconv.Itoa(b.s.FailureThreshold) + " failures within " + fmtDur(b.s.WindowSize)
			if text != "" {
				reason += "; last: " + text
			}
			b.toOpen(now, false, reason)
			return
		}
	}
	if !b.windowed {
		return
	}
	c := b.calls.sum(now)
	if c.calls < b.s.MinimumCalls {
		return
	}
	if r := b.s.FailureRateThreshold; r > 0 && c.failureRate() >= r {
		b.toOpen(now, false, fmt.Sprintf("failure rate %s over %d calls within %s (threshold %s)",
			pct(c.failureRate()), c.calls, fmtDur(b.s.WindowSize), pct(r)))
		return
	}
	if r := b.s.SlowCallRateThreshold; b.timed && c.slowRate() >= r {
		b.toOpen(now, false, fmt.Sprintf("slow-call rate %s over %d calls within %s (slower than %s; threshold %s)",
			pct(c.slowRate()), c.calls, fmtDur(b.s.WindowSize), fmtDur(b.s.SlowCallDuration), pct(r)))
	}
}

// recordProbe counts the outcome of a half-open probe. A success keeps its
// slot (it counts toward closing); a neutral outcome gives it back.
func (b *Breaker) recordProbe(now int64, p Permit, o Outcome, failed bool, text string) {
	b.probes--
	switch {
	case o == Neutral:
	case failed:
		b.lastFailure = text
		b.failures.add(now)
		reason := "half-open probe failed"
		if text != "" {
			reason += ": " + text
		}
		b.toOpen(now, false, reason)
	case b.isSlow(now, p):
		// A downstream that answers slowly has not recovered.
		b.toOpen(now, false, "half-open probe took "+fmtDur(time.Duration(now-p.start))+
			" (slower than "+fmtDur(b.s.SlowCallDuration)+")")
	default:
		b.successes++
		if b.successes >= b.s.SuccessThreshold {
			b.toClosed(now, strconv.Itoa(b.successes)+" half-open probes succeeded")
		}
	}
}

// toOpen opens the breaker; forced keeps it open until Reset.
func (b *Breaker) toOpen(now int64, forced bool, reason string) {
	from := b.state
	b.openedAt = now
	b.forced = forced
	if forced {
		b.retryAt.Store(math.MaxInt64)
	} else {
		b.retryAt.Store(satAdd(now, b.resetTimeout))
	}
	b.endProbing()
	b.setState(Open, now)
	b.emit(from, now, reason)
}

func (b *Breaker) toHalfOpen(now int64, reason string) {
	from := b.state
	b.endProbing()
	b.setState(HalfOpen, now)
	b.emit(from, now, reason)
}

func (b *Breaker) toClosed(now int64, reason string) {
	from := b.state
	b.forced = false
	b.endProbing()
	b.clearCounts()
	b.setState(Closed, now)
	b.emit(from, now, reason)
}

// isSlow reports whether the call p was granted for, reported at now, was
// slow. A permit granted while the slow-call threshold was off carries no
// start time, and is never slow.
func (b *Breaker) isSlow(now int64, p Permit) bool {
	return b.timed && p.word&timedBit != 0 && now-p.start > b.slowCall
}

func (b *Breaker) endProbing() { b.probing, b.probes, b.successes = false, 0, 0 }

func (b *Breaker) clearCounts() {
	b.failures.reset()
	b.calls.reset()
}

// setState starts a new generation in state s at now: permits granted
// before are stale from here on.
func (b *Breaker) setState(s State, now int64) {
	b.state = s
	b.changedAt = now
	b.gen++
	b.word.Store(b.wordFor(s))
}

// wordFor is the word for state s in the current generation, with the
// feature bits of the current settings.
func (b *Breaker) wordFor(s State) uint64 {
	w := b.gen<<genShift | uint64(s)
	if b.timed {
		w |= timedBit
	}
	if b.windowed {
		w |= windowedBit
	}
	return w
}

// satAdd adds without wrapping past the largest time, so that an enormous
// reset_timeout means "not in our lifetime" rather than "already".
func satAdd(t, d int64) int64 {
	if d > 0 && t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}

// fmtDur writes whole seconds as a configuration file would ("60s",
// "120s") and anything finer as Go does ("1.5s", "250ms").
func fmtDur(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

func pct(r float64) string { return strconv.FormatFloat(r*100, 'f', 0, 64) + "%" }
