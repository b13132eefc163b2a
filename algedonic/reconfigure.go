package algedonic

import "time"

// SetConfig changes the emitter's configuration in place, as a
// configuration reload does. When c is invalid it returns Validate's error
// and changes nothing; zero fields take their defaults, as in NewEmitter.
// Nothing already queued is lost but for what a smaller buffer cannot
// hold.
//
//   - PainExchange and PleasureExchange apply from the next event
//     published, including one queued before the change.
//   - Coalesce applies from the next event raised. Turning it off (zero)
//     sends at once the summaries of every window with counts, then
//     coalesces nothing; turning it on coalesces the kinds the emitter was
//     made with (WithCoalesced). A changed window applies to the windows
//     opened from now on; an open window ends at the latest one new window
//     from now, so that a shortened window is not held back by a long old
//     one. Run looks for ended windows at the new pace.
//   - Buffer resizes the queue. Shrinking it below the events waiting
//     drops the oldest of them, each counted and logged as a drop, as when
//     a full buffer overflows.
//   - Instance cannot change: events keep the instance the emitter was
//     made with, whatever c says, since it names this process to every
//     consumer of its events.
func (e *Emitter) SetConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c = c.WithDefaults()
	c.Instance = e.instance
	now := e.clock.Now()

	e.mu.Lock()
	old := e.cfg
	e.cfg = c
	var summaries []Event
	if c.Coalesce != old.Coalesce {
		summaries = e.recoalesceLocked(now, old.Coalesce, c.Coalesce)
	}
	var shrunk []Event
	if c.Buffer != old.Buffer {
		shrunk = e.queue.resize(c.Buffer, nil)
		e.m.pending.Set(float64(e.queue.len()))
	}
	dropped := e.enqueueLocked(summaries, nil)
	e.mu.Unlock()

	e.logDropped(shrunk, "algedonic buffer shrunk; dropped the oldest event", c.Buffer)
	e.afterEnqueue(summaries, dropped, c.Buffer)
	return nil
}

// recoalesceLocked moves coalescing from a window of from to one of to,
// returning the summaries to send now. e.mu must be held, with e.cfg
// already the new configuration.
func (e *Emitter) recoalesceLocked(now time.Time, from, to time.Duration) []Event {
	var out []Event
	switch {
	case to == 0:
		out = e.closeWindows(now, true)
		clear(e.windows)
	case from == 0:
	default:
		latest := now.Add(to)
		for _, w := range e.windows {
			if w.end.After(latest) {
				w.end = latest
			}
		}
	}
	e.coalesced = coalescedSet(to, e.kinds)
	e.tickEvery = tickEvery(to)
	select {
	case e.reconf <- struct{}{}:
	default:
	}
	return out
}

// currentTickEvery is how often Run looks for ended windows now.
func (e *Emitter) currentTickEvery() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tickEvery
}

// resize gives the ring room for capacity events, keeping the newest of
// them and their numbers, and appends the oldest it had no room for to
// dropped.
func (r *ring) resize(capacity int, dropped []Event) []Event {
	for r.n > capacity {
		dropped = append(dropped, r.buf[r.head].ev)
		r.pop()
	}
	buf := make([]queued, capacity)
	for i := range r.n {
		buf[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = buf, 0
	return dropped
}
