package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
)

// Guard is a downstream's protections, taken in the contract's order: a
// bulkhead slot, then a breaker permit. The work path (HTTP targets) and
// the outbound path (destination brokers) both call through one.
type Guard struct {
	Breaker  *breaker.Breaker
	Bulkhead *bulkhead.Bulkhead
	// PoolWait observes the seconds each call waited for a slot. Nil:
	// not observed.
	PoolWait prometheus.Observer
	// OnReject is told of every call the bulkhead turned away. Nil: none.
	OnReject func(b *bulkhead.Bulkhead, err error)
}

// errBreakerOpen and errProbeBusy end a call before it is made.
var (
	errBreakerOpen = errors.New("breaker open")
	errProbeBusy   = errors.New("half-open probe slots busy")
)

// poolRejection is our own bulkhead turning a call away: no downstream
// was called, and the breaker never hears of it.
type poolRejection struct {
	pool, reason string
}

func (e *poolRejection) Error() string {
	return fmt.Sprintf("bulkhead %s rejected it (%s)", e.pool, e.reason)
}

// ticket is what enter hands out and exit takes back: a bulkhead slot
// and a breaker permit.
type ticket struct {
	slot   bulkhead.Handle
	permit breaker.Permit
}

// enter takes a bulkhead slot, then a breaker permit. Without them it
// returns ctx's error, a *poolRejection, errBreakerOpen or errProbeBusy,
// and holds nothing. A call that entered must exit exactly once.
func (g *Guard) enter(ctx context.Context) (ticket, error) {
	waitStart := time.Now()
	h, err := g.Bulkhead.Checkout(ctx)
	if g.PoolWait != nil {
		g.PoolWait.Observe(time.Since(waitStart).Seconds())
	}
	if err != nil {
		if ctx.Err() != nil {
			return ticket{}, ctx.Err()
		}
		if g.OnReject != nil {
			g.OnReject(g.Bulkhead, err)
		}
		return ticket{}, &poolRejection{pool: g.Bulkhead.Name(), reason: bulkhead.Reason(err)}
	}
	p, err := g.Breaker.Allow()
	if err != nil {
		g.Bulkhead.Checkin(h)
		if errors.Is(err, breaker.ErrTooManyProbes) {
			return ticket{}, errProbeBusy
		}
		return ticket{}, errBreakerOpen
	}
	return ticket{slot: h, permit: p}, nil
}

// exit reports a call's outcome (and, for a failure, its reason) to the
// breaker and gives the bulkhead slot back.
func (g *Guard) exit(t ticket, outcome breaker.Outcome, reason error) {
	g.Breaker.Done(t.permit, outcome, reason)
	g.Bulkhead.Checkin(t.slot)
}

// run holds a bulkhead slot and a breaker permit while call runs (enter,
// call, exit). Without calling it returns enter's error.
func (g *Guard) run(ctx context.Context, call func() (breaker.Outcome, error)) error {
	t, err := g.enter(ctx)
	if err != nil {
		return err
	}
	outcome, reason := call()
	g.exit(t, outcome, reason)
	return nil
}
