package bulkhead

import (
	"math"
	"time"

	"github.com/vsm-relay/relay/internal/fielderr"
)

// Settings configure a Bulkhead. The zero value of each field means the
// default noted beside it.
type Settings struct {
	// Size is the number of slots always available. Required (>= 1).
	Size int
	// Overflow is the number of extra slots lent out when all Size slots
	// are busy. Zero: none.
	Overflow int
	// Timeout bounds how long a caller waits for a slot (and for a rate
	// token) before ErrTimeout / ErrRateLimited. Zero: 5s.
	Timeout time.Duration
	// RateLimit is the number of checkouts allowed per second, with a
	// burst of one second's worth (at least one). Zero: unlimited.
	RateLimit float64
	// MaxWaiting bounds the FIFO queue of callers waiting for a slot;
	// a caller beyond it gets ErrFull at once. Zero: Size. Negative: no
	// waiting at all (ErrFull as soon as every slot is busy).
	MaxWaiting int
	// HoldWarning is how long a slot may be held before Stats counts it as
	// held too long (a likely leak). Zero: 4 x Timeout.
	HoldWarning time.Duration
}

// DefaultTimeout is the checkout timeout when Settings.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// WithDefaults returns s with every zero field set to its default. It is
// idempotent: a negative MaxWaiting stays negative rather than becoming
// zero, which a second call would read as "Size".
func (s Settings) WithDefaults() Settings {
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.MaxWaiting == 0 {
		s.MaxWaiting = s.Size
	}
	if s.HoldWarning == 0 {
		s.HoldWarning = 4 * s.Timeout
		if s.Timeout > math.MaxInt64/4 {
			s.HoldWarning = math.MaxInt64
		}
	}
	return s
}

// Capacity is the most slots that can be checked out at once.
func (s Settings) Capacity() int { return s.Size + s.Overflow }

// maxWaiting is the effective bound of the wait queue of defaulted
// settings.
func (s Settings) maxWaiting() int { return max(s.MaxWaiting, 0) }

// Validate reports every bad value, keyed by its configuration name.
func (s Settings) Validate() error {
	var l fielderr.List
	if s.Size < 1 {
		l.Addf("size", "must be at least 1, got %d", s.Size)
	}
	if s.Overflow < 0 {
		l.Addf("overflow", "must not be negative, got %d", s.Overflow)
	}
	if s.Size > maxSlots || s.Overflow > maxSlots || s.Size+s.Overflow > maxSlots {
		l.Addf("size", "size plus overflow must be at most %d", maxSlots)
	}
	if s.Timeout < 0 {
		l.Addf("timeout", "must not be negative, got %s", s.Timeout)
	}
	if s.RateLimit < 0 || math.IsNaN(s.RateLimit) || math.IsInf(s.RateLimit, 0) {
		l.Addf("rate_limit", "must be a non-negative number of checkouts per second, got %v", s.RateLimit)
	}
	if s.MaxWaiting > maxSlots*16 {
		l.Addf("max_waiting", "must be at most %d, got %d", maxSlots*16, s.MaxWaiting)
	}
	if s.HoldWarning < 0 {
		l.Addf("hold_warning", "must not be negative, got %s", s.HoldWarning)
	}
	return l.Err()
}

// maxSlots keeps a pool's slot table bounded (and slot indices in an
// int32 inside a Handle).
const maxSlots = 1 << 16
