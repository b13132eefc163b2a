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
	"github.com/vsm-relay/relay/config"
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
	// and its bindings, once a breaker is shared, so that they are back
	// after every reconnect.
	consumeDeclare := func(conn *amqp.Connection) error {
		if err := declare(conn); err != nil {
			return err
		}
		if t := r.fleetT.Load(); t != nil {
			return t.Declare(conn)
		}
		return nil
	}
	shared := sharedBreakers(r.cfg)
	if len(shared) > 0 {
		if err := r.newFleetTransport(shared); err != nil {
			return err
		}
	}
	if r.consumeConn, err = r.dial(ctx, r.connOptions("consume", r.cfg.AMQP.URL, consumeDeclare)); err != nil {
		return r.explain(err)
	}
	r.watchConn(r.consumeConn, intake.ConnHolds{})
	r.pub = r.publisher(r.publishConn)
	r.eventPub = r.publisher(r.publishConn)
	if len(shared) == 0 {
		return nil
	}
	r.fleetMu.Lock()
	defer r.fleetMu.Unlock()
	return r.startFleet(shared)
}

// sharedBreakers names the breakers of cfg with share: true, sorted.
func sharedBreakers(cfg *config.Config) []string {
	var names []string
	for _, name := range slices.Sorted(maps.Keys(cfg.Breakers)) {
		if cfg.Breakers[name].Share {
			names = append(names, name)
		}
	}
	return names
}

// newFleetTransport makes the fleet's transport, its queue bound to the
// keys of shared: from then on the consuming connection declares it.
func (r *Relay) newFleetTransport(shared []string) error {
	t, err := fleet.NewAMQP(r.publishConn, fleet.AMQPOptions{Instance: r.cfg.Instance, Breakers: shared, Logger: r.log})
	if err != nil {
		return err
	}
	r.cleanup.push(t.Close)
	r.fleetT.Store(t)
	return nil
}

// startFleet shares the breakers named with the relay's peers over the
// broker: their failures and transitions go out on the fleet exchange, and
// the peers' come in on this relay's own queue (see package fleet), which
// the consuming connection has declared. r.fleetMu is held.
func (r *Relay) startFleet(shared []string) error {
	coord, err := fleet.New(r.cfg.Instance, r.fleetT.Load(), fleet.WithLogger(r.log))
	if err != nil {
		return err
	}
	if err := r.shareEach(coord, shared); err != nil {
		return err
	}
	if err := r.fleetT.Load().Listen(r.consumeConn, coord.Deliver); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = coord.Run(ctx) })
	r.cleanup.push(func() { cancel(); wg.Wait() })
	r.coord.Store(coord)
	return nil
}

// shareEach shares the breakers named in coord; those it shares already
// stay as they are.
func (r *Relay) shareEach(coord *fleet.Coordinator, names []string) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var err error
	for _, name := range names {
		if serr := coord.Share(r.breakers[name]); !errors.Is(serr, fleet.ErrAlreadyShared) {
			err = errors.Join(err, serr)
		}
	}
	return err
}

// sharedNow names the breakers the fleet shares now, sorted. It does not
// wait for a change under way (health reports read it).
func (r *Relay) sharedNow() []string {
	if coord := r.coord.Load(); coord != nil {
		return coord.Shared()
	}
	return nil
}

// reshare makes the fleet share the breakers named, and only those: a
// reload turned share on or off. The first breaker shared starts the
// fleet (its transport, queue and coordinator); later changes bind the
// queue to the keys of those shared, then share and unshare breakers in
// the running coordinator. A breaker keeps its state and counts either
// way. When the broker refuses, nothing is shared or unshared, so that
// the next reload, which compares with what is shared now, tries again.
func (r *Relay) reshare(ctx context.Context, shared []string) error {
	r.fleetMu.Lock()
	defer r.fleetMu.Unlock()
	coord := r.coord.Load()
	if coord == nil && len(shared) == 0 {
		return nil
	}
	if r.fleetT.Load() == nil {
		if err := r.newFleetTransport(shared); err != nil {
			return err
		}
	}
	if coord == nil {
		// The queue, declared as the transport binds it (by a failed
		// attempt before, perhaps): Bind then finds it.
		if err := r.consumeConn.Redeclare(ctx); err != nil {
			return err
		}
	}
	if err := r.fleetT.Load().Bind(ctx, r.consumeConn, shared); err != nil {
		return err
	}
	if coord == nil {
		return r.startFleet(shared)
	}
	for _, name := range coord.Shared() {
		if !slices.Contains(shared, name) {
			coord.Unshare(name)
		}
	}
	return r.shareEach(coord, shared)
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
