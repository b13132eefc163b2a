package bulkhead

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vsm-relay/relay/clock"
)

var t0 = time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)

func TestStatsCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := mustNew(t, Settings{Size: 2, Overflow: 1, MaxWaiting: 2, Timeout: time.Second})
		a, c, d := checkout(t, b), checkout(t, b), checkout(t, b) // d is an overflow slot
		timedOut := goCheckout(context.Background(), b, start)
		ctx, cancel := context.WithCancel(context.Background())
		gaveUp := goCheckout(ctx, b, start)
		if _, err := b.Checkout(context.Background()); err != ErrFull {
			t.Fatalf("third waiter: %v, want ErrFull", err)
		}
		want := Stats{Name: "test", Available: 0, Busy: 3, Waiting: 2, Capacity: 3, Overflowing: 1, Checkouts: 3, RejectedFull: 1, Recent: Recent{Checkouts: 3, Rejected: 1}}
		if got := b.Stats(); got != want {
			t.Fatalf("Stats() =\n%+v\nwant\n%+v", got, want)
		}
		cancel()
		<-gaveUp
		<-timedOut
		checkin(t, b, d)
		// The first Stats saw a and c at 0s; the waiter timed out at 1s.
		want = Stats{Name: "test", Available: 1, Busy: 2, Capacity: 3, Checkouts: 3, RejectedFull: 1, RejectedTimeout: 1, Cancelled: 1, OldestHeld: time.Second, Recent: Recent{Checkouts: 3, Rejected: 2}}
		if got := b.Stats(); got != want {
			t.Fatalf("Stats() =\n%+v\nwant\n%+v", got, want)
		}
		// A checkout after a wait is counted too.
		x := checkout(t, b)
		waited := goCheckout(context.Background(), b, start)
		checkin(t, b, x)
		if r := <-waited; r.err != nil {
			t.Fatalf("waiter: %v", r.err)
		} else {
			checkin(t, b, r.h)
		}
		checkin(t, b, a)
		checkin(t, b, c)
		if got := b.Stats(); got.Checkouts != 5 || got.Recent != (Recent{Checkouts: 5, Rejected: 2}) {
			t.Fatalf("Checkouts = %d, Recent = %+v, want 5 and {5 2}", got.Checkouts, got.Recent)
		}
	})
}

func TestHeldTooLong(t *testing.T) {
	tests := []struct {
		name  string
		opts  []Option
		first bool // look once right after the checkout
		// hold times seen after advancing the clock by 30s
		wantOldest  time.Duration
		wantTooLong int
	}{
		{"exact, no early look", []Option{WithExactHoldTimes()}, false, 30 * time.Second, 1},
		{"exact, early look", []Option{WithExactHoldTimes()}, true, 30 * time.Second, 1},
		{"from first look, looked early", nil, true, 30 * time.Second, 1},
		{"from first look, first look now", nil, false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			b := mustNew(t, Settings{Size: 3, HoldWarning: 20 * time.Second}, append(tt.opts, WithClock(clk))...)
			h := checkout(t, b)
			if tt.first {
				if st := b.Stats(); st.OldestHeld != 0 || st.HeldTooLong != 0 {
					t.Fatalf("right after checkout: OldestHeld %v, HeldTooLong %d", st.OldestHeld, st.HeldTooLong)
				}
			}
			clk.Advance(30 * time.Second)
			st := b.Stats()
			if st.OldestHeld != tt.wantOldest || st.HeldTooLong != tt.wantTooLong {
				t.Fatalf("OldestHeld %v, HeldTooLong %d; want %v, %d", st.OldestHeld, st.HeldTooLong, tt.wantOldest, tt.wantTooLong)
			}
			checkin(t, b, h)
			if st := b.Stats(); st.OldestHeld != 0 || st.HeldTooLong != 0 {
				t.Fatalf("after check-in: OldestHeld %v, HeldTooLong %d", st.OldestHeld, st.HeldTooLong)
			}
		})
	}
}

func TestHeldTooLongIsStrictlyLonger(t *testing.T) {
	clk := clock.NewFake(t0)
	b := mustNew(t, Settings{Size: 1, Timeout: time.Second}, WithClock(clk), WithExactHoldTimes())
	h := checkout(t, b)
	clk.Advance(4 * time.Second) // the default HoldWarning, 4 x Timeout
	if got := b.Stats().HeldTooLong; got != 0 {
		t.Fatalf("held exactly HoldWarning: HeldTooLong = %d, want 0", got)
	}
	clk.Advance(time.Nanosecond)
	if got := b.Stats().HeldTooLong; got != 1 {
		t.Fatalf("held past HoldWarning: HeldTooLong = %d, want 1", got)
	}
	checkin(t, b, h)
}

func TestHeld(t *testing.T) {
	clk := clock.NewFake(t0)
	b := mustNew(t, Settings{Size: 4}, WithClock(clk), WithExactHoldTimes())
	a := checkout(t, b) // slot 0 at t0
	clk.Advance(10 * time.Second)
	c := checkout(t, b) // slot 1 at t0+10s
	d := checkout(t, b) // slot 2 at t0+10s
	clk.Advance(5 * time.Second)
	checkin(t, b, c)

	tests := []struct {
		olderThan time.Duration
		want      []HeldSlot
	}{
		{0, []HeldSlot{
			{Slot: 0, Since: t0, For: 15 * time.Second},
			{Slot: 2, Since: t0.Add(10 * time.Second), For: 5 * time.Second},
		}},
		{5 * time.Second, []HeldSlot{
			{Slot: 0, Since: t0, For: 15 * time.Second},
			{Slot: 2, Since: t0.Add(10 * time.Second), For: 5 * time.Second},
		}},
		{6 * time.Second, []HeldSlot{
			{Slot: 0, Since: t0, For: 15 * time.Second},
		}},
		{time.Minute, nil},
	}
	for _, tt := range tests {
		got := b.Held(tt.olderThan)
		if !slices.EqualFunc(got, tt.want, func(x, y HeldSlot) bool {
			return x.Slot == y.Slot && x.Since.Equal(y.Since) && x.For == y.For
		}) {
			t.Errorf("Held(%v) =\n%+v\nwant\n%+v", tt.olderThan, got, tt.want)
		}
	}
	checkin(t, b, a)
	checkin(t, b, d)
	if got := b.Held(0); len(got) != 0 {
		t.Fatalf("Held(0) with nothing checked out = %+v", got)
	}
}

func TestHeldFromFirstLook(t *testing.T) {
	clk := clock.NewFake(t0)
	b := mustNew(t, Settings{Size: 2}, WithClock(clk))
	h := checkout(t, b)
	clk.Advance(time.Minute) // unseen: the pool has not read its clock since
	want := []HeldSlot{{Slot: 0, Since: t0.Add(time.Minute), For: 0}}
	if got := b.Held(0); !slices.Equal(got, want) {
		t.Fatalf("first look: Held(0) = %+v, want %+v", got, want)
	}
	clk.Advance(time.Minute)
	want = []HeldSlot{{Slot: 0, Since: t0.Add(time.Minute), For: time.Minute}}
	if got := b.Held(0); !slices.Equal(got, want) {
		t.Fatalf("second look: Held(0) = %+v, want %+v", got, want)
	}
	checkin(t, b, h)
	// The slot's next checkout starts afresh.
	h = checkout(t, b)
	if got := b.Held(0); len(got) != 1 || got[0].For != 0 {
		t.Fatalf("after re-checkout: Held(0) = %+v, want one slot held for 0", got)
	}
	checkin(t, b, h)
}

func TestClockGoingBackDoesNotGiveNegativeHolds(t *testing.T) {
	clk := clock.NewFake(t0)
	b := mustNew(t, Settings{Size: 1}, WithClock(clk), WithExactHoldTimes())
	h := checkout(t, b)
	clk.Set(t0.Add(-time.Hour))
	if st := b.Stats(); st.OldestHeld != 0 {
		t.Fatalf("OldestHeld = %v, want 0", st.OldestHeld)
	}
	checkin(t, b, h)
}

func TestExactHoldTimesOfAWaiterStartAtTheHandOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		clk := clock.NewFake(t0)
		b := mustNew(t, Settings{Size: 1}, WithClock(clk), WithExactHoldTimes())
		holder := checkout(t, b)
		waiting := goCheckout(context.Background(), b, start)
		clk.Advance(3 * time.Second)
		checkin(t, b, holder)
		r := <-waiting
		clk.Advance(time.Second)
		if got := b.Stats().OldestHeld; got != time.Second {
			t.Fatalf("OldestHeld = %v, want 1s (since the slot was handed over)", got)
		}
		checkin(t, b, r.h)
	})
}
