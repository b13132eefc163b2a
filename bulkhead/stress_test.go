package bulkhead

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many goroutines check out, hold, give up and check in at once. Run with
// -race. There are no timing assertions: only invariants that must hold
// whatever the scheduling.
func TestStress(t *testing.T) {
	const (
		goroutines = 24
		rounds     = 300
		size       = 3
		overflow   = 2
		capacity   = size + overflow
	)
	b := mustNew(t, Settings{Size: size, Overflow: overflow, MaxWaiting: 8, Timeout: time.Minute})
	var (
		inUse      atomic.Int64
		owner      [capacity]atomic.Int32 // who holds each slot, 0 when free
		successes  atomic.Uint64
		rejections atomic.Uint64
		wg         sync.WaitGroup
	)
	hold := func(id int32, h Handle) {
		if n := inUse.Add(1); n > capacity {
			t.Errorf("%d slots in use, capacity %d", n, capacity)
		}
		if !owner[h.Slot()].CompareAndSwap(0, id) {
			t.Errorf("slot %d handed to %d while held by %d", h.Slot(), id, owner[h.Slot()].Load())
		}
		if st := b.Stats(); st.Busy > st.Capacity || st.Busy+st.Available != capacity {
			t.Errorf("Busy %d, Available %d, Capacity %d", st.Busy, st.Available, st.Capacity)
		}
		owner[h.Slot()].Store(0)
		inUse.Add(-1)
	}
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := int32(g + 1)
			for i := range rounds {
				ctx, cancel := context.WithCancel(context.Background())
				if i%7 == 0 {
					cancel() // gives up at once if it has to wait
				}
				var err error
				if i%2 == 0 {
					err = b.WithResource(ctx, func(h Handle) error { hold(id, h); return nil })
				} else {
					var h Handle
					if h, err = b.Checkout(ctx); err == nil {
						hold(id, h)
						if cerr := b.Checkin(h); cerr != nil {
							t.Errorf("Checkin: %v", cerr)
						}
						if cerr := b.Checkin(h); !errors.Is(cerr, ErrBadCheckin) {
							t.Errorf("second Checkin: %v", cerr)
						}
					}
				}
				cancel()
				switch {
				case err == nil:
					successes.Add(1)
				case errors.Is(err, ErrFull), errors.Is(err, context.Canceled):
					rejections.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
		}()
	}
	wg.Wait()

	st := b.Stats()
	if st.Busy != 0 || st.Waiting != 0 || st.Available != capacity {
		t.Fatalf("after the storm: Busy %d, Waiting %d, Available %d", st.Busy, st.Waiting, st.Available)
	}
	if st.Checkouts != successes.Load() {
		t.Fatalf("Checkouts = %d, callers saw %d", st.Checkouts, successes.Load())
	}
	if got := st.RejectedFull + st.Cancelled; got != rejections.Load() {
		t.Fatalf("RejectedFull+Cancelled = %d, callers saw %d", got, rejections.Load())
	}
	if st.Checkouts+st.RejectedFull+st.Cancelled != goroutines*rounds {
		t.Fatalf("counted %d outcomes, want %d", st.Checkouts+st.RejectedFull+st.Cancelled, goroutines*rounds)
	}
}

// Close racing with checkouts and check-ins leaves nobody waiting and no
// slot lost.
func TestStressClose(t *testing.T) {
	b := mustNew(t, Settings{Size: 2, MaxWaiting: 64, Timeout: time.Minute})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				err := b.WithResource(context.Background(), func(Handle) error { return nil })
				if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrFull) {
					t.Errorf("unexpected error: %v", err)
				}
			}
		}()
	}
	b.Close()
	wg.Wait()
	if st := b.Stats(); st.Busy != 0 || st.Waiting != 0 {
		t.Fatalf("after Close: Busy %d, Waiting %d", st.Busy, st.Waiting)
	}
}
