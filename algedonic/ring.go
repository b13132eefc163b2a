package algedonic

// queued is an event waiting for the broker, numbered so that the delivery
// loop can tell whether the head it published is still the head.
type queued struct {
	seq uint64
	ev  Event
}

// ring is a bounded FIFO. The zero value has no room; use newRing.
type ring struct {
	buf   []queued
	head  int
	n     int
	nextq uint64
}

func newRing(capacity int) ring { return ring{buf: make([]queued, capacity)} }

func (r *ring) len() int { return r.n }

// push appends ev. When the ring is full it makes room by removing the
// oldest event, which it returns with dropped true.
func (r *ring) push(ev Event) (old Event, dropped bool) {
	if r.n == len(r.buf) {
		old, dropped = r.buf[r.head].ev, true
		r.pop()
	}
	r.nextq++
	r.buf[(r.head+r.n)%len(r.buf)] = queued{seq: r.nextq, ev: ev}
	r.n++
	return old, dropped
}

// front returns the oldest event; the ring must not be empty.
func (r *ring) front() queued { return r.buf[r.head] }

func (r *ring) pop() {
	r.buf[r.head] = queued{} // let the event's details be collected
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}
