// Package retrybudget bounds a target's in-process retries to a share of
// its calls, so that retries cannot multiply the load on a downstream that
// is already failing.
package retrybudget

import (
	"time"

	"github.com/vsm-relay/relay/internal/fielderr"
)

// Settings configure a Budget: in-process retries may add at most Ratio of
// the calls made within Window, plus MinPerSecond retries for each second
// of Window. The zero value of each field means its default.
type Settings struct {
	// Ratio is the share of the window's calls that may be retried.
	// Zero: 0.2.
	Ratio float64
	// MinPerSecond lets a target with few calls retry at all. Zero: 10.
	MinPerSecond float64
	// Window is how far back calls and retries are counted. Zero: 10s.
	Window time.Duration
}

// Defaults of the zero-valued fields.
const (
	DefaultRatio        = 0.2
	DefaultMinPerSecond = 10
	DefaultWindow       = 10 * time.Second
)

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

// Validate reports every bad value keyed by its configuration name (ratio,
// min_per_second, window).
func (s Settings) Validate() error {
	var l fielderr.List
	if !(s.Ratio >= 0 && s.Ratio <= 1) {
		l.Addf("ratio", "must be a fraction between 0 and 1, got %v", s.Ratio)
	}
	if !(s.MinPerSecond >= 0) || s.MinPerSecond > 1e9 {
		l.Addf("min_per_second", "must be between 0 and 1e9, got %v", s.MinPerSecond)
	}
	if s.Window < 0 {
		l.Addf("window", "must not be negative, got %s", s.Window)
	}
	return l.Err()
}
