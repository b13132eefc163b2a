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
	holdLimit = 16
	// holdFor bounds how long an ack is held back.
	holdFor = 2 * time.Millisecond
	// trackLimit bounds the settled tags remembered above the lowest
	// unsettled one; past it coalescing gives up for the channel (some
	// delivery is never settled) and every ack goes out on its own.
	trackLimit = 4096
)

// acker settles one channel's deliveries with as few frames as it can:
// every ack costs a frame and a write, and tasks finish in roughly the
// order they came. Delivery tags on a channel count up from 1, so when
// the lowest unsettled delivery is acked, one ack with multiple set
// settles it and every ack held behind it. An ack that arrives ahead of an
// earlier unsettled delivery is held, at most holdLimit of them for at
// most holdFor, then sent alone. Requeues and discards go out at once.
// Holding an ack delays it by a couple of milliseconds; it never lets a
// delivery be acked before its handler acked it.
type acker struct {
	ch   ackChannel
	hold time.Duration // holdFor; tests lengthen it

	mu      sync.Mutex
	next    uint64          // lowest tag not yet settled
	settled map[uint64]bool // above next: true = acked and held, false = already settled on the wire
	nheld   int
	timer   *time.Timer
	armed   bool
	giveUp  bool
}

func newAcker(ch ackChannel) *acker {
	a := &acker{ch: ch, hold: holdFor, next: 1, settled: make(map[uint64]bool)}
	a.timer = time.AfterFunc(time.Hour, a.flush)
	a.timer.Stop()
	return a
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
			a.nheld++
			if !a.armed {
				a.armed = true
				a.timer.Reset(a.hold)
			}
			return nil
		}
		if err := a.ch.Ack(tag, false); err != nil {
			return err
		}
		a.track(tag)
		return nil
	}
	upTo := a.advance(tag)
	return a.ch.Ack(upTo, true)
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
		if upTo := a.advance(0); upTo != 0 {
			return a.ch.Ack(upTo, true)
		}
	}
	return nil
}

// advance moves next past the settled run that starts at it, and returns
// the highest held ack in that run (or acked, when it is higher), which
// one multiple ack settles together with everything below it.
func (a *acker) advance(acked uint64) uint64 {
	upTo := acked
	a.next++
	for {
		held, ok := a.settled[a.next]
		if !ok {
			return upTo
		}
		delete(a.settled, a.next)
		if held {
			upTo = a.next
			a.nheld--
		}
		a.next++
	}
}

// track remembers a tag settled on the wire above next.
func (a *acker) track(tag uint64) {
	a.settled[tag] = false
	if len(a.settled) >= trackLimit {
		a.giveUp = true
		a.sendHeld()
		clear(a.settled)
	}
}

// flush sends every held ack on its own.
func (a *acker) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed = false
	a.sendHeld()
}

func (a *acker) sendHeld() {
	for tag, held := range a.settled {
		if held {
			// A failure means the channel died: the broker requeues.
			_ = a.ch.Ack(tag, false)
			a.settled[tag] = false
			a.nheld--
		}
	}
}

// stop sends what is held and stops the timer; the channel is closing.
func (a *acker) stop() {
	a.timer.Stop()
	a.flush()
}
