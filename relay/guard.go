package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
)

// guard is a downstream's protections, taken in the contract's order: a
// bulkhead slot, then a breaker permit. The work path (HTTP targets) and
// the outbound path (destination brokers) both call through one.
type guard struct {
	breaker  *breaker.Breaker
	bulkhead *bulkhead.Bulkhead
	poolWait prometheus.Observer
	onReject func(b *bulkhead.Bulkhead, err error)
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

// run holds a bulkhead slot and a breaker permit while call runs, and
// reports call's outcome (and, for a failure, its reason) to the breaker.
// Without calling it returns ctx's error, a *poolRejection,
// errBreakerOpen or errProbeBusy.
func (g *guard) run(ctx context.Context, call func() (breaker.Outcome, error)) error {
	waitStart := time.Now()
	h, err := g.bulkhead.Checkout(ctx)
	g.poolWait.Observe(time.Since(waitStart).Seconds())
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		g.onReject(g.bulkhead, err)
		return &poolRejection{pool: g.bulkhead.Name(), reason: bulkhead.Reason(err)}
	}
	defer g.bulkhead.Checkin(h)
	p, err := g.breaker.Allow()
	if err != nil {
		if errors.Is(err, breaker.ErrTooManyProbes) {
			return errProbeBusy
		}
		return errBreakerOpen
	}
	outcome, reason := call()
	g.breaker.Done(p, outcome, reason)
	return nil
}
