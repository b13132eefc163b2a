package bulkhead

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// waiter is one caller queued for a slot. It is allocated only when a
// caller has to wait, which is the slow path anyway.
type waiter struct {
	prev, next *waiter
	// ready is closed, under b.mu, once h or err is set: by a check-in
	// that hands this waiter a slot, or by Close.
	ready chan struct{}
	h     Handle
	lim   *rate.Limiter // the pool's rate limiter when h was handed out
	err   error
}

// waitQueue is a FIFO of waiters, linked through the waiters themselves so
// that a caller who gives up is unlinked in O(1). The zero value is an
// empty queue.
type waitQueue struct {
	head, tail *waiter
	len        int
}

func (q *waitQueue) push(w *waiter) {
	w.prev, w.next = q.tail, nil
	if q.tail == nil {
		q.head = w
	} else {
		q.tail.next = w
	}
	q.tail = w
	q.len++
}

// pop removes and returns the longest waiter, or nil.
func (q *waitQueue) pop() *waiter {
	w := q.head
	if w != nil {
		q.remove(w)
	}
	return w
}

// remove unlinks w, which must be in q.
func (q *waitQueue) remove(w *waiter) {
	if w.prev == nil {
		q.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		q.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next = nil, nil
	q.len--
}

// wait is Checkout's slow path: b.mu is held on entry and released before
// blocking.
func (b *Bulkhead) wait(ctx context.Context) (Handle, error) {
	switch {
	case b.closed:
		b.mu.Unlock()
		return Handle{}, ErrClosed
	case b.queue.len >= b.settings.maxWaiting():
		b.counts.rejectedFull++
		b.foldLocked()
		b.countLocked(true)
		b.mu.Unlock()
		return Handle{}, ErrFull
	}
	if err := ctx.Err(); err != nil {
		b.counts.cancelled++
		b.mu.Unlock()
		return Handle{}, b.cancelled(err)
	}
	w := &waiter{ready: make(chan struct{})}
	b.queue.push(w)
	// A caller waits as long as the pool's timeout was when it came.
	timeout := b.settings.Timeout
	b.mu.Unlock()

	deadline := time.Now().Add(timeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var cause error
	select {
	case <-w.ready:
		if w.err != nil {
			return Handle{}, w.err
		}
		if w.lim != nil {
			return b.admit(ctx, w.lim, w.h, deadline, timeout)
		}
		b.admitted.Add(1)
		return w.h, nil
	case <-timer.C:
		cause = ErrTimeout
	case <-ctx.Done():
		cause = b.cancelled(ctx.Err())
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		if w.err != nil {
			return Handle{}, w.err
		}
		// A slot arrived just as the wait ended. Pass it on: a caller that
		// gave up must never be left holding one.
		b.releaseLocked(w.h.slot)
	default:
		b.queue.remove(w)
	}
	if cause == ErrTimeout {
		b.counts.rejectedTimeout++
		b.foldLocked()
		b.countLocked(true)
	} else {
		b.counts.cancelled++
	}
	return Handle{}, cause
}
