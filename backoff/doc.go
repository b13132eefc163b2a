// Package backoff spaces out the retries of an operation that failed
// transiently: exponential backoff with jitter.
//
// # The curve
//
// A Policy describes the un-jittered curve: the delay before retry n
// (counted from 1) is min(Max, Initial × Multiplier^(n-1)). Policy.Delay
// computes it without overflowing, whatever the multiplier or n.
//
// # Jitter
//
// Many clients that failed together and retry on the same curve would
// stampede the recovering downstream together. Jitter spreads them:
//
//   - Full picks uniformly in [0, d], where d is the curve's delay;
//   - Equal picks uniformly in [d/2, d], keeping at least half the wait;
//   - Decorrelated ignores the curve and picks uniformly in
//     [Initial, 3 × previous delay], capped at Max (the first in
//     [Initial, 3 × Initial]), as described on the AWS architecture blog;
//   - None waits exactly d.
//
// Every delay, a server-supplied one included, is at most Max.
//
// # One operation
//
// Policy.Start returns a Backoff: the small per-operation state (how many
// retries were handed out, the previous delay). Backoff.Next hands out the
// next delay until MaxRetries retries are spent, without allocating.
// Backoff.NextAfter lets a delay the server asked for (HTTP Retry-After,
// read with ParseRetryAfter) replace the computed one.
//
// Retry wraps the whole loop: it runs a function, sleeps between attempts
// with Sleep (which honours the context), and stops on success, on an error
// marked with Permanent, when the retries are spent or when the context
// ends. An error wrapped with WithRetryAfter carries the server's delay
// into the loop. When Retry gives up it returns an *Error that says how
// many attempts ran and unwraps to the last error.
//
// # Concurrency
//
// A Policy is a plain value, safe to share. A Backoff belongs to one
// operation and is not safe for concurrent use; the default random source
// behind Policy.Start is.
package backoff
