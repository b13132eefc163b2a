package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/broker"
)

// Defaults of AMQPOptions.
const (
	// DefaultTTL is how long a fleet message may wait in a relay's queue:
	// older ones say nothing a relay could still act on.
	DefaultTTL = 10 * time.Second
	// DefaultQueueExpires is how long the broker keeps a fleet queue
	// nobody uses (declared, never consumed) before deleting it.
	DefaultQueueExpires = time.Minute
	// DefaultQueueLength bounds a fleet queue; past it the oldest
	// messages go first.
	DefaultQueueLength = 1000
	// DefaultPrefetch is how many fleet messages a relay holds unacked.
	DefaultPrefetch = 64
)

// ErrUnavailable is returned by AMQP.Publish, at once, while the
// publishing connection is down or blocked by the broker: the message is
// lost, and the relay decides alone until its peers hear it again.
var ErrUnavailable = errors.New("fleet: broker connection down or blocked")

// AMQPOptions configure the fleet's transport on the relay's broker. Zero
// values mean the defaults noted.
type AMQPOptions struct {
	// Instance is the relay's instance id; it names the relay's queue.
	// Required.
	Instance string
	// Exchange is the durable topic exchange of the fleet. Zero:
	// DefaultExchange.
	Exchange string
	// Queue is the relay's own queue of its peers' messages. Zero:
	// Exchange + "." + Instance.
	Queue string
	// Breakers are the names of the breakers shared here: the queue is
	// bound only to their routing keys. None: every breaker ("breaker.#").
	Breakers []string
	// TTL is every message's expiration, and the queue's message TTL.
	// Zero: DefaultTTL.
	TTL time.Duration
	// WaitConfirm makes Publish wait (up to its ctx) for the broker's
	// confirm, so that a message the broker refused or lost counts as
	// not sent. Without it Publish returns once the message is written.
	WaitConfirm bool
	// Logger receives the messages that could not be read. Nil:
	// discarded.
	Logger *slog.Logger
}

func (o AMQPOptions) withDefaults() AMQPOptions {
	if o.Exchange == "" {
		o.Exchange = DefaultExchange
	}
	if o.Queue == "" {
		o.Queue = o.Exchange + "." + o.Instance
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// AMQP is the fleet's Transport over a topic exchange on the relay's
// broker. Each message goes to the exchange with routing key
// Message.RoutingKey, transient and expiring after the TTL: a fleet
// message is only worth anything now. Each relay reads its peers' messages
// from a queue of its own (Queue), non-durable and auto-deleted, bound to
// the keys of the breakers it shares; AMQPOptions.Declare declares it and
// must run in the Topology of the connection Listen consumes on, so that
// it exists again, bound again, after every reconnect.
//
// Publishing uses a publisher of its own, so that a refused fleet publish
// (the exchange deleted under it, say) never takes the relay's other
// publishes down with its channel. It is safe for concurrent use.
type AMQP struct {
	conn *broker.Conn
	pub  *broker.Publisher
	o    AMQPOptions

	mu        sync.Mutex
	keys      []string // the queue's binding keys now (see Bind)
	consumers []*broker.Consumer
	closed    bool
}

// NewAMQP returns the fleet transport that publishes on conn.
func NewAMQP(conn *broker.Conn, opts AMQPOptions) (*AMQP, error) {
	if conn == nil {
		return nil, errors.New("fleet: the transport needs a broker connection")
	}
	if opts.Instance == "" {
		return nil, ErrNoInstance
	}
	o := opts.withDefaults()
	return &AMQP{conn: conn, pub: conn.NewPublisher(), o: o, keys: BindingKeys(o.Breakers)}, nil
}

// Exchange is the fleet exchange the transport publishes to.
func (a *AMQP) Exchange() string { return a.o.Exchange }

// Queue is the relay's own queue of its peers' messages.
func (a *AMQP) Queue() string { return a.o.Queue }

// Publish sends m to the fleet. It fails at once with ErrUnavailable
// while the connection is down or blocked; it never waits longer than ctx
// allows.
func (a *AMQP) Publish(ctx context.Context, m Message) error {
	if !a.conn.Connected() || a.conn.Blocked() {
		return ErrUnavailable
	}
	body, err := m.Marshal()
	if err != nil {
		return err
	}
	conf, err := a.pub.Publish(ctx, a.o.Exchange, m.RoutingKey(), false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Transient,
		Expiration:   strconv.FormatInt(a.o.TTL.Milliseconds(), 10),
		Timestamp:    m.At,
		Type:         "fleet." + string(m.Kind),
		AppId:        m.Instance,
		Body:         body,
	})
	if err != nil {
		return err
	}
	if a.o.WaitConfirm {
		return conf.Wait(ctx)
	}
	return nil
}

// Declare declares the fleet exchange and the relay's queue, and binds
// the queue to the shared breakers' keys, as o says (defaults applied).
// Call it from the Topology of the connection Listen consumes on, so that
// it runs on every reconnect: the queue goes with the connection.
func (o AMQPOptions) Declare(conn *amqp.Connection) error {
	o = o.withDefaults()
	return declare(conn, o.Exchange, o.Queue, BindingKeys(o.Breakers), o.TTL)
}

// Declare declares the fleet exchange and the relay's queue, bound to the
// keys of the breakers shared now: those of AMQPOptions.Breakers, or of
// the last Bind. Use it instead of AMQPOptions.Declare where Bind changes
// the breakers, so that a reconnect binds the queue as it is now.
func (a *AMQP) Declare(conn *amqp.Connection) error {
	a.mu.Lock()
	keys := a.keys
	a.mu.Unlock()
	return declare(conn, a.o.Exchange, a.o.Queue, keys, a.o.TTL)
}

// Bind makes the names of breakers those the relay's queue hears of: it
// binds the queue to their keys and unbinds it from the keys of the
// breakers no longer named, on conn, the connection Listen consumes on.
// With no names the queue stays, unbound (not bound to every breaker as
// AMQPOptions.Breakers would be), so that a consumer Listen started finds
// it after a reconnect. On an error the bindings may be part way, and the
// transport keeps the keys it had: Bind again with the same names mends
// them (binding and unbinding are idempotent).
func (a *AMQP) Bind(ctx context.Context, conn *broker.Conn, breakers []string) error {
	var keys []string
	if len(breakers) > 0 {
		keys = BindingKeys(breakers)
	}
	a.mu.Lock()
	old := a.keys
	a.mu.Unlock()
	var bind, unbind []string
	for _, k := range keys {
		if !slices.Contains(old, k) {
			bind = append(bind, k)
		}
	}
	for _, k := range old {
		if !slices.Contains(keys, k) {
			unbind = append(unbind, k)
		}
	}
	if len(bind) > 0 || len(unbind) > 0 {
		ch, _, err := conn.Channel(ctx)
		if err != nil {
			return fmt.Errorf("opening a channel for the fleet bindings: %w", err)
		}
		defer ch.Close()
		for _, k := range bind {
			if err := ch.QueueBind(a.o.Queue, k, a.o.Exchange, false, nil); err != nil {
				return fmt.Errorf("binding fleet queue %s to %s with %q: %w", a.o.Queue, a.o.Exchange, k, err)
			}
		}
		for _, k := range unbind {
			if err := ch.QueueUnbind(a.o.Queue, k, a.o.Exchange, nil); err != nil {
				return fmt.Errorf("unbinding fleet queue %s from %s with %q: %w", a.o.Queue, a.o.Exchange, k, err)
			}
		}
	}
	a.mu.Lock()
	a.keys = keys
	a.mu.Unlock()
	return nil
}

// Listen consumes the relay's queue on conn, which must declare it (see
// AMQPOptions.Declare), and hands every message to deliver (Coordinator.Deliver) from
// the consumer's goroutine. Each message is acked as it is taken; one that
// cannot be read is logged and acked too. Close stops it.
func (a *AMQP) Listen(conn *broker.Conn, deliver func(Message)) error {
	if conn == nil || deliver == nil {
		return errors.New("fleet: Listen needs a connection and a deliver function")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return broker.ErrClosed
	}
	c, err := conn.Consume(broker.ConsumerOptions{Queue: a.o.Queue, Prefetch: DefaultPrefetch}, func(d broker.Delivery) {
		a.receive(d, deliver)
	})
	if err != nil {
		return err
	}
	a.consumers = append(a.consumers, c)
	return nil
}

func (a *AMQP) receive(d broker.Delivery, deliver func(Message)) {
	// Acked first: whatever follows, the message is not worth a
	// redelivery (a peer's news is either taken now or stale).
	_ = d.Ack()
	m, err := Decode(d.Body)
	if err != nil {
		a.o.Logger.Warn("fleet message ignored", "queue", a.o.Queue, "routing_key", d.RoutingKey, "error", err)
		return
	}
	deliver(m)
}

// Close stops the consumers Listen started and closes the publisher. The
// connections are the caller's.
func (a *AMQP) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	cs := a.consumers
	a.consumers = nil
	a.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	a.pub.Close()
}

// BindingKeys are the routing keys a relay that shares the named breakers
// binds its queue with: one per name ("breaker.<name>", as
// Message.RoutingKey writes it), or "breaker.#" for none.
func BindingKeys(breakers []string) []string {
	if len(breakers) == 0 {
		return []string{"breaker.#"}
	}
	seen := make(map[string]bool, len(breakers))
	keys := make([]string, 0, len(breakers))
	for _, n := range breakers {
		k := "breaker." + algedonic.RoutingWord(n)
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// DeclareFleet declares on conn the durable topic exchange, the queue
// (non-durable, auto-deleted when its consumer goes, expired by the
// broker after DefaultQueueExpires unused, at most DefaultQueueLength
// messages of at most DefaultTTL) and its bindings to exchange with keys
// (none: "breaker.#"). It is idempotent, for a connection's Topology.
func DeclareFleet(conn *amqp.Connection, exchange, queue string, keys []string) error {
	if len(keys) == 0 {
		keys = BindingKeys(nil)
	}
	return declare(conn, exchange, queue, keys, DefaultTTL)
}

func declare(conn *amqp.Connection, exchange, queue string, keys []string, ttl time.Duration) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel for the fleet topology: %w", err)
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring fleet exchange %s: %w", exchange, err)
	}
	// Not exclusive: after a connection is cut the broker may keep the old
	// one (and its exclusive queue) until heartbeats time out, which would
	// refuse the new connection's declare and hold the relay's whole
	// connection down. Auto-delete and x-expires clean up instead.
	args := amqp.Table{
		"x-expires":     DefaultQueueExpires.Milliseconds(),
		"x-message-ttl": ttl.Milliseconds(),
		"x-max-length":  int64(DefaultQueueLength),
		"x-overflow":    "drop-head",
	}
	if _, err := ch.QueueDeclare(queue, false, true, false, false, args); err != nil {
		return fmt.Errorf("declaring fleet queue %s: %w", queue, err)
	}
	for _, k := range keys {
		if err := ch.QueueBind(queue, k, exchange, false, nil); err != nil {
			return fmt.Errorf("binding fleet queue %s to %s with %q: %w", queue, exchange, k, err)
		}
	}
	return nil
}
