package bulkhead

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vsm-relay/relay/clock"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// got receives a background checkout that must have returned a slot.
func got(t *testing.T, ch <-chan result) Handle {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("waiter: %v", r.err)
		}
		return r.h
	default:
		t.Fatal("waiter still waiting")
	}
	return Handle{}
}

func TestSetSettingsGrowServesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 1, MaxWaiting: 4})
		holder := checkout(t, b)
		ch := []<-chan result{
			goCheckout(context.Background(), b, start),
			goCheckout(context.Background(), b, start),
			goCheckout(context.Background(), b, start),
		}
		if err := b.SetSettings(Settings{Size: 2, Overflow: 1, MaxWaiting: 4}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		// The two longest waiters get the new slots; the third waits on.
		h1, h2 := got(t, ch[0]), got(t, ch[1])
		pending(t, ch[2])
		if h1.Slot() != 1 || h2.Slot() != 2 {
			t.Fatalf("new slots %d and %d, want 1 and 2", h1.Slot(), h2.Slot())
		}
		want := occupancy{Available: 0, Busy: 3, Waiting: 1, Capacity: 3, Overflowing: 1}
		if o := occupancyOf(b); o != want {
			t.Fatalf("after growing: %+v, want %+v", o, want)
		}
		checkin(t, b, holder)
		synctest.Wait()
		h3 := got(t, ch[2])
		for _, h := range []Handle{h1, h2, h3} {
			checkin(t, b, h)
		}
		if o := occupancyOf(b); o != (occupancy{Available: 3, Capacity: 3}) {
			t.Fatalf("after checking in: %+v", o)
		}
	})
}

// A pool shrunk below its busy count lets the busy callers finish, in
// whatever order, and lends again only once busy is below the new
// capacity.
func TestSetSettingsShrinkBelowBusy(t *testing.T) {
	tests := []struct {
		name  string
		order []int // which of the four held slots are checked in, in turn
	}{
		{"slots beyond the new size first", []int{3, 2, 1, 0}},
		{"slots within the new size first", []int{0, 1, 2, 3}},
		{"mixed", []int{1, 3, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				b := mustNew(t, Settings{Size: 4, MaxWaiting: 1})
				held := make([]Handle, 4)
				for i := range held {
					held[i] = checkout(t, b)
				}
				if err := b.SetSettings(Settings{Size: 2, MaxWaiting: 1}); err != nil {
					t.Fatal(err)
				}
				want := occupancy{Available: 0, Busy: 4, Capacity: 2, Overflowing: 2}
				if o := occupancyOf(b); o != want {
					t.Fatalf("after shrinking: %+v, want %+v", o, want)
				}
				waiter := goCheckout(context.Background(), b, start)
				if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrFull) {
					t.Fatalf("checkout beyond max_waiting: %v, want ErrFull", err)
				}
				// Busy goes 4 -> 3 -> 2 with nothing lent, then 1: the
				// waiter is served, which brings it back to 2.
				for _, i := range tt.order[:2] {
					checkin(t, b, held[i])
					synctest.Wait()
					pending(t, waiter)
				}
				checkin(t, b, held[tt.order[2]])
				synctest.Wait()
				h := got(t, waiter)
				if h.Slot() >= 2 {
					t.Fatalf("slot %d lent beyond the new capacity 2", h.Slot())
				}
				if h.Slot() == held[tt.order[3]].Slot() {
					t.Fatalf("slot %d lent while still held", h.Slot())
				}
				if o := occupancyOf(b); o != (occupancy{Busy: 2, Capacity: 2}) {
					t.Fatalf("waiter served: %+v", o)
				}
				// The capacity holds: a third caller waits, then times out.
				third := goCheckout(context.Background(), b, start)
				time.Sleep(DefaultTimeout)
				synctest.Wait()
				if r := <-third; !errors.Is(r.err, ErrTimeout) {
					t.Fatalf("third checkout: %v, want ErrTimeout", r.err)
				}
				checkin(t, b, held[tt.order[3]])
				checkin(t, b, h)
				for _, old := range held {
					if err := b.Checkin(old); !errors.Is(err, ErrBadCheckin) {
						t.Fatalf("second Checkin of slot %d: %v, want ErrBadCheckin", old.Slot(), err)
					}
				}
				if o := occupancyOf(b); o != (occupancy{Available: 2, Capacity: 2}) {
					t.Fatalf("all checked in: %+v", o)
				}
			})
		})
	}
}

func TestSetSettingsShrinkThenGrow(t *testing.T) {
	tests := []struct {
		name     string
		sizes    []int // applied in turn while four slots are held
		checkins int   // then this many of them are checked in (lowest slot first)
		want     occupancy
		lendable int // how many more checkouts succeed at once after that
	}{
		{"shrink then grow back", []int{1, 4}, 0, occupancy{Busy: 4, Capacity: 4}, 0},
		{"shrink then grow past the old size", []int{1, 6}, 0, occupancy{Available: 2, Busy: 4, Capacity: 6}, 2},
		{"shrink then grow below the busy count", []int{1, 3}, 1, occupancy{Busy: 3, Capacity: 3}, 0},
		{"shrink then grow, then a check-in", []int{1, 3}, 2, occupancy{Available: 1, Busy: 2, Capacity: 3}, 1},
		{"shrink twice", []int{3, 2}, 2, occupancy{Busy: 2, Capacity: 2}, 0},
		{"shrink twice, then check-ins", []int{3, 2}, 3, occupancy{Available: 1, Busy: 1, Capacity: 2}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, Settings{Size: 4, MaxWaiting: -1})
			held := make([]Handle, 4)
			for i := range held {
				held[i] = checkout(t, b)
			}
			for _, n := range tt.sizes {
				if err := b.SetSettings(Settings{Size: n, MaxWaiting: -1}); err != nil {
					t.Fatal(err)
				}
			}
			for _, h := range held[:tt.checkins] {
				checkin(t, b, h)
			}
			if o := occupancyOf(b); o != tt.want {
				t.Fatalf("%+v, want %+v", o, tt.want)
			}
			inUse := map[int]bool{}
			for _, h := range held[tt.checkins:] {
				inUse[h.Slot()] = true
			}
			for i := range tt.lendable {
				h := checkout(t, b)
				if inUse[h.Slot()] || h.Slot() >= tt.want.Capacity {
					t.Fatalf("checkout %d got slot %d (held %v, capacity %d)", i, h.Slot(), inUse, tt.want.Capacity)
				}
				inUse[h.Slot()] = true
			}
			if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrFull) {
				t.Fatalf("checkout beyond the capacity: %v, want ErrFull", err)
			}
		})
	}
}

func TestSetSettingsInvalid(t *testing.T) {
	b := mustNew(t, Settings{Size: 2})
	err := b.SetSettings(Settings{Size: 0, Overflow: -1})
	var fe *fielderr.Error
	if !errors.As(err, &fe) {
		t.Fatalf("SetSettings(bad) = %v, want a *fielderr.Error", err)
	}
	if s := b.Settings(); s != (Settings{Size: 2}).WithDefaults() {
		t.Fatalf("settings changed by a refused SetSettings: %+v", s)
	}
	if c := b.Stats().Capacity; c != 2 {
		t.Fatalf("Capacity = %d, want 2", c)
	}
}

func TestSetSettingsRateLimit(t *testing.T) {
	tests := []struct {
		name     string
		from, to float64
		// checkouts made one after the other after the change
		wantErr []error
		wantAt  []time.Duration
	}{
		{"turned off: no more waiting", 1, 0, []error{nil, nil, nil}, []time.Duration{0, 0, 0}},
		{"turned on: a full burst, then the rate", 0, 2, []error{nil, nil, nil}, []time.Duration{0, 0, 500 * time.Millisecond}},
		{"raised: the saved token kept, then the new rate", 1, 4,
			[]error{nil, nil, nil}, []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond}},
		{"lowered past the timeout: refused at once", 1, 0.1,
			[]error{nil, ErrRateLimited}, []time.Duration{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := Settings{Size: 10, Timeout: 5 * time.Second, RateLimit: tt.from}
				b := mustNew(t, s)
				s.RateLimit = tt.to
				if err := b.SetSettings(s); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				var held []Handle
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
					}
				}
				for _, h := range held {
					checkin(t, b, h)
				}
			})
		})
	}
}

// A caller that waited for a slot takes its rate token from the limiter
// in force when the slot is handed to it.
func TestSetSettingsRateLimitOfAWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 1, Timeout: 10 * time.Second, RateLimit: 1})
		h := checkout(t, b) // spends the burst
		waiter := goCheckout(context.Background(), b, start)
		if err := b.SetSettings(Settings{Size: 1, Timeout: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		checkin(t, b, h)
		synctest.Wait()
		checkin(t, b, got(t, waiter)) // at once, without a token
	})
}

func TestSetSettingsTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 1, Timeout: 10 * time.Second, MaxWaiting: 2})
		h := checkout(t, b)
		before := goCheckout(context.Background(), b, start)
		if err := b.SetSettings(Settings{Size: 1, Timeout: time.Second, MaxWaiting: 2}); err != nil {
			t.Fatal(err)
		}
		after := goCheckout(context.Background(), b, start)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		for _, w := range []struct {
			ch <-chan result
			at time.Duration
		}{{after, time.Second}, {before, 10 * time.Second}} {
			r := <-w.ch
			if !errors.Is(r.err, ErrTimeout) || r.at != w.at {
				t.Fatalf("waiter: %v after %v, want ErrTimeout after %v", r.err, r.at, w.at)
			}
		}
		checkin(t, b, h)
	})
}

func TestSetSettingsHoldWarning(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	b := mustNew(t, Settings{Size: 2, HoldWarning: time.Minute}, WithClock(fc), WithExactHoldTimes())
	h := checkout(t, b)
	fc.Advance(30 * time.Second)
	if n := b.Stats().HeldTooLong; n != 0 {
		t.Fatalf("HeldTooLong = %d before the change, want 0", n)
	}
	if err := b.SetSettings(Settings{Size: 2, HoldWarning: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if n := b.Stats().HeldTooLong; n != 1 {
		t.Fatalf("HeldTooLong = %d after the change, want 1", n)
	}
	checkin(t, b, h)
}

func TestSetSettingsAfterClose(t *testing.T) {
	b := mustNew(t, Settings{Size: 1})
	h := checkout(t, b)
	b.Close()
	if err := b.SetSettings(Settings{Size: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Checkout after Close and a resize: %v, want ErrClosed", err)
	}
	checkin(t, b, h)
}

func TestSetSettingsHotPathDoesNotAllocate(t *testing.T) {
	b := mustNew(t, Settings{Size: 4})
	for _, n := range []int{8, 2, 5} {
		if err := b.SetSettings(Settings{Size: n}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(1000, func() {
		h, err := b.Checkout(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Checkin(h); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("Checkout+Checkin after resizes: %v allocs/op, want 0", allocs)
	}
}

// Resizes racing with checkouts and check-ins: no slot is ever held twice,
// no check-in is refused, and once all is quiet every slot is back. Run
// with -race.
func TestStressSetSettings(t *testing.T) {
	const (
		goroutines = 16
		rounds     = 300
		most       = 6
	)
	b := mustNew(t, Settings{Size: 3, MaxWaiting: 32, Timeout: time.Minute})
	var (
		owner   [most]atomic.Int32
		workers sync.WaitGroup
		resizer sync.WaitGroup
		stop    = make(chan struct{})
	)
	for g := range goroutines {
		workers.Go(func() {
			id := int32(g + 1)
			for range rounds {
				err := b.WithResource(context.Background(), func(h Handle) error {
					if !owner[h.Slot()].CompareAndSwap(0, id) {
						t.Errorf("slot %d handed to %d while held by %d", h.Slot(), id, owner[h.Slot()].Load())
					}
					owner[h.Slot()].Store(0)
					return nil
				})
				if err != nil && !errors.Is(err, ErrFull) {
					t.Errorf("WithResource: %v", err)
				}
			}
		})
	}
	resizer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s := Settings{Size: 1 + i%3, Overflow: i % (most - 2), MaxWaiting: 32, Timeout: time.Minute}
			if i%5 == 0 {
				s.RateLimit = 1e9
			}
			if err := b.SetSettings(s); err != nil {
				t.Errorf("SetSettings: %v", err)
			}
			_ = b.Stats()
		}
	})
	workers.Wait()
	close(stop)
	resizer.Wait()
	if err := b.SetSettings(Settings{Size: 2, Overflow: 1}); err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Busy != 0 || st.Waiting != 0 || st.Available != 3 || st.Capacity != 3 {
		t.Fatalf("after the storm: %+v", st)
	}
	if st.Checkouts+st.RejectedFull != goroutines*rounds {
		t.Fatalf("counted %d outcomes, want %d", st.Checkouts+st.RejectedFull, goroutines*rounds)
	}
}
