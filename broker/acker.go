package broker

import (
	"sync"
	"time"
)

// ackChannel is the part of a channel an acker settles deliveries on
// (an *amqp.Channel).
type ackChannel interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
}

const (
	// holdLimit bounds the acks held back behind an earlier delivery not
	// yet settled; past it an ack goes out on its own.
	holdLimit = 1024
	// holdFor bounds how long an ack is held back.
	holdFor = 2 * time.Millisecond
	// trackLimit bounds the settled tags remembered above the lowest
	// unsettled one; past it coalescing gives up for the channel (some
	// delivery is never settled) and every ack goes out on its own.
	trackLimit = 4096
)

// acker settles one channel's deliveries with as few frames as it can.
// Every ack frame costs the broker a round of work on the channel and the
// queue, whatever it covers, and tasks finish in roughly the order they
// came. Delivery tags on a channel count up from 1, so one ack with
// multiple set settles the lowest unsettled delivery and every settled
// one above it.
//
// Acks of the lowest unsettled deliveries accumulate into one pending
// multiple ack, sent when it covers a quarter of the prefetch (so that a
// small prefetch is never starved of credit) or holdFor after the first
// of them, whichever is first. An ack that arrives ahead of an earlier
// unsettled delivery is held, at most holdLimit of them, until the gap
// fills and the multiple ack covers it, or for about holdFor, then sent
// alone. Requeues and discards go out at once. Holding delays an ack by a
// couple of milliseconds; it never lets a delivery be acked before its
// handler acked it.
type acker struct {
	ch   ackChannel
	hold time.Duration // holdFor; tests lengthen it

	mu       sync.Mutex
	next     uint64          // lowest tag not yet settled
	settled  map[uint64]bool // above next: true = acked and held, false = already settled on the wire
	nheld    int             // held acks above next
	heldAt   time.Time       // when the oldest of them was held
	upTo     uint64          // pending multiple ack (0: none); every tag up to it is settled
	npending int             // acks the pending multiple ack covers
	batch    int             // npending that sends the multiple ack at once
	timer    *time.Timer
	armed    bool
	giveUp   bool
}

func newAcker(ch ackChannel) *acker {
	a := &acker{ch: ch, hold: holdFor, next: 1, settled: make(map[uint64]bool), batch: 1}
	a.timer = time.AfterFunc(time.Hour, a.flush)
	a.timer.Stop()
	return a
}

// setPrefetch sizes the pending multiple ack for a consumer holding up to
// prefetch unacked deliveries.
func (a *acker) setPrefetch(prefetch int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.batch = max(1, prefetch/4)
	if a.npending >= a.batch {
		_ = a.sendPending()
	}
}

func (a *acker) ack(tag uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.giveUp || tag < a.next {
		return a.ch.Ack(tag, false)
	}
	if tag > a.next {
		if a.nheld < holdLimit && len(a.settled) < trackLimit {
			a.settled[tag] = true
			if a.nheld == 0 {
				a.heldAt = time.Now()
			}
			a.nheld++
			a.arm()
			return nil
		}
		if err := a.ch.Ack(tag, false); err != nil {
			return err
		}
		a.track(tag)
		return nil
	}
	a.advance(tag)
	return a.pend()
}

func (a *acker) nack(tag uint64, requeue bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.ch.Nack(tag, false, requeue); err != nil {
		return err
	}
	switch {
	case a.giveUp || tag < a.next:
	case tag > a.next:
		a.track(tag)
	default:
		a.advance(0)
		return a.pend()
	}
	return nil
}

// pend sends the pending multiple ack once it covers a batch, and
// otherwise makes sure the timer will.
func (a *acker) pend() error {
	if a.npending >= a.batch {
		return a.sendPending()
	}
	if a.npending > 0 {
		a.arm()
	}
	return nil
}

func (a *acker) arm() {
	if !a.armed {
		a.armed = true
		a.timer.Reset(a.hold)
	}
}

// advance moves next past the settled run that starts at it, folding the
// acks in that run (acked, when not 0, and every held one) into the
// pending multiple ack.
func (a *acker) advance(acked uint64) {
	if acked != 0 {
		a.upTo = acked
		a.npending++
	}
	a.next++
	for {
		held, ok := a.settled[a.next]
		if !ok {
			return
		}
		delete(a.settled, a.next)
		if held {
			a.upTo = a.next
			a.npending++
			a.nheld--
		}
		a.next++
	}
}

func (a *acker) sendPending() error {
	if a.upTo == 0 {
		return nil
	}
	upTo := a.upTo
	a.upTo, a.npending = 0, 0
	return a.ch.Ack(upTo, true)
}

// track remembers a tag settled on the wire above next.
func (a *acker) track(tag uint64) {
	a.settled[tag] = false
	if len(a.settled) >= trackLimit {
		a.giveUp = true
		_ = a.sendPending()
		a.sendHeld()
		clear(a.settled)
	}
}

// flush runs on the timer: it sends the pending multiple ack, and the
// held acks once the oldest has waited holdFor.
func (a *acker) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed = false
	// A failure means the channel died: the broker requeues.
	_ = a.sendPending()
	if a.nheld == 0 {
		return
	}
	if wait := a.hold - time.Since(a.heldAt); wait > 0 {
		a.armed = true
		a.timer.Reset(wait)
		return
	}
	a.sendHeld()
}

func (a *acker) sendHeld() {
	for tag, held := range a.settled {
		if held {
			_ = a.ch.Ack(tag, false)
			a.settled[tag] = false
			a.nheld--
		}
	}
}

// stop sends everything pending and held and stops the timer; the
// channel is closing.
func (a *acker) stop() {
	a.timer.Stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed = false
	_ = a.sendPending()
	a.sendHeld()
}
