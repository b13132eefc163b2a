package breaker

import (
	"errors"
	"strconv"
)

// State is where a breaker stands. The numbers are the values of the
// relay_breaker_state gauge, so they must not change.
type State int32

const (
	// Closed lets every call through and counts failures.
	Closed State = 0
	// HalfOpen lets a few probe calls through to learn whether the
	// downstream has recovered.
	HalfOpen State = 1
	// Open rejects every call until reset_timeout has passed.
	Open State = 2
)

// String returns the name used in configuration, events and /health:
// "closed", "half_open" or "open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half_open"
	case Open:
		return "open"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText encodes a State by its name, so that JSON shows "open"
// rather than 2.
func (s State) MarshalText() ([]byte, error) {
	switch s {
	case Closed, HalfOpen, Open:
		return []byte(s.String()), nil
	}
	return nil, errors.New("breaker: unknown state " + strconv.Itoa(int(s)))
}

// Outcome is what a caller reports about a call it was permitted to make.
type Outcome uint8

const (
	// Success counts toward closing a half-open breaker (and, with the
	// rate thresholds on, as a call in the window).
	Success Outcome = iota
	// Failure counts toward opening the breaker. Any value other than
	// Success and Neutral is treated as Failure.
	Failure
	// Neutral counts neither way: the call said nothing about the
	// downstream's health (the caller gave up, the request was refused as
	// malformed). It still gives back a half-open probe slot.
	Neutral
)

// String returns "success", "failure" or "neutral".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Neutral:
		return "neutral"
	}
	return "failure"
}

// ErrOpen is returned instead of making a call while the breaker is open
// (and, through ErrTooManyProbes, while half-open probes are all taken).
var ErrOpen = errors.New("circuit breaker is open")

// ErrTooManyProbes is returned while the breaker is half-open and every
// probe slot is taken. errors.Is(ErrTooManyProbes, ErrOpen) is true, so
// callers that only care whether they may call need check only ErrOpen.
var ErrTooManyProbes error = tooManyProbes{}

type tooManyProbes struct{}

func (tooManyProbes) Error() string {
	return "circuit breaker is half-open and all probe slots are taken"
}

func (tooManyProbes) Is(target error) bool { return target == ErrOpen }

// errNeutral marks errors wrapped by MarkNeutral; it stays unexported so
// that only MarkNeutral can produce a neutral error.
var errNeutral = errors.New("neutral")

type neutralError struct{ err error }

func (e *neutralError) Error() string        { return e.err.Error() }
func (e *neutralError) Unwrap() error        { return e.err }
func (e *neutralError) Is(target error) bool { return target == errNeutral }

// MarkNeutral wraps err so that Call reports the call as Neutral: it is
// returned to the caller unchanged in meaning (errors.Is and errors.As see
// through it) but does not count against the downstream. MarkNeutral(nil)
// is nil.
func MarkNeutral(err error) error {
	if err == nil {
		return nil
	}
	return &neutralError{err: err}
}

// IsNeutral reports whether err, or any error it wraps, was marked with
// MarkNeutral.
func IsNeutral(err error) bool { return err != nil && errors.Is(err, errNeutral) }
