package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/health"
)

// Kind is what an event exchange carries.
type Kind string

// The kinds of event.
const (
	Pain     Kind = "pain"
	Pleasure Kind = "pleasure"
	Health   Kind = "health"
)

// Event is one message of the event exchanges. Signal is set for pain
// and pleasure, Health for a health report; either is nil when the body
// is JSON but not what its exchange carries. Body is the message as it
// came.
type Event struct {
	Kind       Kind
	Exchange   string
	RoutingKey string
	Signal     *algedonic.Event
	Health     *health.Report
	Body       []byte
}

// Exchanges names the event exchanges; empty names take the defaults of
// the relay's configuration.
type Exchanges struct {
	Pain     string // default vsm.algedonic.pain
	Pleasure string // default vsm.algedonic.pleasure
	Health   string // default vsm.health
}

// WatchState is a change in a Watch's subscription.
type WatchState int

const (
	// Subscribed: the private queue is bound; events flow.
	Subscribed WatchState = iota
	// Lost: the connection was lost; events published until the next
	// Resubscribed are not seen.
	Lost
	// Resubscribed: bound again after a reconnect.
	Resubscribed
)

func (s WatchState) String() string {
	switch s {
	case Subscribed:
		return "subscribed"
	case Lost:
		return "lost"
	case Resubscribed:
		return "resubscribed"
	}
	return fmt.Sprintf("WatchState(%d)", int(s))
}

// WatchOption configures a Watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	kinds     []Kind
	exchanges Exchanges
	filter    func(Event) bool
	state     func(WatchState)
}

// WatchKinds selects the kinds of event (default: all three).
func WatchKinds(kinds ...Kind) WatchOption {
	return func(o *watchOptions) { o.kinds = kinds }
}

// WatchExchanges names the exchanges, when the relay's configuration
// renamed them.
func WatchExchanges(x Exchanges) WatchOption {
	return func(o *watchOptions) { o.exchanges = x }
}

// WatchFilter hands over only the events for which keep returns true.
func WatchFilter(keep func(Event) bool) WatchOption {
	return func(o *watchOptions) { o.filter = keep }
}

// WatchStateFunc is told when the subscription is made, lost and made
// again. It runs on Watch's goroutine.
func WatchStateFunc(fn func(WatchState)) WatchOption {
	return func(o *watchOptions) { o.state = fn }
}

// StopWatch, returned by a Watch function, ends the Watch with a nil
// error.
var StopWatch = errors.New("client: stop watching")

type binding struct {
	exchange string
	kind     Kind
}

func (o *watchOptions) bindings() ([]binding, error) {
	x := o.exchanges
	if x.Pain == "" {
		x.Pain = "vsm.algedonic.pain"
	}
	if x.Pleasure == "" {
		x.Pleasure = "vsm.algedonic.pleasure"
	}
	if x.Health == "" {
		x.Health = "vsm.health"
	}
	kinds := o.kinds
	if len(kinds) == 0 {
		kinds = []Kind{Pain, Pleasure, Health}
	}
	out := make([]binding, 0, len(kinds))
	for _, k := range kinds {
		switch k {
		case Pain:
			out = append(out, binding{x.Pain, Pain})
		case Pleasure:
			out = append(out, binding{x.Pleasure, Pleasure})
		case Health:
			out = append(out, binding{x.Health, Health})
		default:
			return nil, fmt.Errorf("client: unknown event kind %q", k)
		}
	}
	return out, nil
}

// Watch binds a private queue (exclusive, auto-delete) to the event
// exchanges, declaring them as the relay does (durable topic), and calls
// fn with every event until ctx ends (it returns ctx's error), fn returns
// StopWatch (nil) or another error (that error). Bodies that are not JSON
// are skipped. After a reconnect it binds a new queue.
func (c *Client) Watch(ctx context.Context, fn func(Event) error, opts ...WatchOption) error {
	var o watchOptions
	for _, opt := range opts {
		opt(&o)
	}
	binds, err := o.bindings()
	if err != nil {
		return err
	}
	kinds := make(map[string]Kind, len(binds))
	for _, b := range binds {
		kinds[b.exchange] = b.kind
	}
	state := func(s WatchState) {
		if o.state != nil {
			o.state(s)
		}
	}
	for first := true; ; first = false {
		s, err := c.session(ctx)
		if err != nil {
			return err
		}
		ch, deliveries, err := subscribe(s, binds)
		if err != nil {
			if s.isLost() {
				continue // the connection went while subscribing
			}
			return err
		}
		if first {
			state(Subscribed)
		} else {
			state(Resubscribed)
		}
		err = watchLoop(ctx, deliveries, kinds, o.filter, fn)
		_ = ch.Close()
		switch {
		case errors.Is(err, StopWatch):
			return nil
		case err != nil:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		// The deliveries ended: the connection is going, or only the
		// channel or the queue went. Wait for the session to be
		// replaced, or bind again on this one if it stays.
		state(Lost)
		t := time.NewTimer(time.Second)
		select {
		case <-s.lost:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

func subscribe(s *session, binds []binding) (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("opening a channel: %w", err)
	}
	fail := func(err error) (*amqp.Channel, <-chan amqp.Delivery, error) {
		_ = ch.Close()
		return nil, nil, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fail(fmt.Errorf("declaring the watch queue: %w", err))
	}
	for _, b := range binds {
		if err := ch.ExchangeDeclare(b.exchange, "topic", true, false, false, false, nil); err != nil {
			return fail(fmt.Errorf("declaring topic exchange %s: %w", b.exchange, err))
		}
		if err := ch.QueueBind(q.Name, "#", b.exchange, false, nil); err != nil {
			return fail(fmt.Errorf("binding to %s: %w", b.exchange, err))
		}
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return fail(fmt.Errorf("consuming the watch queue: %w", err))
	}
	return ch, d, nil
}

func watchLoop(ctx context.Context, deliveries <-chan amqp.Delivery, kinds map[string]Kind, keep func(Event) bool, fn func(Event) error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return nil
			}
			ev, ok := decodeEvent(kinds[d.Exchange], d)
			if !ok || (keep != nil && !keep(ev)) {
				continue
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
}

// decodeEvent types a delivery; ok is false for a body that is not JSON.
func decodeEvent(kind Kind, d amqp.Delivery) (Event, bool) {
	if !json.Valid(d.Body) {
		return Event{}, false
	}
	ev := Event{Kind: kind, Exchange: d.Exchange, RoutingKey: d.RoutingKey, Body: d.Body}
	if kind == Health {
		var r health.Report
		if err := json.Unmarshal(d.Body, &r); err == nil && r.Overall != "" {
			ev.Health = &r
		}
		return ev, true
	}
	if e, err := algedonic.Decode(d.Body); err == nil {
		ev.Signal = &e
	}
	return ev, true
}
