package backoff

import (
	"math"
	"math/rand/v2"
	"time"
)

// Rand is the randomness jitter is drawn from. A *rand.Rand of
// math/rand/v2 satisfies it; a seeded one makes a sequence reproducible.
type Rand interface {
	// Int64N returns a uniform value in [0, n); n > 0.
	Int64N(n int64) int64
}

// runtimeRand draws from math/rand/v2's top-level source, which is safe
// for concurrent use. Being an empty struct, it goes into the Rand
// interface without an allocation.
type runtimeRand struct{}

func (runtimeRand) Int64N(n int64) int64 { return rand.Int64N(n) }

// Backoff is the state of one retried operation: how many retries it was
// handed and the delay before the last one. It is a small value, created
// by Policy.Start, and not safe for concurrent use.
//
// The zero Backoff hands out no retries: Next reports false at once.
type Backoff struct {
	p       Policy // effective: defaults applied, bounds sanitised
	r       Rand
	retries int
	prev    time.Duration // last delay handed out; Decorrelated grows from it
}

// Start begins the backoff of one operation, drawing jitter from a
// concurrency-safe default source. Zero fields of p take their defaults;
// p is not validated (call Validate at configuration time), but even a bad
// policy yields delays within [0, Max].
func (p Policy) Start() Backoff { return p.StartWith(runtimeRand{}) }

// StartWith is Start with jitter drawn from r (nil: the default source).
func (p Policy) StartWith(r Rand) Backoff {
	if r == nil {
		r = runtimeRand{}
	}
	return Backoff{p: p.effective(), r: r}
}

// Next returns the delay to wait before the next retry, or false once
// MaxRetries retries have been handed out.
func (b *Backoff) Next() (time.Duration, bool) { return b.NextAfter(0) }

// NextAfter is Next, except that a positive serverDelay (the server's
// Retry-After, say) replaces the computed delay, capped at Max. It still
// spends one retry. The delay handed out becomes the "previous delay"
// that Decorrelated jitter grows from.
func (b *Backoff) NextAfter(serverDelay time.Duration) (time.Duration, bool) {
	if b.retries >= b.p.MaxRetries {
		return 0, false
	}
	b.retries++
	var d time.Duration
	if serverDelay > 0 {
		d = min(serverDelay, b.p.Max)
	} else {
		d = b.jittered()
	}
	b.prev = d
	return d, true
}

// Retries reports how many retries Next and NextAfter have handed out.
func (b *Backoff) Retries() int { return b.retries }

func (b *Backoff) jittered() time.Duration {
	p := &b.p
	switch p.Jitter {
	case Full:
		return between(b.r, 0, p.curve(b.retries))
	case Equal:
		d := p.curve(b.retries)
		return between(b.r, d/2, d)
	case Decorrelated:
		// After a server delay shorter than Initial the range would be
		// empty; grow from Initial instead.
		prev := max(b.prev, p.Initial)
		return min(between(b.r, p.Initial, times3(prev)), p.Max)
	default:
		return p.curve(b.retries)
	}
}

// Delay returns the un-jittered delay before retry n (counted from 1; a
// smaller n counts as 1): min(Max, Initial × Multiplier^(n-1)), with zero
// fields taking their defaults. It saturates at Max instead of
// overflowing, however large the multiplier or n.
func (p Policy) Delay(retry int) time.Duration { return p.effective().curve(retry) }

// effective applies the defaults and clamps what Validate would reject,
// so that no policy can produce a delay outside [0, Max].
func (p Policy) effective() Policy {
	p = p.WithDefaults()
	p.Max = max(p.Max, 0)
	p.Initial = min(max(p.Initial, 0), p.Max)
	return p
}

// curve is Delay for a policy already made effective.
func (p Policy) curve(n int) time.Duration {
	n = max(n, 1)
	f := float64(p.Initial) * math.Pow(p.Multiplier, float64(n-1))
	// The negated comparison also sends NaN and +Inf to Max, and keeps
	// the conversion below within int64.
	if !(f < float64(p.Max)) {
		return p.Max
	}
	if f <= 0 {
		return 0
	}
	return time.Duration(f)
}

// between returns a uniform duration in [lo, hi], staying in range even
// if r misbehaves.
func between(r Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	span := int64(hi - lo)
	if span < math.MaxInt64 {
		span++
	}
	v := r.Int64N(span)
	if v < 0 || v > int64(hi-lo) {
		return hi
	}
	return lo + time.Duration(v)
}

// times3 is 3×d, saturating at the largest Duration.
func times3(d time.Duration) time.Duration {
	if d > math.MaxInt64/3 {
		return math.MaxInt64
	}
	return 3 * d
}
