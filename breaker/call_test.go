package breaker

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestCallClassifies(t *testing.T) {
	errParentGone := errors.New("parent gone")
	tests := []struct {
		name     string
		fn       func(ctx context.Context, cancelParent func()) error
		wantErr  error
		failures int
		last     string
	}{
		{
			name:    "success",
			fn:      func(context.Context, func()) error { return nil },
			wantErr: nil,
		},
		{
			name:     "an error is a failure",
			fn:       func(context.Context, func()) error { return err503 },
			wantErr:  err503,
			failures: 1,
			last:     "HTTP 503",
		},
		{
			name: "the breaker's own deadline is a failure",
			fn: func(ctx context.Context, _ func()) error {
				<-ctx.Done()
				return ctx.Err()
			},
			wantErr:  context.DeadlineExceeded,
			failures: 1,
			last:     "context deadline exceeded",
		},
		{
			name: "a cancelled parent is neutral",
			fn: func(ctx context.Context, cancelParent func()) error {
				cancelParent()
				<-ctx.Done()
				return errParentGone
			},
			wantErr: errParentGone,
		},
		{
			name:    "a neutral-marked error is neutral and returned",
			fn:      func(context.Context, func()) error { return MarkNeutral(err503) },
			wantErr: err503,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, err := New("call", Settings{Timeout: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				parent, cancel := context.WithCancel(t.Context())
				defer cancel()
				began := time.Now()
				var deadline time.Time
				got := b.Call(parent, func(ctx context.Context) error {
					deadline, _ = ctx.Deadline()
					return tt.fn(ctx, cancel)
				})
				if !errors.Is(got, tt.wantErr) || (tt.wantErr == nil) != (got == nil) {
					t.Fatalf("Call = %v, want %v", got, tt.wantErr)
				}
				if !deadline.Equal(began.Add(5 * time.Second)) {
					t.Fatalf("fn's deadline %v, want Timeout after %v", deadline, began)
				}
				if snap := b.Snapshot(); snap.FailureCount != tt.failures || snap.LastFailure != tt.last {
					t.Fatalf("FailureCount %d LastFailure %q, want %d %q", snap.FailureCount, snap.LastFailure, tt.failures, tt.last)
				}
			})
		})
	}
}

func TestCallRejectsWithoutCalling(t *testing.T) {
	b, _, _ := newTest(t, Settings{FailureThreshold: 1})
	called := 0
	fn := func(context.Context) error { called++; return nil }

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Call(ctx, fn); err != context.Canceled {
		t.Fatalf("Call with an ended context = %v, want context.Canceled", err)
	}
	fail(t, b, err503)
	if err := b.Call(t.Context(), fn); err != ErrOpen {
		t.Fatalf("Call while open = %v, want ErrOpen", err)
	}
	if called != 0 {
		t.Fatalf("fn called %d times", called)
	}
}

func TestCallPanicCountsAndRepanics(t *testing.T) {
	b, fc, _ := newTest(t, Settings{FailureThreshold: 1, SuccessThreshold: 1})
	halfOpen(t, b, fc)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the fn's panic", r)
			}
		}()
		_ = b.Call(t.Context(), func(context.Context) error { panic("boom") })
	}()
	snap := b.Snapshot()
	if snap.State != Open || snap.LastFailure != "call panicked" {
		t.Fatalf("after a panicking probe: %+v", snap)
	}
}

func TestMarkNeutral(t *testing.T) {
	if MarkNeutral(nil) != nil {
		t.Fatal("MarkNeutral(nil) != nil")
	}
	wrapped := MarkNeutral(err503)
	if !IsNeutral(wrapped) || !errors.Is(wrapped, err503) || wrapped.Error() != "HTTP 503" {
		t.Fatalf("MarkNeutral(err503) = %v", wrapped)
	}
	if IsNeutral(err503) || IsNeutral(nil) {
		t.Fatal("IsNeutral of an unmarked error")
	}
	if outer := errors.Join(errDown, wrapped); !IsNeutral(outer) {
		t.Fatal("IsNeutral does not see through wrapping")
	}
}
