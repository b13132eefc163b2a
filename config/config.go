package config

import (
	"time"

	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
)

// Config is the relay's effective configuration. Load and LoadBytes return
// it resolved: breakers and backoff policies have their `defaults` entry
// merged in, targets have their concurrency and work and outbound entries
// their prefetch filled in. A Config built by hand is checked with Validate.
type Config struct {
	// Instance is the id carried in events and health reports. Load sets
	// "<hostname>-<pid>" when it is empty.
	Instance string
	// ShutdownTimeout bounds the drain of in-flight work on shutdown.
	ShutdownTimeout time.Duration

	AMQP AMQP
	HTTP HTTP

	// Breakers by name, each with `defaults` merged under it. The
	// `defaults` entry itself is not a breaker and is not in the map.
	Breakers map[string]breaker.Settings
	// Bulkheads by name, as configured (zero fields mean the bulkhead
	// package's defaults).
	Bulkheads map[string]bulkhead.Settings
	// Backoff policies by name, each with `defaults` merged under it; the
	// `defaults` entry itself is not in the map.
	Backoff map[string]backoff.Policy
	// Targets by name; Target.Name repeats the key.
	Targets map[string]Target
	// Work queues, in file order.
	Work []Work
	// Outbound-publish queues, in file order.
	Outbound []Outbound

	Algedonic Algedonic
	Health    Health
}

// AMQP is the broker connection.
type AMQP struct {
	// URL is amqp:// or amqps://, password included; log it only through
	// RedactURL.
	URL string
	// ConnectTimeout bounds the wait for the first connection at start.
	ConnectTimeout time.Duration
	// Prefetch is the per-consumer basic.qos, 1 to 65535.
	Prefetch  int
	Reconnect Reconnect
	TLS       TLS
	// Heartbeat is the AMQP heartbeat interval; zero leaves the choice to
	// the broker package, whose default is 10s.
	Heartbeat time.Duration
}

// Reconnect is the exponential backoff between reconnection attempts.
type Reconnect struct {
	Initial time.Duration
	Max     time.Duration
}

// TLS configures every amqps:// connection: the relay's broker and the
// outbound destinations alike. The zero value verifies each broker against
// the system roots, by its URL's host, with no client certificate.
type TLS struct {
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
	// InsecureSkipVerify turns off verification of the broker's
	// certificate; for tests only.
	InsecureSkipVerify bool
}

// HTTP is the health and metrics server.
type HTTP struct {
	// Listen is host:port.
	Listen string
}

// Target is a downstream HTTP service.
type Target struct {
	// Name is the target's key under `targets`.
	Name    string
	URL     string
	Method  string
	Timeout time.Duration
	// Headers are sent on every request. Names are lower case; values are
	// raw, with ${ENV} references not yet expanded (see ExpandedHeaders).
	Headers map[string]string
	// Breaker, Bulkhead and Backoff name entries of the same sections.
	Breaker  string
	Bulkhead string
	Backoff  string
	// MaxRequestBytes: a task body over it is a permanent failure.
	MaxRequestBytes int64
	// MaxResponseBytes: a response body over it is a failure.
	MaxResponseBytes int64
	// Concurrency is how many tasks of one queue for this target run at
	// once. Load sets the bulkhead's capacity (size + overflow) when the
	// file leaves it zero.
	Concurrency int
}

// Work is a work queue the relay consumes.
type Work struct {
	Queue  string
	Target string
	// Redelivery holds the delays of the redeliveries that follow spent
	// in-process retries; empty: dead-letter at once.
	Redelivery []time.Duration
	// Prefetch is this queue's basic.qos. Load sets amqp.prefetch when the
	// file leaves it zero.
	Prefetch int
}

// Outbound is an outbound-publish queue the relay consumes.
type Outbound struct {
	Queue string
	// URL is the destination broker; empty: the relay's own broker.
	URL      string
	Breaker  string
	Bulkhead string
	// Exchanges are the only exchanges a message may be sent to.
	Exchanges []string
	// Prefetch is this queue's basic.qos. Load sets amqp.prefetch when the
	// file leaves it zero.
	Prefetch int
}

// Algedonic configures pain and pleasure signals.
type Algedonic struct {
	PainExchange     string
	PleasureExchange string
	// Coalesce: repeated pain of one kind within it is sent once, with a
	// count. Zero: every event is sent.
	Coalesce time.Duration
	// Buffer is how many events are kept while the broker is unreachable.
	Buffer int
}

// Health configures the health report.
type Health struct {
	Exchange string
	Interval time.Duration
	// DegradedUtilization is the share of a bulkhead's capacity in use
	// above which the relay reports itself degraded, in (0, 1].
	DegradedUtilization float64
}
