package config

import (
	"strings"
	"time"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/health"
	"github.com/vsm-relay/relay/retrybudget"
)

// Config is the relay's effective configuration. It is what the file
// decodes into, key by key: a field's key is its name in snake case
// (FailureThreshold is failure_threshold), or its `config` tag; a field
// tagged `config:"-"` is no key. The sections the components take are the
// components' own types (breaker.Settings, bulkhead.Settings,
// backoff.Policy, retrybudget.Settings, algedonic.Config, health.Config),
// so no value changes meaning between the file and the component.
//
// Load returns it resolved: breakers and backoff policies have their
// `defaults` entry merged in; targets have their concurrency and retry
// budget filled in; work and outbound entries their prefetch, queue type
// and delivery limit; Algedonic.Instance and Health.Instance are Instance.
// A Config built by hand is checked with Validate.
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

	// Algedonic configures the pain and pleasure signals; a zero Coalesce
	// means never coalesce.
	Algedonic algedonic.Config
	// Health configures the health report.
	Health health.Config
}

// Queue types, the values of amqp.queue_type.
const (
	QueueClassic = "classic"
	QueueQuorum  = "quorum"
)

// AMQP is the broker connection.
type AMQP struct {
	// URL is one amqp:// or amqps:// URL, or a comma-separated list of the
	// URLs of one cluster's nodes, passwords included; URLs splits it. Log
	// it only through RedactURL.
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
	// QueueType is the type of the queues the relay declares (each queue,
	// its delay queues and its .dlq): QueueClassic or QueueQuorum. A work
	// or outbound entry may set its own.
	QueueType string
	// DeliveryLimit is how many times a task may be delivered without an
	// outcome before it is dead-lettered, at least 1. A work or outbound
	// entry may set its own.
	DeliveryLimit int
}

// URLs returns the node URLs of amqp.url, in order.
func (a AMQP) URLs() []string { return splitURLs(a.URL) }

// splitURLs splits a comma-separated list of URLs, trimming white space
// around each. "" is no URL.
func splitURLs(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
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
	// AdminToken enables the admin endpoints, which then require it as a
	// bearer token. Empty: the admin endpoints are off. A secret: Redacted
	// shows it as "***".
	AdminToken string
}

// Target is a downstream HTTP service.
type Target struct {
	// Name is the target's key under `targets`.
	Name    string `config:"-"`
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
	// RetryBudget bounds the target's in-process retries. A target that
	// does not mention it has the contract's budget (0.2 of the calls plus
	// 10 a second, over 10s); Load fills in every zero field.
	RetryBudget retrybudget.Settings
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
	// QueueType is this queue's type. Load sets amqp.queue_type when the
	// file leaves it empty.
	QueueType string
	// DeliveryLimit is this queue's delivery limit. Load sets
	// amqp.delivery_limit when the file leaves it zero.
	DeliveryLimit int
}

// Outbound is an outbound-publish queue the relay consumes.
type Outbound struct {
	Queue string
	// URL is the destination broker, one URL or a comma-separated list of
	// one cluster's nodes (see URLs); empty: the relay's own broker.
	URL      string
	Breaker  string
	Bulkhead string
	// Exchanges are the only exchanges a message may be sent to.
	Exchanges []string
	// Prefetch is this queue's basic.qos. Load sets amqp.prefetch when the
	// file leaves it zero.
	Prefetch int
	// QueueType is this queue's type. Load sets amqp.queue_type when the
	// file leaves it empty.
	QueueType string
	// DeliveryLimit is this queue's delivery limit. Load sets
	// amqp.delivery_limit when the file leaves it zero.
	DeliveryLimit int
}

// URLs returns the node URLs of the destination broker, in order; none
// when the destination is the relay's own broker.
func (o Outbound) URLs() []string { return splitURLs(o.URL) }
