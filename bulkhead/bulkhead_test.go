package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vsm-relay/relay/internal/fielderr"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustNew(t testing.TB, s Settings, opts ...Option) *Bulkhead {
	t.Helper()
	b, err := New("test", s, opts...)
	if err != nil {
		t.Fatalf("New(%+v): %v", s, err)
	}
	return b
}

func checkout(t testing.TB, b *Bulkhead) Handle {
	t.Helper()
	h, err := b.Checkout(context.Background())
	if err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	return h
}

func checkin(t testing.TB, b *Bulkhead, h Handle) {
	t.Helper()
	if err := b.Checkin(h); err != nil {
		t.Fatalf("Checkin(slot %d): %v", h.Slot(), err)
	}
}

// occupancy is the part of Stats about slots and waiters.
type occupancy struct{ Available, Busy, Waiting, Capacity, Overflowing int }

func occupancyOf(b *Bulkhead) occupancy {
	s := b.Stats()
	return occupancy{s.Available, s.Busy, s.Waiting, s.Capacity, s.Overflowing}
}

func TestCapacityIsSizePlusOverflow(t *testing.T) {
	tests := []struct {
		size, overflow int
	}{
		{1, 0},
		{1, 1},
		{3, 0},
		{3, 2},
		{20, 10},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("size=%d,overflow=%d", tt.size, tt.overflow), func(t *testing.T) {
			b := mustNew(t, Settings{Size: tt.size, Overflow: tt.overflow, MaxWaiting: -1})
			capacity := tt.size + tt.overflow
			var held []Handle
			var slotsSeen []int
			for i := range capacity {
				held = append(held, checkout(t, b))
				slotsSeen = append(slotsSeen, held[i].Slot())
				want := occupancy{
					Available:   capacity - i - 1,
					Busy:        i + 1,
					Capacity:    capacity,
					Overflowing: max(0, i+1-tt.size),
				}
				if got := occupancyOf(b); got != want {
					t.Fatalf("after %d checkouts: %+v, want %+v", i+1, got, want)
				}
			}
			slices.Sort(slotsSeen)
			for i, s := range slotsSeen {
				if s != i {
					t.Fatalf("slots handed out = %v, want each of 0..%d once", slotsSeen, capacity-1)
				}
			}
			if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrFull) {
				t.Fatalf("checkout beyond capacity: %v, want ErrFull", err)
			}
			for _, h := range held {
				checkin(t, b, h)
			}
			want := occupancy{Available: capacity, Capacity: capacity}
			if got := occupancyOf(b); got != want {
				t.Fatalf("after checking all in: %+v, want %+v", got, want)
			}
		})
	}
}

func TestLightUseKeepsToTheFirstSlot(t *testing.T) {
	b := mustNew(t, Settings{Size: 4})
	for range 3 {
		h := checkout(t, b)
		if h.Slot() != 0 {
			t.Fatalf("Slot() = %d, want 0", h.Slot())
		}
		checkin(t, b, h)
	}
}

func TestBadCheckin(t *testing.T) {
	b := mustNew(t, Settings{Size: 2})
	other := mustNew(t, Settings{Size: 2})

	h := checkout(t, b)
	foreign := checkout(t, other) // same slot index and generation as h
	if h.Slot() != foreign.Slot() || h.gen != foreign.gen {
		t.Fatalf("test needs look-alike handles, got %+v and %+v", h, foreign)
	}
	if err := b.Checkin(foreign); !errors.Is(err, ErrBadCheckin) {
		t.Fatalf("foreign handle: %v, want ErrBadCheckin", err)
	}
	if err := b.Checkin(Handle{}); !errors.Is(err, ErrBadCheckin) {
		t.Fatalf("zero handle: %v, want ErrBadCheckin", err)
	}
	checkin(t, b, h)
	if err := b.Checkin(h); !errors.Is(err, ErrBadCheckin) {
		t.Fatalf("double check-in: %v, want ErrBadCheckin", err)
	}
	// The slot is reused: the stale copy must not check in the new holder.
	h2 := checkout(t, b)
	if h2.Slot() != h.Slot() {
		t.Fatalf("expected slot %d to be reused, got %d", h.Slot(), h2.Slot())
	}
	if err := b.Checkin(h); !errors.Is(err, ErrBadCheckin) {
		t.Fatalf("stale handle of a reused slot: %v, want ErrBadCheckin", err)
	}
	if got := b.Stats().Busy; got != 1 {
		t.Fatalf("Busy = %d after refused check-ins, want 1", got)
	}
	checkin(t, b, h2)
	checkin(t, other, foreign)
}

func TestWithResource(t *testing.T) {
	boom := errors.New("boom")
	b := mustNew(t, Settings{Size: 1})
	tests := []struct {
		name string
		fn   func(Handle) error
		want error
	}{
		{"success", func(Handle) error { return nil }, nil},
		{"fn error", func(Handle) error { return boom }, boom},
		{"fn checks in itself", func(h Handle) error { return b.Checkin(h) }, ErrBadCheckin},
		{"fn checks in and fails", func(h Handle) error { _ = b.Checkin(h); return boom }, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.WithResource(context.Background(), func(h Handle) error {
				if got := b.Stats().Busy; got != 1 {
					t.Errorf("Busy inside fn = %d, want 1", got)
				}
				return tt.fn(h)
			})
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("WithResource = %v, want %v", err, tt.want)
			}
			if got := b.Stats().Busy; got != 0 {
				t.Fatalf("Busy after WithResource = %d, want 0", got)
			}
		})
	}
}

func TestWithResourceChecksInOnPanic(t *testing.T) {
	b := mustNew(t, Settings{Size: 1, MaxWaiting: -1})
	type marker struct{}
	func() {
		defer func() {
			if r := recover(); r != (marker{}) {
				t.Fatalf("recovered %v, want the original panic value", r)
			}
		}()
		_ = b.WithResource(context.Background(), func(Handle) error { panic(marker{}) })
		t.Fatal("WithResource returned instead of panicking")
	}()
	if got := b.Stats().Busy; got != 0 {
		t.Fatalf("Busy after panic = %d, want 0", got)
	}
	// The one slot is usable again.
	if err := b.WithResource(context.Background(), func(Handle) error { return nil }); err != nil {
		t.Fatalf("WithResource after panic: %v", err)
	}
}

func TestWithResourceReturnsRejection(t *testing.T) {
	b := mustNew(t, Settings{Size: 1, MaxWaiting: -1})
	h := checkout(t, b)
	called := false
	err := b.WithResource(context.Background(), func(Handle) error { called = true; return nil })
	if !errors.Is(err, ErrFull) || called {
		t.Fatalf("WithResource on a full pool = %v (fn called: %v), want ErrFull without calling fn", err, called)
	}
	checkin(t, b, h)
}

func TestNewRejectsBadSettings(t *testing.T) {
	_, err := New("bad", Settings{Size: 0, Overflow: -1, Timeout: -time.Second, RateLimit: -1})
	got := fielderr.Lines(err)
	want := []string{
		"overflow: must not be negative, got -1",
		"rate_limit: must be a non-negative number of checkouts per second, got -1",
		"size: must be at least 1, got 0",
		"timeout: must not be negative, got -1s",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("New errors =\n%q\nwant\n%q", got, want)
	}
}

func TestNilOptionsIgnored(t *testing.T) {
	b, err := New("n", Settings{Size: 1}, nil, WithClock(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Stats().Capacity; got != 1 {
		t.Fatalf("Capacity = %d, want 1", got)
	}
}

func TestNameAndSettings(t *testing.T) {
	b := mustNew(t, Settings{Size: 5, Overflow: 2, Timeout: 30 * time.Second, RateLimit: 10})
	if b.Name() != "test" {
		t.Fatalf("Name() = %q", b.Name())
	}
	want := Settings{Size: 5, Overflow: 2, Timeout: 30 * time.Second, RateLimit: 10, MaxWaiting: 5, HoldWarning: 2 * time.Minute}
	if got := b.Settings(); got != want {
		t.Fatalf("Settings() = %+v, want %+v", got, want)
	}
	if got := b.Stats().Name; got != "test" {
		t.Fatalf("Stats().Name = %q", got)
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrFull, "full"},
		{ErrTimeout, "timeout"},
		{ErrRateLimited, "rate_limited"},
		{ErrClosed, "closed"},
		{fmt.Errorf("pool api_agent: %w", ErrFull), "full"},
		{&cancelledError{pool: "p", err: context.Canceled}, "cancelled"},
		{&cancelledError{pool: "p", err: context.DeadlineExceeded}, "cancelled"},
		{context.Canceled, ""}, // from the caller's own work, not a rejection
		{ErrBadCheckin, ""},
		{errors.New("HTTP 503"), ""},
	}
	for _, tt := range tests {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestRejectionsDoNotAllocate(t *testing.T) {
	b := mustNew(t, Settings{Size: 1, MaxWaiting: -1})
	h := checkout(t, b)
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		_, err = b.Checkout(context.Background())
		_ = Reason(err)
	})
	if !errors.Is(err, ErrFull) || allocs != 0 {
		t.Fatalf("ErrFull path: err %v, %v allocs/op, want ErrFull and 0", err, allocs)
	}
	checkin(t, b, h)
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	b := mustNew(t, Settings{Size: 4})
	ctx := context.Background()
	fn := func(Handle) error { return nil }
	tests := []struct {
		name string
		run  func()
	}{
		{"WithResource", func() {
			if err := b.WithResource(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}},
		{"Checkout+Checkin", func() {
			h, err := b.Checkout(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Checkin(h); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		if allocs := testing.AllocsPerRun(1000, tt.run); allocs != 0 {
			t.Errorf("%s: %v allocs/op, want 0", tt.name, allocs)
		}
	}
}
