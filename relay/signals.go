package relay

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/health"
)

// emit hands an event to the emitter, which keeps it until the broker
// takes it.
func (r *Relay) emit(ev algedonic.Event) { r.emitter.Emit(ev) }

// breakerChanged turns breaker transitions into metrics and signals.
func (r *Relay) breakerChanged(t breaker.Transition) {
	r.metrics.BreakerTransition(t.Breaker, t.From.String(), t.To.String())
	switch t.To {
	case breaker.Open:
		r.log.Warn("breaker opened", "breaker", t.Breaker, "from", t.From.String(), "reason", t.Reason, "retry_at", t.RetryAt)
		r.emit(algedonic.BreakerOpened(t.Breaker, t.Reason, t.FailureRate, t.From == breaker.HalfOpen))
	case breaker.HalfOpen:
		r.log.Info("breaker half-open: probing", "breaker", t.Breaker, "reason", t.Reason)
	case breaker.Closed:
		r.log.Info("breaker closed", "breaker", t.Breaker, "reason", t.Reason)
		if t.From != breaker.Closed {
			r.emit(algedonic.BreakerClosed(t.Breaker, t.Reason))
		}
	}
}

func (r *Relay) bulkheadRejected(b *bulkhead.Bulkhead, err error) {
	s := b.Stats()
	rejected := s.RejectedFull + s.RejectedTimeout + s.RejectedRateLimited
	rate := 0.0
	if total := rejected + s.Checkouts; total > 0 {
		rate = float64(rejected) / float64(total)
	}
	r.emit(algedonic.BulkheadRejected(b.Name(), bulkhead.Reason(err), rate))
}

func (r *Relay) deadLettered(queue, reason string) {
	r.emit(algedonic.DeadLettered(queue, reason))
}

// connHold names the holds a publishing connection puts on intake.
type connHold struct{ blocked, down uint8 }

// holdWith makes g held while pc is down or blocked, starting from pc's
// state now. Registering before reading the state means no event is
// missed: one that comes after the read applies on top of it.
func (r *Relay) holdWith(pc *broker.Conn, g *gate) {
	r.gatesMu.Lock()
	r.connGates[pc] = append(r.connGates[pc], g)
	h := r.connHolds[pc]
	r.gatesMu.Unlock()
	if h.down != 0 && !pc.Connected() {
		g.set(h.down, true)
	}
	if h.blocked != 0 && pc.Blocked() {
		g.set(h.blocked, true)
	}
}

// hold sets or clears a hold on the gates of the queues c publishes for.
func (r *Relay) hold(c *broker.Conn, hold uint8, on bool) {
	if hold == 0 {
		return
	}
	r.gatesMu.Lock()
	gates := append([]*gate(nil), r.connGates[c]...)
	r.gatesMu.Unlock()
	for _, g := range gates {
		g.set(hold, on)
	}
}

// watchConn turns connection events into intake holds, metrics and
// signals.
func (r *Relay) watchConn(c *broker.Conn, h connHold) {
	r.gatesMu.Lock()
	r.connHolds[c] = h
	r.gatesMu.Unlock()
	bm := r.metrics.Broker(c.Name())
	bm.Connected.Set(1)
	c.OnEvent(func(ev broker.Event) {
		switch ev.Kind {
		case broker.Connected:
			bm.Connected.Set(1)
			r.hold(c, h.down, false)
			if ev.Downtime > 0 {
				bm.Reconnects.Inc()
				r.emit(algedonic.AMQPRestored(ev.Downtime))
			}
		case broker.Lost:
			bm.Connected.Set(0)
			r.hold(c, h.down, true)
			r.emit(algedonic.AMQPLost(c.Name() + " connection: " + ev.Reason))
		case broker.Blocked:
			bm.Blocked.Set(1)
			r.hold(c, h.blocked, true)
			r.emit(algedonic.AMQPBlocked(c.Name() + " connection: " + ev.Reason))
		case broker.Unblocked:
			bm.Blocked.Set(0)
			bm.BlockedSeconds.Add(ev.Downtime.Seconds())
			r.hold(c, h.blocked, false)
			restored := algedonic.AMQPRestored(ev.Downtime)
			restored.Reason = fmt.Sprintf("broker unblocked the %s connection after %s", c.Name(), ev.Downtime.Round(time.Millisecond))
			r.emit(restored)
		}
	})
}

func (r *Relay) breakerSnapshots() []breaker.Snapshot {
	out := make([]breaker.Snapshot, 0, len(r.breakers))
	for _, name := range slices.Sorted(maps.Keys(r.breakers)) {
		out = append(out, r.breakers[name].Snapshot())
	}
	return out
}

func (r *Relay) bulkheadStats() []bulkhead.Stats {
	out := make([]bulkhead.Stats, 0, len(r.bulkheads))
	for _, name := range slices.Sorted(maps.Keys(r.bulkheads)) {
		out = append(out, r.bulkheads[name].Stats())
	}
	return out
}

func (r *Relay) amqpStatus() health.AMQPStatus {
	if r.publishConn == nil || r.consumeConn == nil {
		return health.AMQPStatus{}
	}
	return health.AMQPStatus{
		Connected: r.publishConn.Connected() && r.consumeConn.Connected(),
		Blocked:   r.publishConn.Blocked(),
	}
}
