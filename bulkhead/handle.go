package bulkhead

// Handle is a checked-out slot. It is a small value: copying it is free
// and checking out allocates nothing. A handle is good for exactly one
// Checkin; the slot's generation, bumped at every checkout and check-in,
// tells a stale copy from the live one.
//
// The zero Handle is not a checkout; checking it in gives ErrBadCheckin.
type Handle struct {
	b    *Bulkhead
	slot int32
	gen  uint32 // odd: the slot's generation while this checkout holds it
}

// Slot is the index of the slot, in [0, Size+Overflow). Two handles held
// at the same time never share a slot, so it can index per-slot resources
// (a connection, a buffer) kept beside the bulkhead. A handle taken before
// SetSettings shrank the pool may hold a slot at or beyond the new
// Size+Overflow; such a slot is not lent again until the pool grows past
// it, so per-slot resources sized to the largest capacity ever set stay
// valid.
func (h Handle) Slot() int { return int(h.slot) }
