package health

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/vsm-relay/relay/algedonic"
)

// Status is the overall health: healthy, degraded or unhealthy.
type Status string

// The statuses, from best to worst.
const (
	Healthy   Status = "healthy"
	Degraded  Status = "degraded"
	Unhealthy Status = "unhealthy"
)

// Level is the value of the relay_health_status gauge: 0 healthy, 1
// degraded, 2 unhealthy (and 2 for anything unknown).
func (s Status) Level() int {
	switch s {
	case Healthy:
		return 0
	case Degraded:
		return 1
	}
	return 2
}

// Report is what GET /health answers and what is published on the health
// exchange.
type Report struct {
	Overall         Status                    `json:"overall"`
	Instance        string                    `json:"instance"`
	At              time.Time                 `json:"at"` // written like event times: "2026-11-29T14:00:00.123Z"
	AMQP            AMQPStatus                `json:"amqp"`
	CircuitBreakers map[string]BreakerStatus  `json:"circuit_breakers"`
	Bulkheads       map[string]BulkheadStatus `json:"bulkheads"`
	// Reasons say which rules made the status what it is, the unhealthy
	// ones first; empty when healthy.
	Reasons []string `json:"reasons,omitempty"`
}

// AMQPStatus is the state of the relay's broker connections.
type AMQPStatus struct {
	Connected bool `json:"connected"`
	Blocked   bool `json:"blocked"` // the broker blocks publishing (resource alarm)
	// Node is the broker node (host:port, no credentials) the relay's own
	// connections are on: one node, or the distinct nodes in order joined
	// by "," when they are on different nodes of a cluster (see
	// NodesOf); empty while none is up.
	Node string `json:"node,omitempty"`
	// Connections holds every broker connection by name ("consume",
	// "publish", an outbound destination's) with the node it is on.
	Connections map[string]ConnStatus `json:"connections,omitempty"`
}

// ConnStatus is one broker connection in an AMQPStatus.
type ConnStatus struct {
	Connected bool   `json:"connected"`
	Node      string `json:"node,omitempty"` // host:port; empty while down
	Blocked   bool   `json:"blocked,omitempty"`
}

// NodesOf returns the nodes of the named connections, for
// AMQPStatus.Node: each distinct node once, in the order of names, joined
// by ","; connections that are down or missing add nothing.
func NodesOf(conns map[string]ConnStatus, names ...string) string {
	var nodes []string
	for _, name := range names {
		n := conns[name].Node
		if n != "" && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	return strings.Join(nodes, ",")
}

// BreakerStatus is one circuit breaker in a Report.
type BreakerStatus struct {
	State        string     `json:"state"` // closed, half_open or open
	FailureCount int        `json:"failure_count"`
	SuccessCount int        `json:"success_count"`
	LastFailure  string     `json:"last_failure,omitempty"`
	OpenedAt     *time.Time `json:"opened_at,omitempty"` // set while open or half_open
	// Shared: the breaker acts as one with the breakers of its name in
	// the relay's peers (share: true, and the fleet running).
	Shared bool `json:"shared,omitempty"`
}

// BulkheadStatus is one pool in a Report.
type BulkheadStatus struct {
	Available int    `json:"available"`
	Busy      int    `json:"busy"`
	Waiting   int    `json:"waiting"`
	Capacity  int    `json:"capacity"`
	Rejected  uint64 `json:"rejected"` // checkouts turned away since start, for every reason
}

// MarshalJSON writes "at" in algedonic.TimeLayout and the two maps as
// objects even when empty.
func (r Report) MarshalJSON() ([]byte, error) {
	// The fields are spelled out, not embedded, to keep the contract's
	// order with "at" third.
	w := struct {
		Overall         Status                    `json:"overall"`
		Instance        string                    `json:"instance"`
		At              string                    `json:"at"`
		AMQP            AMQPStatus                `json:"amqp"`
		CircuitBreakers map[string]BreakerStatus  `json:"circuit_breakers"`
		Bulkheads       map[string]BulkheadStatus `json:"bulkheads"`
		Reasons         []string                  `json:"reasons,omitempty"`
	}{r.Overall, r.Instance, algedonic.FormatTime(r.At), r.AMQP, r.CircuitBreakers, r.Bulkheads, r.Reasons}
	if w.CircuitBreakers == nil {
		w.CircuitBreakers = map[string]BreakerStatus{}
	}
	if w.Bulkheads == nil {
		w.Bulkheads = map[string]BulkheadStatus{}
	}
	return json.Marshal(w)
}

// MarshalJSON writes "opened_at" in algedonic.TimeLayout.
func (b BreakerStatus) MarshalJSON() ([]byte, error) {
	type plain BreakerStatus
	w := struct {
		plain
		OpenedAt *string `json:"opened_at,omitempty"`
	}{plain: plain(b)}
	if b.OpenedAt != nil {
		s := algedonic.FormatTime(*b.OpenedAt)
		w.OpenedAt = &s
	}
	return json.Marshal(w)
}
