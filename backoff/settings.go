package backoff

import (
	"fmt"
	"math"
	"time"

	"github.com/vsm-relay/relay/internal/fielderr"
)

// Jitter is how a computed delay is randomised.
type Jitter uint8

const (
	// Full picks uniformly in [0, d].
	Full Jitter = iota
	// Equal picks uniformly in [d/2, d].
	Equal
	// Decorrelated picks uniformly in [initial, 3 x previous delay], capped
	// at max (the "decorrelated jitter" of the AWS architecture blog).
	Decorrelated
	// None uses d as computed.
	None
)

var jitterNames = [...]string{Full: "full", Equal: "equal", Decorrelated: "decorrelated", None: "none"}

func (j Jitter) String() string {
	if int(j) < len(jitterNames) {
		return jitterNames[j]
	}
	return fmt.Sprintf("Jitter(%d)", uint8(j))
}

// ParseJitter reads a jitter name: full, equal, decorrelated or none.
func ParseJitter(s string) (Jitter, error) {
	for i, n := range jitterNames {
		if s == n {
			return Jitter(i), nil
		}
	}
	return 0, fmt.Errorf("unknown jitter %q (want full, equal, decorrelated or none)", s)
}

// Policy is a retry policy: exponential backoff with jitter. The zero
// value of each field means the default noted beside it.
type Policy struct {
	// Initial is the base delay before the first retry. Zero: 100ms.
	Initial time.Duration
	// Max caps every delay, including a server-supplied one. Zero: 10s.
	Max time.Duration
	// Multiplier grows the delay per retry (>= 1). Zero: 2.
	Multiplier float64
	// Jitter randomises each delay. Zero value: Full.
	Jitter Jitter
	// MaxRetries is how many retries follow the first attempt. Zero: none
	// (one attempt only). Set it explicitly; the configuration default is 3.
	MaxRetries int
}

// Defaults of the zero-valued fields.
const (
	DefaultInitial    = 100 * time.Millisecond
	DefaultMax        = 10 * time.Second
	DefaultMultiplier = 2.0
)

// WithDefaults returns p with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	if p.Initial == 0 {
		p.Initial = DefaultInitial
	}
	if p.Max == 0 {
		p.Max = DefaultMax
	}
	if p.Multiplier == 0 {
		p.Multiplier = DefaultMultiplier
	}
	return p
}

// Validate reports every bad value, keyed by its configuration name.
func (p Policy) Validate() error {
	var l fielderr.List
	if p.Initial < 0 {
		l.Addf("initial", "must not be negative, got %s", p.Initial)
	}
	if p.Max < 0 {
		l.Addf("max", "must not be negative, got %s", p.Max)
	}
	// Compared as Delay will use them: a defaulted side counts too, or
	// Initial: 20s alone would be clamped to the 10s default unreported.
	if d := p.WithDefaults(); p.Initial >= 0 && p.Max >= 0 && d.Max < d.Initial {
		l.Addf("max", "must not be less than initial (%s), got %s", withDefault(p.Initial, d.Initial), withDefault(p.Max, d.Max))
	}
	if p.Multiplier != 0 && (p.Multiplier < 1 || math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0)) {
		l.Addf("multiplier", "must be at least 1, got %v", p.Multiplier)
	}
	if int(p.Jitter) >= len(jitterNames) {
		l.Addf("jitter", "unknown jitter %d", p.Jitter)
	}
	if p.MaxRetries < 0 {
		l.Addf("max_retries", "must not be negative, got %d", p.MaxRetries)
	}
	if p.MaxRetries > 1000 {
		l.Addf("max_retries", "must be at most 1000, got %d", p.MaxRetries)
	}
	return l.Err()
}

// withDefault shows an effective value, marking one the policy left zero.
func withDefault(set, effective time.Duration) string {
	if set == 0 {
		return effective.String() + " by default"
	}
	return set.String()
}
