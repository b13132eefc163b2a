package bulkhead

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestRateLimit(t *testing.T) {
	tests := []struct {
		name    string
		rate    float64
		timeout time.Duration
		// checkouts made one after the other, each held, each with its
		// own timeout
		wantErr []error
		wantAt  []time.Duration
	}{
		{
			name:    "token too late is refused at once",
			rate:    1, // burst 1, then one a second
			timeout: 500 * time.Millisecond,
			wantErr: []error{nil, ErrRateLimited, ErrRateLimited},
			wantAt:  []time.Duration{0, 0, 0},
		},
		{
			name:    "token within the timeout is waited for",
			rate:    2, // burst 2, then one each 500ms
			timeout: 5 * time.Second,
			wantErr: []error{nil, nil, nil, nil},
			wantAt:  []time.Duration{0, 0, 500 * time.Millisecond, time.Second},
		},
		{
			name:    "token exactly at the timeout is waited for",
			rate:    4, // burst 4, then one each 250ms
			timeout: 250 * time.Millisecond,
			wantErr: []error{nil, nil, nil, nil, nil},
			wantAt:  []time.Duration{0, 0, 0, 0, 250 * time.Millisecond},
		},
		{
			name:    "fractional rate has a burst of one",
			rate:    0.5,
			timeout: 3 * time.Second,
			wantErr: []error{nil, nil},
			wantAt:  []time.Duration{0, 2 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				b := mustNew(t, Settings{Size: 10, Timeout: tt.timeout, RateLimit: tt.rate})
				var held []Handle
				var want Stats
				for i := range tt.wantErr {
					h, err := b.Checkout(context.Background())
					if !errors.Is(err, tt.wantErr[i]) || (err == nil) != (tt.wantErr[i] == nil) {
						t.Fatalf("checkout %d: %v, want %v", i, err, tt.wantErr[i])
					}
					if at := time.Since(start); at != tt.wantAt[i] {
						t.Fatalf("checkout %d returned after %v, want %v", i, at, tt.wantAt[i])
					}
					if err == nil {
						held = append(held, h)
						want.Checkouts++
					} else {
						want.RejectedRateLimited++
					}
				}
				st := b.Stats()
				if st.Checkouts != want.Checkouts || st.RejectedRateLimited != want.RejectedRateLimited || st.Busy != len(held) {
					t.Fatalf("Checkouts %d, RejectedRateLimited %d, Busy %d; want %d, %d, %d",
						st.Checkouts, st.RejectedRateLimited, st.Busy, want.Checkouts, want.RejectedRateLimited, len(held))
				}
				for _, h := range held {
					checkin(t, b, h)
				}
			})
		})
	}
}

// After waiting for a slot, only what is left of the timeout is available
// for the rate token.
func TestRateLimitUsesRemainingTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		// One token each 2s; the second caller waits 1s for the slot, then
		// would need 1s more for a token with only 0.5s left.
		b := mustNew(t, Settings{Size: 1, Timeout: 1500 * time.Millisecond, RateLimit: 0.5})
		holder := checkout(t, b)
		waiting := goCheckout(context.Background(), b, start)
		time.Sleep(time.Second)
		checkin(t, b, holder)
		r := <-waiting
		if !errors.Is(r.err, ErrRateLimited) || r.at != time.Second || Reason(r.err) != "rate_limited" {
			t.Fatalf("got %v after %v, want ErrRateLimited after 1s", r.err, r.at)
		}
		if st := b.Stats(); st.Busy != 0 || st.Available != 1 || st.RejectedRateLimited != 1 || st.Checkouts != 1 {
			t.Fatalf("Busy %d, Available %d, RejectedRateLimited %d, Checkouts %d; want 0, 1, 1, 1",
				st.Busy, st.Available, st.RejectedRateLimited, st.Checkouts)
		}
	})
}

func TestRateLimitWaitEndsEarly(t *testing.T) {
	tests := []struct {
		name    string
		end     func(b *Bulkhead, cancel context.CancelFunc)
		wantErr error
	}{
		{"context cancelled", func(_ *Bulkhead, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"bulkhead closed", func(b *Bulkhead, _ context.CancelFunc) { b.Close() }, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				b := mustNew(t, Settings{Size: 2, Timeout: 5 * time.Second, RateLimit: 1})
				first := checkout(t, b) // spends the only token
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				waiting := goCheckout(ctx, b, start)
				pending(t, waiting)
				if got := b.Stats().Busy; got != 2 {
					t.Fatalf("Busy while waiting for a token = %d, want 2", got)
				}
				time.Sleep(200 * time.Millisecond)
				tt.end(b, cancel)
				r := <-waiting
				if !errors.Is(r.err, tt.wantErr) || r.at != 200*time.Millisecond {
					t.Fatalf("got %v after %v, want %v after 200ms", r.err, r.at, tt.wantErr)
				}
				if got := b.Stats().Busy; got != 1 {
					t.Fatalf("Busy = %d after the token wait ended, want 1 (slot passed on)", got)
				}
				checkin(t, b, first)
			})
		})
	}
}

// A cancelled token wait gives its token back: the next caller waits only
// for the token that was due, not for one after it.
func TestCancelledTokenIsRestored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 3, Timeout: 5 * time.Second, RateLimit: 1})
		first := checkout(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		waiting := goCheckout(ctx, b, start)
		cancel()
		if r := <-waiting; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled caller: %v", r.err)
		}
		second := checkout(t, b)
		if at := time.Since(start); at != time.Second {
			t.Fatalf("next token came after %v, want 1s", at)
		}
		checkin(t, b, first)
		checkin(t, b, second)
	})
}

func TestRateLimitedFullPoolSpendsNoToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 1, MaxWaiting: -1, RateLimit: 1})
		h := checkout(t, b)
		if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrFull) {
			t.Fatalf("got %v, want ErrFull", err)
		}
		checkin(t, b, h)
		time.Sleep(time.Second) // one new token
		h = checkout(t, b)
		checkin(t, b, h)
		if at := time.Since(start); at != time.Second {
			t.Fatalf("checkout waited until %v, want no wait after the refill at 1s", at)
		}
	})
}

func TestBurst(t *testing.T) {
	tests := []struct {
		rate float64
		want int
	}{
		{0.1, 1},
		{1, 1},
		{1.5, 2},
		{10, 10},
		{30, 30},
		{1e300, 1<<31 - 1},
	}
	for _, tt := range tests {
		if got := burst(tt.rate); got != tt.want {
			t.Errorf("burst(%v) = %d, want %d", tt.rate, got, tt.want)
		}
	}
}
