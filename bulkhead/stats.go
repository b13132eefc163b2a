package bulkhead

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Stats is a snapshot of a bulkhead, as health reports and metrics show
// it. Counters only ever grow; Recent is what they cannot show, the
// latest attempts alone.
type Stats struct {
	Name string
	// Available slots can be checked out at once; Busy are checked out;
	// Capacity is Size+Overflow. Available+Busy == Capacity, except after
	// SetSettings shrank the pool below its busy count: then Busy exceeds
	// Capacity, and Available is 0, until enough slots are checked in.
	Available, Busy, Waiting, Capacity int
	// Overflowing is how many overflow slots are in use: Busy beyond Size.
	Overflowing int
	// Checkouts counts successful checkouts; the Rejected counters count
	// checkouts turned away, by reason (see Reason).
	Checkouts, RejectedFull, RejectedTimeout, RejectedRateLimited uint64
	// Cancelled counts callers whose context ended while they waited.
	Cancelled uint64
	// HeldTooLong counts busy slots held longer than
	// Settings.HoldWarning, and OldestHeld is the longest any busy slot
	// has been held (see Held for how hold times are measured).
	HeldTooLong int
	OldestHeld  time.Duration
	// Recent counts the latest checkout attempts (see RecentPeriod);
	// Recent.RejectionRate() is the share of them rejected.
	Recent Recent
}

// HeldSlot is a checked-out slot and how long it has been held.
type HeldSlot struct {
	Slot  int
	Since time.Time
	For   time.Duration
}

// unseen marks a busy slot whose checkout time is not known yet.
const unseen int64 = math.MinInt64

// Stats returns a snapshot of the bulkhead. It costs one clock read and a
// pass over the slots.
func (b *Bulkhead) Stats() Stats {
	now := b.offset(b.clock.Now())
	b.mu.Lock()
	st := Stats{
		Name:                b.name,
		Capacity:            b.capacity,
		Available:           max(0, len(b.free)-b.retired),
		Busy:                b.capacity - len(b.free) + b.retired,
		Waiting:             b.queue.len,
		Checkouts:           b.counts.checkouts,
		RejectedFull:        b.counts.rejectedFull,
		RejectedTimeout:     b.counts.rejectedTimeout,
		RejectedRateLimited: b.counts.rejectedRateLimited,
		Cancelled:           b.counts.cancelled,
		Recent:              b.recentLocked(now),
	}
	for i := range b.slots {
		held, busy := b.heldLocked(i, now)
		if !busy {
			continue
		}
		if held > b.settings.HoldWarning {
			st.HeldTooLong++
		}
		st.OldestHeld = max(st.OldestHeld, held)
	}
	st.Overflowing = max(0, st.Busy-b.settings.Size)
	b.mu.Unlock()
	st.Checkouts += b.admitted.Load()
	return st
}

// Held lists the slots held for olderThan or longer, longest held first;
// Held(0) lists every busy slot. These are the likely leaks: a slot that
// stays on this list was probably never checked in.
//
// Hold times are measured with the bulkhead's clock. To keep checkouts
// free of clock reads, a slot's hold time runs from the first time Stats
// or Held saw it busy, so it never overstates how long the slot has been
// held and understates it by at most the interval between two looks (the
// health interval, typically). WithExactHoldTimes measures from the
// checkout itself instead, at the cost of a clock read per checkout.
func (b *Bulkhead) Held(olderThan time.Duration) []HeldSlot {
	now := b.clock.Now()
	off := b.offset(now)
	var out []HeldSlot
	b.mu.Lock()
	for i := range b.slots {
		held, busy := b.heldLocked(i, off)
		if busy && held >= olderThan {
			out = append(out, HeldSlot{Slot: i, Since: now.Add(-held), For: held})
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y HeldSlot) int {
		if c := cmp.Compare(y.For, x.For); c != 0 {
			return c
		}
		return cmp.Compare(x.Slot, y.Slot)
	})
	return out
}

// heldLocked reports whether slot i is busy and for how long as of now,
// stamping it with now if this is the first look since its checkout.
// b.mu must be held.
func (b *Bulkhead) heldLocked(i int, now int64) (time.Duration, bool) {
	s := &b.slots[i]
	if s.gen&1 == 0 {
		return 0, false
	}
	if s.since == unseen {
		s.since = now
	}
	return time.Duration(max(0, now-s.since)), true
}

// offset turns a clock reading into the int64 kept per slot.
func (b *Bulkhead) offset(t time.Time) int64 {
	d := int64(t.Sub(b.base))
	if d == unseen {
		d++
	}
	return d
}
