package bulkhead

import (
	"golang.org/x/time/rate"
)

// SetSettings changes the bulkhead's settings in place, as a configuration
// reload does. It returns the problems of s, keyed by configuration name,
// and changes nothing, when s is invalid; zero fields take their defaults,
// as in New.
//
// Resizing keeps every checkout: handles taken before it are checked in
// as usual, exactly once.
//
//   - Growing lends the new slots at once, to the longest waiters first.
//   - Shrinking below the busy count takes nothing back: the busy callers
//     finish, and new checkouts wait (or are turned away by max_waiting and
//     timeout as usual) until busy is below the new capacity. Slots at or
//     beyond the new capacity are not lent again while beyond it, so
//     Handle.Slot stays below the capacity for every handle taken after
//     the change.
//   - Timeout and MaxWaiting apply to callers that come after the change;
//     callers already waiting keep their own deadline and place.
//   - RateLimit applies from the next checkout to be admitted. A changed
//     rate keeps the tokens already saved (up to the new burst); turning it
//     on starts with a full burst; turning it off admits the next checkout
//     at once.
//   - HoldWarning applies from the next Stats.
//
// After Close, SetSettings still records the settings; the pool stays
// closed.
func (b *Bulkhead) SetSettings(s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	s = s.WithDefaults()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settings = s
	if c := s.Capacity(); c != b.capacity {
		b.resizeLocked(c)
	}
	switch {
	case s.RateLimit == 0:
		b.limiter = nil
	case b.limiter == nil:
		b.limiter = rate.NewLimiter(rate.Limit(s.RateLimit), burst(s.RateLimit))
	default:
		b.limiter.SetLimit(rate.Limit(s.RateLimit))
		b.limiter.SetBurst(burst(s.RateLimit))
	}
	b.handOutLocked()
	return nil
}

// resizeLocked makes the pool c slots wide. The slot table only grows:
// see Bulkhead.capacity. b.mu must be held.
func (b *Bulkhead) resizeLocked(c int) {
	for len(b.slots) < c {
		b.slots = append(b.slots, slot{})
	}
	free := make([]int32, 0, c)
	b.retired = 0
	// Lowest slot on top, as in New.
	for i := len(b.slots) - 1; i >= 0; i-- {
		busy := b.slots[i].gen&1 == 1
		switch {
		case i >= c:
			if busy {
				b.retired++
			}
		case !busy:
			free = append(free, int32(i))
		}
	}
	b.free = free
	b.capacity = c
}
