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
	"github.com/vsm-relay/relay/intake"
	"github.com/vsm-relay/relay/retrybudget"
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
		r.emit(byOperator(t, algedonic.BreakerOpenedWith(t.Breaker, t.Reason, algedonic.BreakerOpening{
			FromHalfOpen: t.From == breaker.HalfOpen, Failures: t.FailureCount, Threshold: t.Threshold,
			FailureSpan: t.FailureSpan, Window: t.Window, Calls: t.Calls, FailureRate: t.FailureRate,
			SlowCallRate: t.SlowCallRate, Origin: t.Origin,
		})))
	case breaker.HalfOpen:
		r.log.Info("breaker half-open: probing", "breaker", t.Breaker, "reason", t.Reason)
	case breaker.Closed:
		r.log.Info("breaker closed", "breaker", t.Breaker, "reason", t.Reason)
		if t.From != breaker.Closed {
			r.emit(byOperator(t, algedonic.BreakerClosed(t.Breaker, t.Reason)))
		}
	}
}

// byOperator marks the event of a transition an operator caused (through
// the admin endpoints: ForceOpen, Reset) with details.by.
func byOperator(t breaker.Transition, ev algedonic.Event) algedonic.Event {
	if t.Reason == breaker.ReasonForcedOpen || t.Reason == breaker.ReasonReset {
		return algedonic.ByOperatorDetails(ev)
	}
	return ev
}

func (r *Relay) bulkheadRejected(b *bulkhead.Bulkhead, err error) {
	r.emit(algedonic.BulkheadRejected(b.Name(), bulkhead.Reason(err), b.RecentRejectionRate()))
}

func (r *Relay) budgetExhausted(target string, s retrybudget.Snapshot) {
	window := r.config().Targets[target].RetryBudget.WithDefaults().Window
	r.emit(algedonic.RetryBudgetExhausted(target, s.Reason(window), s.DeniedShare()))
}

func (r *Relay) deadLettered(queue, reason string) {
	r.emit(algedonic.DeadLettered(queue, reason))
}

// watchConn turns connection events into intake holds, metrics and
// signals.
func (r *Relay) watchConn(c *broker.Conn, h intake.ConnHolds) {
	r.conns.Track(c, h)
	bm := r.metrics.Broker(c.Name())
	bm.Connected.Set(1)
	c.OnEvent(func(ev broker.Event) {
		switch ev.Kind {
		case broker.Connected:
			bm.Connected.Set(1)
			r.conns.Down(c, false)
			if ev.Downtime > 0 {
				bm.Reconnects.Inc()
				r.emit(algedonic.AMQPRestored(ev.Downtime))
			}
		case broker.Lost:
			bm.Connected.Set(0)
			r.conns.Down(c, true)
			r.emit(algedonic.AMQPLost(c.Name() + " connection: " + ev.Reason))
		case broker.Blocked:
			bm.Blocked.Set(1)
			r.conns.Blocked(c, true)
			r.emit(algedonic.AMQPBlocked(c.Name() + " connection: " + ev.Reason))
		case broker.Unblocked:
			bm.Blocked.Set(0)
			bm.BlockedSeconds.Add(ev.Downtime.Seconds())
			r.conns.Blocked(c, false)
			restored := algedonic.AMQPRestored(ev.Downtime)
			restored.Reason = fmt.Sprintf("broker unblocked the %s connection after %s", c.Name(), ev.Downtime.Round(time.Millisecond))
			r.emit(restored)
		}
	})
}

func (r *Relay) breakerSnapshots() []breaker.Snapshot {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]breaker.Snapshot, 0, len(r.breakers))
	for _, name := range slices.Sorted(maps.Keys(r.breakers)) {
		out = append(out, r.breakers[name].Snapshot())
	}
	return out
}

func (r *Relay) bulkheadStats() []bulkhead.Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]bulkhead.Stats, 0, len(r.bulkheads))
	for _, name := range slices.Sorted(maps.Keys(r.bulkheads)) {
		out = append(out, r.bulkheads[name].Stats())
	}
	return out
}

func (r *Relay) amqpStatus() health.AMQPStatus {
	conns := map[string]health.ConnStatus{
		"consume": {Connected: r.consumeConn.Connected(), Node: r.consumeConn.Node(), Blocked: r.consumeConn.Blocked()},
		"publish": {Connected: r.publishConn.Connected(), Node: r.publishConn.Node(), Blocked: r.publishConn.Blocked()},
	}
	r.mu.RLock()
	for _, q := range r.queues {
		if q.dest != nil {
			conns[q.dest.Name()] = health.ConnStatus{Connected: q.dest.Connected(), Node: q.dest.Node(), Blocked: q.dest.Blocked()}
		}
	}
	r.mu.RUnlock()
	return health.AMQPStatus{
		Connected:   r.publishConn.Connected() && r.consumeConn.Connected(),
		Blocked:     r.publishConn.Blocked(),
		Node:        health.NodesOf(conns, "consume", "publish"),
		Connections: conns,
	}
}

// newMonitor makes the health monitor, which reads the breakers, pools and
// connections and publishes on the relay's event publisher.
func (r *Relay) newMonitor() error {
	seen := map[string]bool{}
	var targetBreakers []string
	for _, name := range slices.Sorted(maps.Keys(r.targets)) {
		if b := r.targets[name].Breaker.Name(); !seen[b] {
			seen[b] = true
			targetBreakers = append(targetBreakers, b)
		}
	}
	slices.Sort(targetBreakers)
	hc := r.cfg.Health
	hc.Instance = r.cfg.Instance
	mon, err := health.NewMonitor(hc, health.Sources{
		Breakers:       r.breakerSnapshots,
		Bulkheads:      r.bulkheadStats,
		AMQP:           r.amqpStatus,
		TargetBreakers: targetBreakers,
		Shared:         r.sharedNow,
	}, r.emitter.Emit, eventPublisher{r}, health.WithLogger(r.log), health.WithRegisterer(r.registry))
	if err != nil {
		return err
	}
	r.monitor = mon
	return nil
}
