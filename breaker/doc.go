// Package breaker is a named circuit breaker: it stops calls to a
// downstream that keeps failing, so that the failure does not cascade into
// its callers, and lets a few probe calls through later to learn whether
// it has recovered.
//
// # States
//
// A breaker starts closed and lets every call through. When
// failure_threshold failures fall within the sliding window_size it opens
// and rejects every call with ErrOpen. The window slides: failures older
// than window_size are forgotten, and a burst is caught wherever it falls
// (there is no fixed interval whose boundary could split it).
//
// After reset_timeout an open breaker goes half_open. It then admits at
// most success_threshold probe calls; the rest get ErrTooManyProbes (which
// is also an ErrOpen). success_threshold successful probes close it; a
// single failed probe opens it again, as does a half-open period that has
// not closed it within half_open_timeout of its first probe.
//
// Two more reasons to open are off by default: a failure rate
// (FailureRateThreshold) and a slow-call rate (SlowCallDuration,
// SlowCallRateThreshold), each judged over the window once it holds at
// least MinimumCalls calls. They are counted in 20 buckets over the window.
//
// Time-driven transitions happen when the breaker is next consulted (by
// Allow, Done, State or Snapshot): a breaker starts no goroutines and no
// timers, so one that nobody asks costs nothing. Time comes from an
// injected clock.Clock (WithClock), so tests move it explicitly.
//
// # Calling through a breaker
//
// Call runs a function under the breaker with the Timeout setting applied
// to its context, and classifies the result. Code that cannot be wrapped in
// a function, or that classifies results itself (an HTTP 4xx says nothing
// about the downstream's health), uses the two-step form: Allow, make the
// call, then Done with Success, Failure or Neutral. Neutral outcomes never
// count either way. A Permit remembers the state generation it was granted
// in, so an outcome reported after the breaker has moved on (a slow call
// that started before it opened) is not counted against the new period.
//
// # Watching it
//
// OnStateChange and WithListener register listeners, told of every
// Transition with a reason in words ("3 failures within 60s; last: HTTP
// 503"). Listeners are never called with a lock held, are called one at a
// time in the order of the transitions, and a panicking listener does not
// harm the breaker or the other listeners. Snapshot returns the counts for
// health reports; State's numbers are the relay_breaker_state gauge values.
//
// Each Transition also carries what the breaker saw when it happened
// (failures against the threshold, how closely they fell, the rates when
// a rate threshold is on), so that the pain of an opening can be graded.
// OnFailure and WithFailureListener tell of each failure counted while
// closed, on the failure path only.
//
// # Sharing a breaker across a fleet
//
// Relays that share a breaker name can act as one breaker (package fleet
// carries their messages; this package knows nothing of how).
// RecordPeerFailures counts failures a peer saw, OpenByPeer opens because
// a peer opened, and HalfOpenNow lets an open breaker probe at once
// because a peer's probes succeeded. Transitions a peer caused carry its
// name in Transition.Origin. Messages from before the breaker's last
// transition (LastTransition) or older than the window are ignored.
//
// # Changing the settings
//
// SetSettings applies new settings in place, as a configuration reload
// does: the breaker keeps its state, its counts, its generation and its
// listeners, and permits already granted stay good. An open breaker goes
// half_open at the time it opened plus the new reset_timeout; a half-open
// one keeps probing under the new success_threshold.
//
// # Concurrency and cost
//
// A Breaker is safe for concurrent use. In the closed state with the rate
// thresholds off, Allow is one atomic load and Done(Success) reads no
// shared memory at all: neither locks, reads the clock or allocates.
// Failures, the other states and the rate thresholds take a mutex and read
// the clock. Call allocates only for its timeout context.
package breaker
