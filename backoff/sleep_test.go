package backoff

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestSleep(t *testing.T) {
	errCause := errors.New("shutting down")
	tests := []struct {
		name    string
		d       time.Duration
		ctx     func(context.Context) (context.Context, context.CancelFunc)
		want    error
		elapsed time.Duration
	}{
		{"full wait", 3 * time.Second, passthrough, nil, 3 * time.Second},
		{"zero", 0, passthrough, nil, 0},
		{"negative", -time.Second, passthrough, nil, 0},
		{"deadline first", time.Minute, deadline(2 * time.Second), context.DeadlineExceeded, 2 * time.Second},
		{"deadline after", time.Second, deadline(2 * time.Second), nil, time.Second},
		{"cancelled midway", time.Minute, cancelAfter(1500*time.Millisecond, nil), context.Canceled, 1500 * time.Millisecond},
		{"cancelled with cause", time.Minute, cancelAfter(time.Second, errCause), context.Canceled, time.Second},
		{"already cancelled", time.Minute, cancelled, context.Canceled, 0},
		{"already cancelled, zero wait", 0, cancelled, context.Canceled, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := tc.ctx(t.Context())
				defer cancel()
				start := time.Now()
				err := Sleep(ctx, tc.d)
				if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
					t.Errorf("Sleep(%v) = %v, want %v", tc.d, err, tc.want)
				}
				if got := time.Since(start); got != tc.elapsed {
					t.Errorf("Sleep(%v) took %v, want %v", tc.d, got, tc.elapsed)
				}
			})
		})
	}
}

func passthrough(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

func deadline(d time.Duration) func(context.Context) (context.Context, context.CancelFunc) {
	return func(ctx context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, d)
	}
}

func cancelAfter(d time.Duration, cause error) func(context.Context) (context.Context, context.CancelFunc) {
	return func(ctx context.Context) (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancelCause(ctx)
		stop := time.AfterFunc(d, func() { cancel(cause) })
		return ctx, func() { stop.Stop(); cancel(nil) }
	}
}

func cancelled(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	return ctx, cancel
}
