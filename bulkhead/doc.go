// Package bulkhead isolates the relay's downstreams from each other: each
// named pool (worker_agent, llm_worker, api_agent ...) lends out at most
// Size+Overflow slots at a time, so one slow or failing downstream can
// tie up its own pool but never the workers of another.
//
// # Checking out
//
// A caller takes a slot with Checkout and gives it back with Checkin, or
// lets WithResource do both around a function (it checks in even when the
// function panics). A Handle is a small value, not a pointer: a checkout
// that finds a free slot allocates nothing and takes the pool's lock once.
//
// When every slot is busy, callers wait in a strictly FIFO queue: a slot
// checked in goes straight to the longest waiter, and no caller arriving
// later can take it while anyone waits. A waiting caller gives up after
// Settings.Timeout (ErrTimeout) or when its context ends (an error that
// unwraps to ctx.Err()). When MaxWaiting callers already wait, a new
// caller is turned away at once with ErrFull, the seed design's
// "bulkhead full".
//
// # Overflow
//
// Size slots are the pool's normal width; Overflow slots are lent on top
// when all of them are busy. Stats.Overflowing shows how many are in use,
// so health can call a pool that lives in its overflow degraded.
//
// # Rate limit
//
// A pool with Settings.RateLimit also spends a token bucket (burst of one
// second's worth) on every checkout. The token is taken after the slot,
// so a caller turned away for a full pool spends none. If the token would
// only come after the caller's remaining timeout the caller is turned
// away at once with ErrRateLimited instead of waiting in vain; otherwise
// it waits for the token, honouring its context.
//
// # Leaks and statistics
//
// Stats gives what health and metrics show: available, busy, waiting and
// capacity, counts of checkouts and of rejections by reason (Reason
// names them for metric labels), and how many slots have been held
// longer than Settings.HoldWarning. Held lists the long-held slots, the
// seed's "resource leaks". How hold times are measured, and what that
// costs, is described on Held.
//
// The lifetime counters cannot say how the pool is doing now: after a
// long healthy run a storm of rejections barely moves their ratio.
// RecentRejectionRate (and Stats.Recent) counts only the latest checkout
// attempts, at most 256 and only those of about the last RecentPeriod,
// and it is what the pain of a rejection is graded by. It costs the
// checkout no clock read: the window counts attempts, and is stamped with
// the clock once every 32 of them.
//
// # Changing the settings
//
// SetSettings resizes a pool in place, as a configuration reload does.
// Growing lends the new slots at once, to the longest waiters first.
// Shrinking takes nothing back: callers holding slots finish and check
// them in as usual, and new checkouts wait, under the usual queue limits,
// until fewer slots are busy than the new capacity. Timeout and
// MaxWaiting apply to callers that come after the change, the rate limit
// to the next checkout admitted.
//
// # Concurrency
//
// A *Bulkhead is safe for concurrent use. The package starts no
// goroutines: a waiting caller sleeps on its own timer.
package bulkhead
