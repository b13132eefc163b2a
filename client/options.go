package client

import (
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Option configures a Client.
type Option func(*options)

type options struct {
	tls            *tls.Config
	name           string
	heartbeat      time.Duration
	dialTimeout    time.Duration
	reconnectFirst time.Duration
	reconnectMax   time.Duration
	logger         *slog.Logger
	socket         func(net.Conn) net.Conn // wraps each new socket; for tests
}

func defaultOptions() options {
	return options{
		name:           "relay-client",
		heartbeat:      10 * time.Second,
		dialTimeout:    10 * time.Second,
		reconnectFirst: 100 * time.Millisecond,
		reconnectMax:   10 * time.Second,
		logger:         slog.New(slog.DiscardHandler),
	}
}

// WithTLS sets the TLS configuration for amqps:// URLs.
func WithTLS(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithName sets the connection name the broker shows (default
// "relay-client").
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithHeartbeat sets the AMQP heartbeat interval (default 10s; zero keeps
// the default).
func WithHeartbeat(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.heartbeat = d
		}
	}
}

// WithDialTimeout bounds one attempt to reach one node, TCP and AMQP
// handshake together (default 10s; zero keeps the default). Dial's
// context bounds all attempts together.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.dialTimeout = d
		}
	}
}

// WithReconnect sets the backoff between rounds of the node list after a
// connection is lost: first wait, doubled up to max (defaults 100ms and
// 10s; zero keeps a default).
func WithReconnect(first, max time.Duration) Option {
	return func(o *options) {
		if first > 0 {
			o.reconnectFirst = first
		}
		if max > 0 {
			o.reconnectMax = max
		}
	}
}

// WithLogger gives the client a logger for reconnects (default: none).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// CallOption sets a property of one task.
type CallOption func(*amqp.Publishing)

// MessageID sets the task's message_id, which the relay sends downstream
// as Idempotency-Key (default: a random id).
func MessageID(id string) CallOption { return func(p *amqp.Publishing) { p.MessageId = id } }

// CorrelationID sets the task's correlation_id (default for a call: a
// random id). A call's correlation id must be unique among the calls
// waiting on the client.
func CorrelationID(id string) CallOption { return func(p *amqp.Publishing) { p.CorrelationId = id } }

// ContentType sets the task's content type, sent downstream as
// Content-Type (default: none).
func ContentType(t string) CallOption { return func(p *amqp.Publishing) { p.ContentType = t } }

// Header sets one message header.
func Header(key string, value any) CallOption {
	return func(p *amqp.Publishing) {
		if p.Headers == nil {
			p.Headers = amqp.Table{}
		}
		p.Headers[key] = value
	}
}

// Headers sets message headers, added to those already set.
func Headers(h map[string]any) CallOption {
	return func(p *amqp.Publishing) {
		if len(h) == 0 {
			return
		}
		if p.Headers == nil {
			p.Headers = make(amqp.Table, len(h))
		}
		for k, v := range h {
			p.Headers[k] = v
		}
	}
}

// Transient publishes the task without persisting it (default:
// persistent).
func Transient() CallOption { return func(p *amqp.Publishing) { p.DeliveryMode = amqp.Transient } }

// AppID sets the task's app_id.
func AppID(id string) CallOption { return func(p *amqp.Publishing) { p.AppId = id } }
