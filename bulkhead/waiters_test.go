package bulkhead

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// result is what a background Checkout returned.
type result struct {
	h   Handle
	err error
	at  time.Duration // fake time since the bubble's start
}

// goCheckout starts a Checkout in the background and waits until it has
// either returned or blocked, so that callers queue in a known order.
func goCheckout(ctx context.Context, b *Bulkhead, start time.Time) <-chan result {
	ch := make(chan result, 1)
	go func() {
		h, err := b.Checkout(ctx)
		ch <- result{h, err, time.Since(start)}
	}()
	synctest.Wait()
	return ch
}

func pending(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("checkout returned early: %+v", r)
	default:
	}
}

func TestWaitersAreServedFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const waiters = 6
		b := mustNew(t, Settings{Size: 1, MaxWaiting: waiters})
		holder := checkout(t, b)

		var mu sync.Mutex
		var order []int
		var wg sync.WaitGroup
		for i := range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := b.Checkout(context.Background())
				if err != nil {
					t.Errorf("waiter %d: %v", i, err)
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				_ = b.Checkin(h)
			}()
			synctest.Wait() // waiter i is queued before i+1 starts
		}
		if got := b.Stats().Waiting; got != waiters {
			t.Fatalf("Waiting = %d, want %d", got, waiters)
		}
		checkin(t, b, holder)
		wg.Wait()
		if want := []int{0, 1, 2, 3, 4, 5}; !slices.Equal(order, want) {
			t.Fatalf("slots went to waiters in order %v, want %v", order, want)
		}
	})
}

func TestNewcomerDoesNotBargeAheadOfWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 1})
		holder := checkout(t, b)
		waiting := goCheckout(context.Background(), b, start)
		pending(t, waiting)

		// The slot checked in goes to the waiter, not to a caller that
		// arrives after it, even one that would not wait at all.
		checkin(t, b, holder)
		done, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Checkout(done); !errors.Is(err, context.Canceled) {
			t.Fatalf("newcomer got %v, want to be made to wait (and give up at once)", err)
		}
		r := <-waiting
		if r.err != nil || r.h.Slot() != holder.Slot() {
			t.Fatalf("waiter got %+v, want slot %d", r, holder.Slot())
		}
		checkin(t, b, r.h)
	})
}

func TestFreeSlotIgnoresDoneContext(t *testing.T) {
	b := mustNew(t, Settings{Size: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h, err := b.Checkout(ctx)
	if err != nil {
		t.Fatalf("Checkout with a done context and a free slot: %v", err)
	}
	checkin(t, b, h)
}

func TestFullQueueRejectsAtOnce(t *testing.T) {
	tests := []struct {
		name       string
		maxWaiting int
		wantQueued int
	}{
		{"no waiting", -1, 0},
		{"default is size", 0, 2},
		{"explicit", 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				b := mustNew(t, Settings{Size: 2, MaxWaiting: tt.maxWaiting})
				held := []Handle{checkout(t, b), checkout(t, b)}
				var queued []<-chan result
				for range tt.wantQueued {
					ch := goCheckout(context.Background(), b, start)
					pending(t, ch)
					queued = append(queued, ch)
				}
				if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrFull) {
					t.Fatalf("Checkout with a full queue: %v, want ErrFull", err)
				}
				if time.Since(start) != 0 {
					t.Fatalf("ErrFull came after %v, want at once", time.Since(start))
				}
				st := b.Stats()
				if st.Waiting != tt.wantQueued || st.RejectedFull != 1 {
					t.Fatalf("Waiting %d, RejectedFull %d; want %d, 1", st.Waiting, st.RejectedFull, tt.wantQueued)
				}
				b.Close()
				for _, ch := range queued {
					if r := <-ch; !errors.Is(r.err, ErrClosed) {
						t.Fatalf("queued caller after Close: %v", r.err)
					}
				}
				for _, h := range held {
					checkin(t, b, h)
				}
			})
		})
	}
}

func TestWaitTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 1, Timeout: 3 * time.Second})
		holder := checkout(t, b)
		r := <-goCheckout(context.Background(), b, start)
		if !errors.Is(r.err, ErrTimeout) || r.at != 3*time.Second {
			t.Fatalf("waiter got %v after %v, want ErrTimeout after 3s", r.err, r.at)
		}
		if got := Reason(r.err); got != "timeout" {
			t.Fatalf("Reason = %q", got)
		}
		st := b.Stats()
		if st.RejectedTimeout != 1 || st.Waiting != 0 || st.Busy != 1 {
			t.Fatalf("RejectedTimeout %d, Waiting %d, Busy %d; want 1, 0, 1", st.RejectedTimeout, st.Waiting, st.Busy)
		}
		checkin(t, b, holder)
		if got := b.Stats().Available; got != 1 {
			t.Fatalf("Available = %d after check-in, want 1 (no slot for the timed-out waiter)", got)
		}
	})
}

func TestContextEndsWhileWaiting(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		cancel  bool // cancel explicitly after queueing
		wantErr error
		wantAt  time.Duration
	}{
		{
			name:    "cancelled",
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			cancel:  true,
			wantErr: context.Canceled,
		},
		{
			name: "deadline before timeout",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), time.Second)
			},
			wantErr: context.DeadlineExceeded,
			wantAt:  time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				b := mustNew(t, Settings{Size: 1, Timeout: 5 * time.Second, MaxWaiting: 2})
				holder := checkout(t, b)
				ctx, cancel := tt.ctx()
				defer cancel()
				gaveUp := goCheckout(ctx, b, start)
				behind := goCheckout(context.Background(), b, start)
				if tt.cancel {
					cancel()
				}
				r := <-gaveUp
				if !errors.Is(r.err, tt.wantErr) || r.at != tt.wantAt || Reason(r.err) != "cancelled" {
					t.Fatalf("got %v after %v (reason %q), want %v after %v", r.err, r.at, Reason(r.err), tt.wantErr, tt.wantAt)
				}
				if st := b.Stats(); st.Waiting != 1 || st.Cancelled != 1 {
					t.Fatalf("Waiting %d, Cancelled %d; want 1, 1", st.Waiting, st.Cancelled)
				}
				// The slot goes past the caller that gave up.
				checkin(t, b, holder)
				r = <-behind
				if r.err != nil {
					t.Fatalf("caller behind: %v", r.err)
				}
				checkin(t, b, r.h)
				if st := b.Stats(); st.Available != 1 || st.Waiting != 0 {
					t.Fatalf("Available %d, Waiting %d; want 1, 0", st.Available, st.Waiting)
				}
			})
		})
	}
}

func TestCheckoutWithDoneContextOnBusyPool(t *testing.T) {
	b := mustNew(t, Settings{Size: 1})
	holder := checkout(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.Checkout(ctx)
	if !errors.Is(err, context.Canceled) || Reason(err) != "cancelled" {
		t.Fatalf("got %v, want a cancelled error at once", err)
	}
	if st := b.Stats(); st.Waiting != 0 || st.Cancelled != 1 {
		t.Fatalf("Waiting %d, Cancelled %d; want 0, 1", st.Waiting, st.Cancelled)
	}
	checkin(t, b, holder)
}

// A slot checked in at the very instant the waiter's timeout fires must
// end up either with the waiter (returned to it) or free, never lost.
func TestWaitEndsAsSlotArrives(t *testing.T) {
	for range 20 {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			b := mustNew(t, Settings{Size: 1, Timeout: time.Second})
			holder := checkout(t, b)
			waiting := goCheckout(context.Background(), b, start)
			time.Sleep(time.Second) // to the instant the waiter's timer fires
			checkin(t, b, holder)
			r := <-waiting
			st := b.Stats()
			switch {
			case r.err == nil:
				if st.Busy != 1 {
					t.Fatalf("waiter holds a slot but Busy = %d", st.Busy)
				}
				checkin(t, b, r.h)
			case errors.Is(r.err, ErrTimeout):
				if st.Busy != 0 || st.Available != 1 {
					t.Fatalf("waiter timed out but Busy %d, Available %d", st.Busy, st.Available)
				}
			default:
				t.Fatalf("waiter: %v", r.err)
			}
		})
	}
}

func TestCloseWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 1, MaxWaiting: 3})
		holder := checkout(t, b)
		var waiting []<-chan result
		for range 3 {
			waiting = append(waiting, goCheckout(context.Background(), b, start))
		}
		b.Close()
		for i, ch := range waiting {
			if r := <-ch; !errors.Is(r.err, ErrClosed) || r.at != 0 || Reason(r.err) != "closed" {
				t.Fatalf("waiter %d: %v after %v, want ErrClosed at once", i, r.err, r.at)
			}
		}
		if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Checkout after Close: %v", err)
		}
		if err := b.WithResource(context.Background(), func(Handle) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Fatalf("WithResource after Close: %v", err)
		}
		checkin(t, b, holder) // held slots still come back
		b.Close()             // twice is fine
		if st := b.Stats(); st.Available != 1 || st.Waiting != 0 {
			t.Fatalf("Available %d, Waiting %d; want 1, 0", st.Available, st.Waiting)
		}
		if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Checkout after Close with a free slot: %v", err)
		}
	})
}
