package breaker

import (
	"math"
	"strconv"
)

// SetSettings changes the breaker's settings in place, as a configuration
// reload does. Zero fields of s take their defaults, as in New; when s is
// invalid it returns Validate's error and changes nothing.
//
// What the breaker holds is kept: its state (forced open included), its
// generation, its listeners and the failures in its window, so a reload
// neither closes an open breaker nor forgets why it was about to open.
// Permits granted before the change stay good. From the change on:
//
//   - failure_threshold sizes the failure ring; when it shrinks, the most
//     recent failures that fit are kept. A closed breaker is judged against
//     the new threshold at its next failure: the change alone never opens
//     it.
//   - window_size applies to the failures already counted at once (they
//     are kept as times); the rate thresholds' call counts are moved into
//     buckets of the new width, keeping those still within the window.
//   - An open breaker (not forced) goes half_open at the time it opened
//     plus the new reset_timeout, which may be at once.
//   - A half-open breaker keeps its probes and successes under the new
//     success_threshold; if the successes already reach it, the breaker
//     closes now, as the probe that reached it would have closed it.
//     half_open_timeout applies to the period under way.
//   - Turning a rate threshold on starts its call window empty; turning
//     both off forgets the calls counted. Calls granted before the
//     slow-call threshold was on are never counted as slow.
//   - timeout applies to calls started through Call after the change.
//
// The cost of Allow and Done is unchanged.
func (b *Breaker) SetSettings(s Settings) error {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	now := b.now()
	b.advance(now)
	old := b.s
	b.s = s
	b.timeout.Store(int64(s.Timeout))
	b.resetTimeout = int64(s.ResetTimeout)
	b.halfOpenTimeout = int64(s.HalfOpenTimeout)
	b.slowCall = int64(s.SlowCallDuration)
	if s.FailureThreshold != old.FailureThreshold {
		b.failures = b.failures.resized(s.FailureThreshold)
	}
	wasWindowed := b.windowed
	b.timed = s.SlowCallDuration > 0
	b.windowed = s.SlowCallDuration > 0 || s.FailureRateThreshold > 0
	switch {
	case !b.windowed || !wasWindowed:
		b.calls = newCallWindow(int64(s.WindowSize))
	case s.WindowSize != old.WindowSize:
		b.calls = b.calls.rebucketed(now, int64(s.WindowSize))
	}
	b.window = int64(s.WindowSize)
	// The feature bits change without a new generation: Done compares
	// generations and states, not bits, so permits in flight stay good.
	b.word.Store(b.wordFor(b.state))
	switch b.state {
	case Open:
		if !b.forced {
			b.retryAt.Store(satAdd(b.openedAt, b.resetTimeout))
		} else {
			b.retryAt.Store(math.MaxInt64)
		}
		b.advance(now)
	case HalfOpen:
		if b.successes >= s.SuccessThreshold {
			b.toClosed(now, strconv.Itoa(b.successes)+" half-open probes succeeded (success_threshold lowered to "+
				strconv.Itoa(s.SuccessThreshold)+")")
		}
	}
	b.unlockAndNotify()
	return nil
}

// resized returns a ring of size slots holding the most recent failures
// of r that fit.
func (r failureRing) resized(size int) failureRing {
	n := newFailureRing(size)
	keep := min(r.n, size)
	// The newest failure is just before r.next; copy oldest first so that
	// n.next ends after the newest.
	for i := keep; i > 0; i-- {
		j := r.next - i
		if j < 0 {
			j += len(r.at)
		}
		n.add(r.at[j])
	}
	return n
}

// rebucketed returns a call window of the given width holding w's counts
// that are still within it at now. Each old bucket's counts go to the new
// bucket holding the old one's start, so they are forgotten no later than
// they would have been (when the buckets grow) or a bucket early at most.
func (w *callWindow) rebucketed(now, window int64) callWindow {
	n := newCallWindow(window)
	cur, oldCur := floorDiv(now, n.width), floorDiv(now, w.width)
	for i := range w.buckets {
		ob := &w.buckets[i]
		if ob.calls == 0 || ob.idx > oldCur || ob.idx <= oldCur-numBuckets {
			continue // empty, or already forgotten
		}
		idx := floorDiv(ob.idx*w.width, n.width)
		if idx > cur || idx <= cur-numBuckets {
			continue
		}
		nb := &n.buckets[floorMod(idx, numBuckets)]
		if nb.idx != idx {
			*nb = bucket{idx: idx}
		}
		nb.calls += ob.calls
		nb.failures += ob.failures
		nb.slow += ob.slow
	}
	return n
}
