package backoff

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Retry runs fn until it succeeds, returning nil. The attempt number
// passed to fn counts from 1. Between attempts it sleeps for the delay
// p.Start hands out, or for the delay carried by the error (see
// WithRetryAfter), capped at p.Max.
//
// It gives up, returning an *Error, when fn returns an error marked with
// Permanent, when p.MaxRetries retries are spent, or when ctx ends (fn is
// not started on an ended ctx). The *Error unwraps to fn's last error and,
// when ctx ended the loop, to ctx.Err(), so errors.Is and errors.As reach
// both.
func Retry(ctx context.Context, p Policy, fn func(ctx context.Context, attempt int) error) error {
	if fn == nil {
		return errors.New("backoff: Retry called with a nil function")
	}
	if err := ctx.Err(); err != nil {
		return &Error{Ctx: err}
	}
	b := p.Start()
	for attempt := 1; ; attempt++ {
		err := fn(ctx, attempt)
		if err == nil {
			return nil
		}
		if IsPermanent(err) {
			return &Error{Attempts: attempt, Last: err}
		}
		serverDelay, _ := RetryAfterOf(err)
		d, ok := b.NextAfter(serverDelay)
		if !ok {
			return &Error{Attempts: attempt, Last: err}
		}
		if cerr := Sleep(ctx, d); cerr != nil {
			return &Error{Attempts: attempt, Last: err, Ctx: cerr}
		}
	}
}

// Error is how Retry gives up.
type Error struct {
	// Attempts is how many times fn ran.
	Attempts int
	// Last is the last error fn returned, as returned: IsPermanent(Last)
	// tells that a permanent error stopped the loop. Nil only when ctx
	// had ended before the first attempt.
	Last error
	// Ctx is ctx.Err() when the context ended the loop, otherwise nil.
	Ctx error
}

func (e *Error) Error() string {
	n := plural(e.Attempts)
	switch {
	case e.Last == nil:
		return fmt.Sprintf("gave up after %s: %v", n, e.Ctx)
	case e.Ctx != nil:
		return fmt.Sprintf("gave up after %s: %v (last error: %v)", n, e.Ctx, e.Last)
	case IsPermanent(e.Last):
		return fmt.Sprintf("gave up after %s on a permanent error: %v", n, e.Last)
	default:
		return fmt.Sprintf("gave up after %s: %v", n, e.Last)
	}
}

// Unwrap returns the last error and the context's error, whichever are set.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Last != nil {
		errs = append(errs, e.Last)
	}
	if e.Ctx != nil {
		errs = append(errs, e.Ctx)
	}
	return errs
}

func plural(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// Permanent marks err as not worth retrying: Retry stops at it. The
// result reads and unwraps as err. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// WithRetryAfter attaches to err the delay a server asked for before the
// next attempt (an HTTP Retry-After, say), for Retry to wait instead of
// its computed delay. The result reads and unwraps as err.
// WithRetryAfter(nil, d) is nil.
func WithRetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, d: d}
}

// RetryAfterOf returns the delay attached to err (or an error it wraps)
// by WithRetryAfter, the outermost one when there are several.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.d, true
	}
	return 0, false
}

type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }
