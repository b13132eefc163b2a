package breaker

import (
	"strconv"
	"time"
)

// This file holds what a fleet of breakers sharing a name needs from each
// breaker: to count the failures its peers saw, to open when a peer
// opened, and to probe at once when a peer recovered. The breaker knows
// nothing of how peers are reached; package fleet carries the messages.
//
// Times given here are the peer's. A message from before this breaker's
// last transition (LastTransition) says nothing about the current period
// and is ignored, as is one older than the window; a time in the future
// (the peer's clock is ahead) is taken as now.

// LastTransition is when the breaker last changed state or was reset
// (when it was made, if never).
func (b *Breaker) LastTransition() time.Time {
	b.mu.Lock()
	t := b.at(b.changedAt)
	b.mu.Unlock()
	return t
}

// Generation counts the breaker's state changes and resets, from 1 at New.
// Permits granted in an older generation are stale.
func (b *Breaker) Generation() uint64 { return b.word.Load() >> genShift }

// peerTime turns a peer's time into a breaker time no later than now.
func (b *Breaker) peerTime(at time.Time, now int64) int64 {
	return min(int64(at.Sub(b.epoch)), now)
}

// RecordPeerFailures counts n failures that the peer saw at about at, as
// if they had happened here, and reports whether it counted them. Only a
// closed breaker counts them, and only if at is within the window and not
// before the breaker's last transition. They are counted at the later of
// at and the newest failure already counted, which keeps the window in
// time order (so they may be counted a batching interval late), and at
// most failure_threshold of them, which is all the window holds.
//
// If they fill the window, the breaker opens with a reason that names
// the peer. That opening is this breaker's own decision over the fleet's
// failures, so its Transition has no Origin. Peer failures do not enter
// the rate thresholds' call window (the peer's successes are not known)
// and are not told to failure listeners.
func (b *Breaker) RecordPeerFailures(peer string, n int, at time.Time, reason string) bool {
	b.mu.Lock()
	now := b.now()
	b.advance(now)
	t := b.peerTime(at, now)
	if b.state != Closed || n <= 0 || t < b.changedAt || !inWindow(now, t, b.window) {
		b.unlockAndNotify()
		return false
	}
	if last, ok := b.failures.latest(); ok && last > t {
		t = last
	}
	for range min(n, b.s.FailureThreshold) {
		b.failures.add(t)
	}
	b.lastFailure = "at " + peer
	if reason != "" {
		b.lastFailure += ": " + reason
	}
	if b.failures.full(now, b.window) {
		b.toOpen(now, false, strconv.Itoa(b.s.FailureThreshold)+" failures within "+
			fmtDur(b.s.WindowSize)+" across the fleet; last "+b.lastFailure)
	}
	b.unlockAndNotify()
	return true
}

// OpenByPeer opens a closed or half-open breaker because the peer's
// breaker of the same name opened at at, for reason, and reports whether
// it did. The Transition carries Origin = peer and a reason naming it;
// the breaker goes half_open after its own reset_timeout, counted from
// now. An open breaker, and a message from before the last transition,
// are left alone.
func (b *Breaker) OpenByPeer(peer, reason string, at time.Time) bool {
	b.mu.Lock()
	now := b.now()
	b.advance(now)
	if b.state == Open || b.peerTime(at, now) < b.changedAt {
		b.unlockAndNotify()
		return false
	}
	why := "opened at " + peer
	if reason != "" {
		why += ": " + reason
	}
	b.origin = peer
	b.toOpen(now, false, why)
	b.unlockAndNotify()
	return true
}

// HalfOpenNow lets an open breaker probe at once, because the peer's
// breaker closed at at after its probes succeeded, and reports whether it
// did. The Transition carries Origin = peer. A breaker forced open, one
// not open, and a message from before the last transition are left
// alone. Callers with many peers stagger their calls, so that the fleet's
// probes do not all land together.
func (b *Breaker) HalfOpenNow(peer string, at time.Time) bool {
	b.mu.Lock()
	now := b.now()
	b.advance(now)
	if b.state != Open || b.forced || b.peerTime(at, now) < b.changedAt {
		b.unlockAndNotify()
		return false
	}
	b.origin = peer
	b.toHalfOpen(now, "closed at "+peer+" after its probes succeeded")
	b.unlockAndNotify()
	return true
}
