package backoff

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"testing/synctest"
	"time"
)

var errBoom = errors.New("boom")

func TestRetry(t *testing.T) {
	none := Policy{Jitter: None, MaxRetries: 3} // delays 100ms, 200ms, 400ms
	tests := []struct {
		name string
		p    Policy
		// errs[i] is returned by attempt i+1; past the end, attempts succeed.
		errs     []error
		timeout  time.Duration // 0: none
		cancel   bool          // ctx ended before Retry is called
		wantErr  string        // "" : success
		wantIs   []error
		wantPerm bool
		attempts int // attempts fn saw
		elapsed  time.Duration
	}{
		{name: "first attempt succeeds", p: none, attempts: 1},
		{name: "succeeds on the third", p: none, errs: []error{errBoom, errBoom},
			attempts: 3, elapsed: 300 * time.Millisecond},
		{name: "retries spent", p: none, errs: []error{errBoom, errBoom, errBoom, errBoom, errBoom},
			wantErr: "gave up after 4 attempts: boom", wantIs: []error{errBoom},
			attempts: 4, elapsed: 700 * time.Millisecond},
		{name: "no retries configured", p: Policy{}, errs: []error{errBoom},
			wantErr: "gave up after 1 attempt: boom", wantIs: []error{errBoom}, attempts: 1},
		{name: "permanent stops at once", p: none, errs: []error{errBoom, Permanent(fs.ErrNotExist)},
			wantErr: "gave up after 2 attempts on a permanent error: file does not exist",
			wantIs:  []error{fs.ErrNotExist}, wantPerm: true,
			attempts: 2, elapsed: 100 * time.Millisecond},
		{name: "wrapped permanent", p: none, errs: []error{fmt.Errorf("call: %w", Permanent(errBoom))},
			wantErr: "gave up after 1 attempt on a permanent error: call: boom",
			wantIs:  []error{errBoom}, wantPerm: true, attempts: 1},
		{name: "retry-after replaces the delay", p: none,
			errs:     []error{WithRetryAfter(errBoom, 3*time.Second), errBoom},
			attempts: 3, elapsed: 3*time.Second + 200*time.Millisecond},
		{name: "retry-after capped at max", p: none, errs: []error{WithRetryAfter(errBoom, time.Hour)},
			attempts: 2, elapsed: 10 * time.Second},
		{name: "retry-after wrapped", p: none,
			errs:     []error{fmt.Errorf("HTTP 429: %w", WithRetryAfter(errBoom, 2*time.Second))},
			attempts: 2, elapsed: 2 * time.Second},
		{name: "context ends while waiting", p: none, timeout: 250 * time.Millisecond,
			errs:     []error{errBoom, errBoom, errBoom},
			wantErr:  "gave up after 2 attempts: context deadline exceeded (last error: boom)",
			wantIs:   []error{errBoom, context.DeadlineExceeded},
			attempts: 2, elapsed: 250 * time.Millisecond},
		{name: "context ended before the first attempt", p: none, cancel: true,
			wantErr: "gave up after 0 attempts: context canceled", wantIs: []error{context.Canceled}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tc.timeout > 0 {
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				if tc.cancel {
					cancel()
				}
				calls := 0
				start := time.Now()
				err := Retry(ctx, tc.p, func(ctx context.Context, attempt int) error {
					calls++
					if attempt != calls {
						t.Errorf("attempt %d passed as %d", calls, attempt)
					}
					if attempt <= len(tc.errs) {
						return tc.errs[attempt-1]
					}
					return nil
				})
				if calls != tc.attempts {
					t.Errorf("fn ran %d times, want %d", calls, tc.attempts)
				}
				if got := time.Since(start); got != tc.elapsed {
					t.Errorf("took %v, want %v", got, tc.elapsed)
				}
				if tc.wantErr == "" {
					if err != nil {
						t.Fatalf("Retry = %v, want nil", err)
					}
					return
				}
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Retry = %v, want %q", err, tc.wantErr)
				}
				for _, target := range tc.wantIs {
					if !errors.Is(err, target) {
						t.Errorf("errors.Is(%v, %v) = false", err, target)
					}
				}
				if IsPermanent(err) != tc.wantPerm {
					t.Errorf("IsPermanent = %v, want %v", IsPermanent(err), tc.wantPerm)
				}
				var re *Error
				if !errors.As(err, &re) || re.Attempts != tc.attempts {
					t.Errorf("errors.As(*Error) = %+v, want Attempts %d", re, tc.attempts)
				}
			})
		})
	}
}

func TestRetryNilFunc(t *testing.T) {
	if err := Retry(t.Context(), Policy{}, nil); err == nil {
		t.Fatal("Retry with a nil function returned nil")
	}
}

func TestRetryReachesTypedErrors(t *testing.T) {
	pathErr := &fs.PathError{Op: "open", Path: "x", Err: fs.ErrPermission}
	err := Retry(t.Context(), Policy{}, func(context.Context, int) error { return Permanent(pathErr) })
	var got *fs.PathError
	if !errors.As(err, &got) || got != pathErr {
		t.Fatalf("errors.As(%v, *fs.PathError) = %v", err, got)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("errors.Is(%v, fs.ErrPermission) = false", err)
	}
}

func TestPermanent(t *testing.T) {
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	p := Permanent(errBoom)
	if !IsPermanent(p) || p.Error() != "boom" || !errors.Is(p, errBoom) {
		t.Errorf("Permanent(boom) = %v, IsPermanent %v", p, IsPermanent(p))
	}
	if Permanent(p) != p {
		t.Error("Permanent of a permanent error wrapped it again")
	}
	if IsPermanent(errBoom) || IsPermanent(nil) {
		t.Error("IsPermanent true for an unmarked error")
	}
}

func TestWithRetryAfter(t *testing.T) {
	if WithRetryAfter(nil, time.Second) != nil {
		t.Error("WithRetryAfter(nil) != nil")
	}
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"plain", errBoom, 0, false},
		{"nil", nil, 0, false},
		{"direct", WithRetryAfter(errBoom, 5*time.Second), 5 * time.Second, true},
		{"wrapped", fmt.Errorf("x: %w", WithRetryAfter(errBoom, time.Minute)), time.Minute, true},
		{"outermost wins", WithRetryAfter(WithRetryAfter(errBoom, time.Second), 2*time.Second), 2 * time.Second, true},
		{"inside permanent", Permanent(WithRetryAfter(errBoom, time.Second)), time.Second, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := RetryAfterOf(tc.err)
			if d != tc.want || ok != tc.wantOK {
				t.Errorf("RetryAfterOf = %v, %v; want %v, %v", d, ok, tc.want, tc.wantOK)
			}
			if tc.err != nil && tc.err.Error() != "boom" && !errors.Is(tc.err, errBoom) {
				t.Errorf("%v does not reach boom", tc.err)
			}
		})
	}
	if got := WithRetryAfter(errBoom, time.Second).Error(); got != "boom" {
		t.Errorf("message = %q, want boom", got)
	}
}
