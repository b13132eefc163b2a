// Package retrybudget bounds in-process retries of a downstream to a share
// of its calls in a sliding window, as Finagle, Envoy and gRPC retry
// throttling do.
//
// A budget lets a retry through while the retries in the window stay
// within Ratio of the calls in it, plus MinPerSecond for every second of
// the window, so that a quiet downstream can still be retried. When the
// budget is spent a retryable failure skips its in-process retries.
package retrybudget

import (
	"math"
	"time"

	"github.com/vsm-relay/relay/internal/fielderr"
)

// Settings configure a budget. The zero value of each field means the
// default noted beside it, so the zero Settings is the contract's budget:
// a fifth of the calls, plus 10 retries a second, over 10s.
type Settings struct {
	// Ratio is how many retries per call in the window retries may add,
	// from 0 to MaxRatio: 0.2 lets one call in five be retried once.
	// Zero: 0.2. A ratio of at least a backoff policy's max_retries never
	// binds, so MaxRatio turns the budget off.
	Ratio float64
	// MinPerSecond is a floor of retries per second of the window allowed
	// whatever the calls, so that a downstream with little traffic can
	// still be retried. Not negative. Zero: 10.
	MinPerSecond float64
	// Window is the sliding window over which calls and retries are
	// counted. Zero: 10s.
	Window time.Duration
}

// Defaults of the zero-valued fields.
const (
	DefaultRatio        = 0.2
	DefaultMinPerSecond = 10.0
	DefaultWindow       = 10 * time.Second
)

// MaxRatio is the largest Ratio: as many retries per call as a backoff
// policy may make at most, so that a budget of MaxRatio never binds.
const MaxRatio = 1000

// maxWindow keeps a window's counters meaningful: retries an hour ago say
// nothing about the downstream now.
const maxWindow = time.Hour

// WithDefaults returns s with every zero field set to its default.
func (s Settings) WithDefaults() Settings {
	if s.Ratio == 0 {
		s.Ratio = DefaultRatio
	}
	if s.MinPerSecond == 0 {
		s.MinPerSecond = DefaultMinPerSecond
	}
	if s.Window == 0 {
		s.Window = DefaultWindow
	}
	return s
}

// Validate reports every bad value, each as a *fielderr.Error keyed by the
// setting's configuration name (ratio, min_per_second, window).
func (s Settings) Validate() error {
	var l fielderr.List
	if s.Ratio < 0 || s.Ratio > MaxRatio || math.IsNaN(s.Ratio) {
		l.Addf("ratio", "must be from 0 to %d retries per call, got %v", MaxRatio, s.Ratio)
	}
	if s.MinPerSecond < 0 || math.IsNaN(s.MinPerSecond) || math.IsInf(s.MinPerSecond, 0) {
		l.Addf("min_per_second", "must be a non-negative number of retries per second, got %v", s.MinPerSecond)
	}
	switch {
	case s.Window < 0:
		l.Addf("window", "must not be negative, got %s", s.Window)
	case s.Window > maxWindow:
		l.Addf("window", "must be at most %s, got %s", maxWindow, s.Window)
	}
	return l.Err()
}
