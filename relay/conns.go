package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/intake"
	"github.com/vsm-relay/relay/metrics"
)

// connect opens the publishing and consuming connections (separate, so
// that flow control on publishes never stalls acks) and any outbound
// destinations, each declaring its topology on every (re)connect. Each
// connection and publisher pushes its cleanup.
func (r *Relay) connect(ctx context.Context) error {
	tc, err := r.cfg.AMQP.TLS.ClientConfig()
	if err != nil {
		return err
	}
	topo := r.topology()
	declare := func(conn *amqp.Connection) error { return topo.Declare(conn, r.log) }
	if r.publishConn, err = r.dial(ctx, r.connOptions(tc, "publish", r.cfg.AMQP.URL, declare)); err != nil {
		return err
	}
	r.watchConn(r.publishConn, intake.ConnHolds{Blocked: intake.HoldBlocked, Down: intake.HoldDown})
	if r.consumeConn, err = r.dial(ctx, r.connOptions(tc, "consume", r.cfg.AMQP.URL, declare)); err != nil {
		return err
	}
	r.watchConn(r.consumeConn, intake.ConnHolds{})
	r.pub = r.publisher(r.publishConn)
	r.eventPub = r.publisher(r.publishConn)
	for _, o := range r.outbound {
		if o.cfg.URL == "" {
			o.pub = r.publisher(r.publishConn)
			continue
		}
		dt := o.DestinationTopology()
		opts := r.connOptions(tc, "outbound "+o.Queue(), o.cfg.URL, func(conn *amqp.Connection) error {
			return dt.Declare(conn, r.log)
		})
		if o.dest, err = r.dial(ctx, opts); err != nil {
			return fmt.Errorf("outbound %s destination: %w", o.Queue(), err)
		}
		r.watchConn(o.dest, intake.ConnHolds{Blocked: intake.HoldDestBlocked, Down: intake.HoldDestDown})
		o.pub = r.publisher(o.dest)
	}
	return nil
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
	t := broker.Topology{Topics: []string{r.cfg.Algedonic.PainExchange, r.cfg.Algedonic.PleasureExchange, r.cfg.Health.Exchange}}
	for _, w := range r.work {
		t.Add(w.Topology(nil))
	}
	for _, o := range r.outbound {
		t.Add(o.Topology(nil))
		if o.cfg.URL == "" {
			t.Add(o.DestinationTopology())
		}
	}
	return t
}

func (r *Relay) connOptions(tc *tls.Config, name, url string, topo func(*amqp.Connection) error) broker.Options {
	a := r.cfg.AMQP
	confirms := r.metrics.Broker(name).PublishConfirms
	return broker.Options{
		Name: name, Instance: r.cfg.Instance, URL: url, TLS: tc,
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
