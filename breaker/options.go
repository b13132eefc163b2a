package breaker

import (
	"log/slog"

	"github.com/vsm-relay/relay/clock"
)

// Option changes how New builds a Breaker.
type Option func(*options)

type options struct {
	clock     clock.Clock
	listeners []func(Transition)
	failures  []func(FailureEvent)
	logger    *slog.Logger
}

// WithClock makes the breaker read time from c instead of clock.Real.
// A nil c is ignored.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

// WithListener adds fn to the listeners told of every transition, as
// OnStateChange does, from the start. A nil fn is ignored.
func WithListener(fn func(Transition)) Option {
	return func(o *options) {
		if fn != nil {
			o.listeners = append(o.listeners, fn)
		}
	}
}

// WithFailureListener adds fn to the listeners told of every failure
// counted while closed, as OnFailure does, from the start. A nil fn is
// ignored.
func WithFailureListener(fn func(FailureEvent)) Option {
	return func(o *options) {
		if fn != nil {
			o.failures = append(o.failures, fn)
		}
	}
}

// WithLogger gives the breaker a logger for the one thing it has to say on
// its own: that a listener panicked. Without it that is discarded.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}
