package relay

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vsm-relay/relay/admin"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/dashboard"
	"github.com/vsm-relay/relay/health"
	"github.com/vsm-relay/relay/intake"
	"github.com/vsm-relay/relay/metrics"
)

// handler serves /health, /healthz, /readyz and /metrics, the live page at
// / with its stream at /events, and the admin endpoints under /admin/.
// Each read-only path answers GET and HEAD; any other method gets 405
// with an Allow header.
func (r *Relay) handler(hub *dashboard.Hub) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, req *http.Request) {
		// Run makes the monitor before it stores consuming; loading
		// consuming first is what makes the monitor safe to read here,
		// where a check of the field itself would race with Run.
		if !r.consuming.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		r.monitor.Handler().ServeHTTP(w, req)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !r.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", metrics.Handler(r.registry))
	hub.Register(mux)
	mux.Handle("/admin/", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.admin.Load().ServeHTTP(w, req)
	}))
	return mux
}

// newAdmin makes the admin endpoints' handler for the configuration's
// token (none: every /admin/ path answers 404).
func (r *Relay) newAdmin() (*admin.Handler, error) {
	return admin.New(admin.Options{Token: r.config().HTTP.AdminToken, Controls: controls{r}, Logger: r.log})
}

// newHub makes the live page's hub, fed by every algedonic event and
// polled for health and queue figures.
func (r *Relay) newHub() (*dashboard.Hub, error) {
	hub, err := dashboard.NewHub(dashboard.Options{
		Queues: r.queueStats, Health: r.peekHealth, Logger: r.log, Registerer: r.registry,
	})
	if err != nil {
		return nil, err
	}
	r.emitter.Subscribe(hub.PublishEvent)
	return hub, nil
}

// peekHealth is a fresh health report with no side effects, once the
// relay runs.
func (r *Relay) peekHealth() health.Report {
	if !r.consuming.Load() {
		return health.Report{Overall: health.Status("starting"), Instance: r.config().Instance}
	}
	return r.monitor.Peek()
}

// queueStats are the live page's queue figures.
func (r *Relay) queueStats() []dashboard.QueueStats {
	type started struct {
		*queue
		consumer *broker.Consumer
		gate     *intake.Gate
	}
	r.mu.RLock()
	queues := make([]started, len(r.queues))
	for i, q := range r.queues {
		queues[i] = started{q, q.consumer, q.gate}
	}
	r.mu.RUnlock()
	out := make([]dashboard.QueueStats, 0, len(queues))
	for _, q := range queues {
		s := dashboard.QueueStats{Queue: q.name}
		if q.consumer != nil {
			s.InFlight = q.consumer.InHand()
			holds := q.gate.Holds()
			s.Paused = holds&intake.HoldOperator != 0
			switch {
			case holds&intake.HoldBreaker != 0:
				s.Held = "breaker"
			case holds&^intake.HoldOperator != 0:
				s.Held = "broker"
			}
		}
		if q.work != nil {
			m := q.wm
			s.Replied = count(m.Replied) + count(m.Completed)
			s.Redelivered, s.DeadLettered, s.Requeued = count(m.Redelivered), count(m.DeadLettered), count(m.Requeued)
		} else {
			m := q.om
			s.Published = count(m.Published)
			s.DeadLettered, s.Requeued = count(m.DeadLettered)+count(m.Returned), count(m.Requeued)
		}
		out = append(out, s)
	}
	return out
}

// count reads a counter's value.
func count(c prometheus.Counter) uint64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}
