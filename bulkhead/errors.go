package bulkhead

import (
	"errors"
)

// Rejections. Checkout returns them as they are (never wrapped, so that a
// rejection under overload costs no allocation); compare with errors.Is.
var (
	// ErrFull means every slot is busy and the wait queue already holds
	// Settings.MaxWaiting callers. It is returned at once.
	ErrFull = errors.New("bulkhead: full")
	// ErrTimeout means the caller waited Settings.Timeout for a slot.
	ErrTimeout = errors.New("bulkhead: timed out waiting for a slot")
	// ErrRateLimited means the wait for a rate token would have passed
	// the caller's remaining timeout, so the caller was turned away at
	// once rather than made to wait in vain.
	ErrRateLimited = errors.New("bulkhead: rate limited")
	// ErrClosed means the bulkhead was closed.
	ErrClosed = errors.New("bulkhead: closed")
	// ErrBadCheckin means a handle was checked in twice, is the zero
	// Handle, or came from another bulkhead.
	ErrBadCheckin = errors.New("bulkhead: handle not checked out from this bulkhead")
)

// Reason names a checkout rejection for a metric label: "full",
// "timeout", "rate_limited", "closed", or "cancelled" when the caller's
// context ended while it waited. Any other error gives "": in particular
// a context error returned by the function given to WithResource is that
// function's failure, not a rejection.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrFull):
		return "full"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, errCancelled):
		return "cancelled"
	}
	return ""
}

// errCancelled is matched only by cancelledError, so that Reason can tell
// a caller's context ending while it waited from a context error that the
// function given to WithResource returned (and errors.Is allocates
// nothing, where errors.As would).
var errCancelled = errors.New("bulkhead: cancelled while waiting")

// cancelledError is the caller's own context ending while it waited. It
// unwraps to the context's error.
type cancelledError struct {
	pool string
	err  error
}

func (e *cancelledError) Error() string {
	return "bulkhead " + e.pool + ": gave up waiting: " + e.err.Error()
}

func (e *cancelledError) Unwrap() error { return e.err }

func (e *cancelledError) Is(target error) bool { return target == errCancelled }
