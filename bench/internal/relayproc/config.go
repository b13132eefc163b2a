package relayproc

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is what a generated configuration varies. Empty WorkQueue or
// OutboundQueue leaves that path out.
type Config struct {
	Instance string
	URL      string
	// Listen is http.listen. Empty: 127.0.0.1:0 (a free port).
	Listen string
	// Prefetch is amqp.prefetch.
	Prefetch int
	// QueueType is amqp.queue_type, the type of every queue the relay
	// declares (classic or quorum). Empty leaves the key out: classic.
	QueueType string

	WorkQueue  string
	TargetURL  string
	Redelivery []time.Duration
	// Concurrency is the target's tasks at once per queue; Bulkhead the
	// size of the target's bulkhead (no overflow).
	Concurrency, Bulkhead int

	OutboundQueue    string
	OutboundExchange string
	OutboundPrefetch int
	OutboundBulkhead int

	PainExchange, PleasureExchange, HealthExchange string
	// HealthInterval is health.interval. Zero: 15s, the default.
	HealthInterval time.Duration
}

// Names in a generated configuration: the target, the breaker and
// bulkhead that guard it, and those that guard the outbound queue.
const (
	TargetName = "bench"
	HTTPGuard  = "bench_http"
	AMQPGuard  = "bench_amqp"
)

// YAML renders c as a relay configuration file. Every section that the
// default configuration fills is given in full, so nothing of the
// defaults' named entries (and their downstream URLs) leaks in.
func (c Config) YAML() []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	listen := c.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	interval := c.HealthInterval
	if interval <= 0 {
		interval = 15 * time.Second
	}
	w("instance: %s", q(c.Instance))
	w("shutdown_timeout: 10s")
	if c.QueueType == "" {
		w("amqp: {url: %s, prefetch: %d}", q(c.URL), max(c.Prefetch, 1))
	} else {
		w("amqp: {url: %s, prefetch: %d, queue_type: %s}", q(c.URL), max(c.Prefetch, 1), q(c.QueueType))
	}
	w("http: {listen: %s}", q(listen))
	w("breakers:")
	w("  %s: {}", HTTPGuard)
	w("  %s: {}", AMQPGuard)
	w("bulkheads:")
	w("  %s: {size: %d, overflow: 0, timeout: 5s}", HTTPGuard, max(c.Bulkhead, 1))
	w("  %s: {size: %d, overflow: 0, timeout: 5s}", AMQPGuard, max(c.OutboundBulkhead, 1))
	w("backoff:")
	w("  %s: {}", TargetName)
	w("targets:")
	target := c.TargetURL
	if target == "" {
		target = "http://127.0.0.1:1/"
	}
	w("  %s: {url: %s, breaker: %s, bulkhead: %s, backoff: %s, concurrency: %d}",
		TargetName, q(target), HTTPGuard, HTTPGuard, TargetName, max(c.Concurrency, 1))
	if c.WorkQueue == "" {
		w("work: []")
	} else {
		steps := make([]string, len(c.Redelivery))
		for i, d := range c.Redelivery {
			steps[i] = q(d.String())
		}
		w("work:")
		w("  - {queue: %s, target: %s, redelivery: [%s]}", q(c.WorkQueue), TargetName, strings.Join(steps, ", "))
	}
	if c.OutboundQueue == "" {
		w("outbound: []")
	} else {
		w("outbound:")
		w("  - {queue: %s, breaker: %s, bulkhead: %s, exchanges: [%s], prefetch: %d}",
			q(c.OutboundQueue), AMQPGuard, AMQPGuard, q(c.OutboundExchange), max(c.OutboundPrefetch, 1))
	}
	w("algedonic: {pain_exchange: %s, pleasure_exchange: %s}", q(c.PainExchange), q(c.PleasureExchange))
	w("health: {exchange: %s, interval: %s}", q(c.HealthExchange), q(interval.String()))
	return []byte(b.String())
}

// q quotes s as a YAML double-quoted scalar (a JSON string is one).
func q(s string) string { return strconv.Quote(s) }
