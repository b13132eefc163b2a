package relay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backlog"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/fleet"
	"github.com/vsm-relay/relay/intake"
	"github.com/vsm-relay/relay/metrics"
)

// connect opens the publishing and consuming connections (separate, so
// that flow control on publishes never stalls acks), each declaring the
// topology on every (re)connect. Each connection and publisher pushes its
// cleanup.
func (r *Relay) connect(ctx context.Context) error {
	var err error
	if r.tlsConf, err = r.cfg.AMQP.TLS.ClientConfig(); err != nil {
		return err
	}
	// The topology is read at each (re)connect: a reload may have added
	// queues.
	declare := func(conn *amqp.Connection) error { return r.topology().Declare(conn, r.log) }
	if r.publishConn, err = r.dial(ctx, r.connOptions("publish", r.cfg.AMQP.URL, declare)); err != nil {
		return r.explain(err)
	}
	r.watchConn(r.publishConn, intake.ConnHolds{Blocked: intake.HoldBlocked, Down: intake.HoldDown})
	// The consuming connection also declares this relay's fleet queue
	// and its bindings, so that they are back after every reconnect.
	var fo *fleet.AMQPOptions
	consumeDeclare := declare
	if shared := r.sharedBreakers(); len(shared) > 0 {
		fo = &fleet.AMQPOptions{Instance: r.cfg.Instance, Breakers: shared, Logger: r.log}
		consumeDeclare = func(conn *amqp.Connection) error {
			if err := declare(conn); err != nil {
				return err
			}
			return fo.Declare(conn)
		}
	}
	if r.consumeConn, err = r.dial(ctx, r.connOptions("consume", r.cfg.AMQP.URL, consumeDeclare)); err != nil {
		return r.explain(err)
	}
	r.watchConn(r.consumeConn, intake.ConnHolds{})
	r.pub = r.publisher(r.publishConn)
	r.eventPub = r.publisher(r.publishConn)
	return r.startFleet(fo)
}

// sharedBreakers names the breakers with share: true, sorted.
func (r *Relay) sharedBreakers() []string {
	var names []string
	for _, name := range slices.Sorted(maps.Keys(r.cfg.Breakers)) {
		if r.cfg.Breakers[name].Share {
			names = append(names, name)
		}
	}
	return names
}

// startFleet shares the breakers fo names with the relay's peers over the
// broker: their failures and transitions go out on the fleet exchange, and
// the peers' come in on this relay's own queue (see package fleet).
func (r *Relay) startFleet(fo *fleet.AMQPOptions) error {
	if fo == nil {
		return nil
	}
	t, err := fleet.NewAMQP(r.publishConn, *fo)
	if err != nil {
		return err
	}
	r.cleanup.push(t.Close)
	coord, err := fleet.New(r.cfg.Instance, t, fleet.WithLogger(r.log))
	if err != nil {
		return err
	}
	for _, name := range fo.Breakers {
		if err := coord.Share(r.breakers[name]); err != nil {
			return err
		}
	}
	if err := t.Listen(r.consumeConn, coord.Deliver); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = coord.Run(ctx) })
	r.cleanup.push(func() { cancel(); wg.Wait() })
	return nil
}

// startBacklog reads each queue's ready messages every few seconds into
// relay_queue_backlog, 0 while an open breaker holds the queue's intake.
// It reads on the consuming connection, which the broker never blocks.
// Called again (by a reload that started or retired queues), it replaces
// the running poller with one of the queues and gates now running.
func (r *Relay) startBacklog() error {
	r.mu.RLock()
	gates := map[string]*intake.Gate{}
	gauges := map[string]prometheus.Gauge{}
	var names []string
	for _, q := range r.queues {
		gates[q.name] = q.gate
		gauges[q.name] = r.metrics.QueueBacklog(q.name)
		names = append(names, q.name)
	}
	r.mu.RUnlock()
	in := r.consumeConn.NewInspector()
	p, err := backlog.NewPoller(in, names, 0,
		func(q string) bool { return gates[q].Holds()&intake.HoldBreaker != 0 },
		func(q string, ready int) { gauges[q].Set(float64(ready)) },
		backlog.WithLogger(r.log))
	if err != nil {
		in.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(ctx) })
	stop := func() { cancel(); wg.Wait(); in.Close() }

	r.backlogMu.Lock()
	if r.backlogDone {
		r.backlogMu.Unlock()
		stop()
		return nil
	}
	prev := r.backlogStop
	r.backlogStop = stop
	r.backlogMu.Unlock()
	if prev != nil {
		prev()
		return nil
	}
	r.cleanup.push(func() {
		r.backlogMu.Lock()
		r.backlogDone = true
		stop := r.backlogStop
		r.backlogMu.Unlock()
		stop()
	})
	return nil
}

// explain names the configuration key behind a queue that exists as
// another type than the configuration asks for.
func (r *Relay) explain(err error) error {
	var qt *broker.QueueTypeError
	if !errors.As(err, &qt) {
		return err
	}
	key := "amqp.queue_type"
	for i, w := range r.cfg.Work {
		if qt.Queue == w.Queue || strings.HasPrefix(qt.Queue, w.Queue+".") {
			key = fmt.Sprintf("work[%d].queue_type (or amqp.queue_type)", i)
		}
	}
	for i, o := range r.cfg.Outbound {
		if qt.Queue == o.Queue || strings.HasPrefix(qt.Queue, o.Queue+".") {
			key = fmt.Sprintf("outbound[%d].queue_type (or amqp.queue_type)", i)
		}
	}
	return fmt.Errorf("queue %s exists as a %s queue, but %s asks for %s: delete the queue (after moving its messages) or set the key to %s",
		qt.Queue, qt.Existing, key, qt.Wanted, qt.Existing)
}

// dial connects and pushes the connection's close.
func (r *Relay) dial(ctx context.Context, opts broker.Options) (*broker.Conn, error) {
	c, err := broker.Dial(ctx, opts)
	if err != nil {
		return nil, err
	}
	r.cleanup.push(func() { _ = c.Close() })
	return c, nil
}

// publisher makes a publisher on c and pushes its close.
func (r *Relay) publisher(c *broker.Conn) *broker.Publisher {
	p := c.NewPublisher()
	r.cleanup.push(p.Close)
	return p
}

// topology is everything the relay declares on its own broker: the event
// exchanges, and each queue's own queues (and, for an outbound queue whose
// destination is this broker, the exchanges it may publish to).
func (r *Relay) topology() broker.Topology {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t := broker.Topology{Topics: []string{r.cfg.Algedonic.PainExchange, r.cfg.Algedonic.PleasureExchange, r.cfg.Health.Exchange}}
	for _, q := range r.queues {
		t.Add(q.topology())
	}
	return t
}

func (r *Relay) connOptions(name, url string, topo func(*amqp.Connection) error) broker.Options {
	a := r.config().AMQP
	confirms := r.metrics.Broker(name).PublishConfirms
	return broker.Options{
		Name: name, Instance: r.cfg.Instance, URL: url, TLS: r.tlsConf,
		ConnectTimeout: a.ConnectTimeout, Heartbeat: a.Heartbeat,
		ReconnectInitial: a.Reconnect.Initial, ReconnectMax: a.Reconnect.Max,
		Topology: topo, Logger: r.log,
		OnConfirm: func(err error) { confirms(confirmOutcome(err)).Inc() },
	}
}

// confirmOutcome is the relay_amqp_publishes_total outcome of a publish.
func confirmOutcome(err error) string {
	switch {
	case err == nil:
		return metrics.ConfirmAck
	case errors.Is(err, broker.ErrReturned):
		return metrics.ConfirmReturned
	case errors.Is(err, broker.ErrNacked):
		return metrics.ConfirmNack
	}
	return metrics.ConfirmLost
}

// eventPublisher publishes signals and health reports, persistent and
// confirmed, on the relay's event publisher (set by connect, before Run
// starts the emitter and the monitor).
type eventPublisher struct{ r *Relay }

func (e eventPublisher) Publish(ctx context.Context, exchange, key string, body []byte) error {
	return e.r.eventPub.PublishAndWait(ctx, exchange, key, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, Timestamp: time.Now(), Body: body,
	})
}
