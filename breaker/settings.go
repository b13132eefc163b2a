package breaker

import (
	"time"

	"github.com/vsm-relay/relay/internal/fielderr"
)

// Settings configure a Breaker. The zero value of every field means the
// default noted beside it; Validate reports the problems of explicitly bad
// values by their configuration key.
type Settings struct {
	// FailureThreshold is how many failures within WindowSize open the
	// breaker. Zero: 5.
	FailureThreshold int
	// SuccessThreshold is how many probe successes in half_open close the
	// breaker; it is also how many probes may run at once. Zero: 3.
	SuccessThreshold int
	// ResetTimeout is how long the breaker stays open before it lets
	// probes through (half_open). Zero: 60s.
	ResetTimeout time.Duration
	// HalfOpenTimeout bounds the half_open period: probes that have not
	// closed the breaker within it open it again. Zero: 30s.
	HalfOpenTimeout time.Duration
	// WindowSize is the sliding window over which failures (and, when the
	// rate thresholds are on, calls) are counted; older ones are
	// forgotten. Zero: 60s.
	WindowSize time.Duration
	// Timeout bounds each call made through Call, via its context. Zero:
	// 10s. The two-step form (Allow/Done) leaves timing to the caller.
	Timeout time.Duration

	// FailureRateThreshold, when above zero, also opens the breaker once
	// the share of failed calls in the window reaches it (0 < r <= 1),
	// provided at least MinimumCalls calls were made. Zero: off.
	FailureRateThreshold float64
	// MinimumCalls is the least number of calls in the window before either
	// rate threshold is judged. Zero: 10.
	MinimumCalls int
	// SlowCallDuration, when above zero, marks calls slower than it as
	// slow. Zero: off.
	SlowCallDuration time.Duration
	// SlowCallRateThreshold opens the breaker once the share of slow calls
	// in the window reaches it (0 < r <= 1). Zero with SlowCallDuration
	// set: 1.0 (every call in the window slow).
	SlowCallRateThreshold float64

	// Share makes the relay's fleet coordination share this breaker's
	// failures and transitions with peer relays that have a breaker of
	// the same name; the breaker package itself ignores it. Zero: false,
	// the breaker decides alone.
	Share bool
}

// Defaults of the zero-valued fields.
const (
	DefaultFailureThreshold = 5
	DefaultSuccessThreshold = 3
	DefaultResetTimeout     = 60 * time.Second
	DefaultHalfOpenTimeout  = 30 * time.Second
	DefaultWindowSize       = 60 * time.Second
	DefaultTimeout          = 10 * time.Second
	DefaultMinimumCalls     = 10
)

// WithDefaults returns s with every zero field set to its default.
func (s Settings) WithDefaults() Settings {
	if s.FailureThreshold == 0 {
		s.FailureThreshold = DefaultFailureThreshold
	}
	if s.SuccessThreshold == 0 {
		s.SuccessThreshold = DefaultSuccessThreshold
	}
	if s.ResetTimeout == 0 {
		s.ResetTimeout = DefaultResetTimeout
	}
	if s.HalfOpenTimeout == 0 {
		s.HalfOpenTimeout = DefaultHalfOpenTimeout
	}
	if s.WindowSize == 0 {
		s.WindowSize = DefaultWindowSize
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.MinimumCalls == 0 {
		s.MinimumCalls = DefaultMinimumCalls
	}
	if s.SlowCallDuration > 0 && s.SlowCallRateThreshold == 0 {
		s.SlowCallRateThreshold = 1
	}
	return s
}

// Validate reports every bad value, each as a *fielderr.Error keyed by the
// setting's configuration name (failure_threshold, reset_timeout, ...).
func (s Settings) Validate() error {
	var l fielderr.List
	nonNegInt := func(key string, v int) {
		if v < 0 {
			l.Addf(key, "must not be negative, got %d", v)
		}
	}
	nonNegDur := func(key string, v time.Duration) {
		if v < 0 {
			l.Addf(key, "must not be negative, got %s", v)
		}
	}
	rate := func(key string, v float64) {
		if v < 0 || v > 1 || v != v {
			l.Addf(key, "must be a fraction between 0 and 1, got %v", v)
		}
	}
	nonNegInt("failure_threshold", s.FailureThreshold)
	nonNegInt("success_threshold", s.SuccessThreshold)
	nonNegInt("minimum_calls", s.MinimumCalls)
	nonNegDur("reset_timeout", s.ResetTimeout)
	nonNegDur("half_open_timeout", s.HalfOpenTimeout)
	nonNegDur("window_size", s.WindowSize)
	nonNegDur("timeout", s.Timeout)
	nonNegDur("slow_call_duration", s.SlowCallDuration)
	rate("failure_rate_threshold", s.FailureRateThreshold)
	rate("slow_call_rate_threshold", s.SlowCallRateThreshold)
	if s.SlowCallRateThreshold > 0 && s.SlowCallDuration == 0 {
		l.Addf("slow_call_rate_threshold", "needs slow_call_duration to be set")
	}
	if s.FailureThreshold > maxThreshold {
		l.Addf("failure_threshold", "must be at most %d, got %d", maxThreshold, s.FailureThreshold)
	}
	if s.SuccessThreshold > maxThreshold {
		l.Addf("success_threshold", "must be at most %d, got %d", maxThreshold, s.SuccessThreshold)
	}
	return l.Err()
}

// maxThreshold keeps the per-breaker failure ring small and bounded.
const maxThreshold = 10000
