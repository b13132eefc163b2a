package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/health"
	"github.com/vsm-relay/relay/internal/promreg"
)

// The kinds of message the hub carries; each is the SSE event name.
const (
	KindEvent  = "event"  // an algedonic event, as published
	KindHealth = "health" // a health report, as GET /health answers it
	KindStats  = "stats"  // queue statistics with rates, see StatsMessage
)

// QueueStats is one queue as the relay counts it. The counters only grow;
// the hub turns them into rates.
type QueueStats struct {
	Queue    string `json:"queue"`
	InFlight int    `json:"in_flight"`
	// Paused is an operator's pause; Held names what else holds the
	// queue's intake ("breaker", "broker"), empty when nothing does.
	Paused       bool   `json:"paused"`
	Held         string `json:"held,omitempty"`
	Replied      uint64 `json:"replied"`
	Redelivered  uint64 `json:"redelivered"`
	DeadLettered uint64 `json:"dead_lettered"`
	Requeued     uint64 `json:"requeued"`
	Published    uint64 `json:"published"`
}

// Rates are a queue's outcomes per second over the last poll interval.
type Rates struct {
	Replied      float64 `json:"replied"`
	Redelivered  float64 `json:"redelivered"`
	DeadLettered float64 `json:"dead_lettered"`
	Requeued     float64 `json:"requeued"`
	Published    float64 `json:"published"`
}

// QueueRates is one queue in a StatsMessage.
type QueueRates struct {
	QueueStats
	Rates Rates `json:"rates"`
}

// StatsMessage is the payload of a "stats" message.
type StatsMessage struct {
	At     string       `json:"at"`
	Queues []QueueRates `json:"queues"`
}

// Options configure a Hub. Every field has a usable zero value.
type Options struct {
	// Queues, when set, is polled every Interval and its answer
	// published as a "stats" message. It must be quick and safe for
	// concurrent use.
	Queues func() []QueueStats
	// Health, when set, is polled every Interval and its report
	// published as a "health" message, so that the page follows the
	// breakers and pools more closely than the health interval. It must
	// be quick and should have no side effects.
	Health func() health.Report
	// Interval between polls. Zero means one second.
	Interval time.Duration
	// History is how many of the latest events a new subscriber is sent
	// at once. Zero means 50.
	History int
	// Buffer is how many messages wait for one slow subscriber before
	// the oldest are dropped. Zero means 256.
	Buffer int
	// Heartbeat is the interval of the comments that keep an idle stream
	// open through proxies. Zero means 15 seconds.
	Heartbeat time.Duration
	// Logger records failures. Nil discards them.
	Logger *slog.Logger
	// Registerer takes relay_dashboard_streams (open /events streams) and
	// relay_dashboard_dropped_total (messages slow streams missed). Nil
	// registers nothing.
	Registerer prometheus.Registerer
}

// Validate reports settings that cannot work.
func (o Options) Validate() error {
	var errs []error
	if o.Interval < 0 {
		errs = append(errs, errors.New("dashboard: Interval below zero"))
	}
	if o.History < 0 {
		errs = append(errs, errors.New("dashboard: History below zero"))
	}
	if o.Buffer < 0 {
		errs = append(errs, errors.New("dashboard: Buffer below zero"))
	}
	if o.Heartbeat < 0 {
		errs = append(errs, errors.New("dashboard: Heartbeat below zero"))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	if o.History == 0 {
		o.History = 50
	}
	if o.Buffer == 0 {
		o.Buffer = 256
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// message is one SSE message.
type message struct {
	id   uint64
	kind string
	data []byte
}

// subscriber is one open stream.
type subscriber struct {
	ch      chan message
	dropped atomic.Uint64
}

// Hub fans messages out to the open /events streams. A slow stream never
// holds up Publish: when its buffer is full its oldest message is dropped
// and counted. A Hub is safe for concurrent use.
type Hub struct {
	opt Options

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	seq     uint64
	health  *message  // latest health report
	stats   *message  // latest stats
	history []message // latest events, oldest first, at most opt.History
	closed  bool

	dropped atomic.Uint64
	done    chan struct{}
	wg      sync.WaitGroup // the poller and every open stream
}

// NewHub returns a running hub; Close stops it.
func NewHub(o Options) (*Hub, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	h := &Hub{opt: o.withDefaults(), subs: make(map[*subscriber]struct{}), done: make(chan struct{})}
	if o.Registerer != nil {
		streams := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "relay", Subsystem: "dashboard", Name: "streams",
			Help: "Open GET /events streams of the live page.",
		}, func() float64 { return float64(h.Subscribers()) })
		dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "relay", Subsystem: "dashboard", Name: "dropped_total",
			Help: "Messages of the live page's event stream dropped because a browser read too slowly.",
		}, func() float64 { return float64(h.Dropped()) })
		if _, err := promreg.RegisterAll(o.Registerer, streams, dropped); err != nil {
			return nil, fmt.Errorf("dashboard: registering metrics: %w", err)
		}
	}
	if h.opt.Queues != nil || h.opt.Health != nil {
		h.wg.Add(1)
		go h.poll()
	}
	return h, nil
}

// Close ends every stream and the polling, and waits for them. Publish
// after Close does nothing.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.done)
	h.mu.Unlock()
	h.wg.Wait()
}

// Dropped is how many messages slow subscribers have missed in all.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Subscribers is how many streams are open.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Publish sends payload, one JSON document, to every open stream as a
// message of the given kind. The hub keeps the payload: the caller must
// not change it afterwards. The latest "health" and "stats" and the latest
// "event" messages are kept for streams that open later. A kind that
// could not be an SSE event name (empty, or with a line break) is
// dropped.
func (h *Hub) Publish(kind string, payload []byte) {
	if kind == "" || strings.ContainsAny(kind, "\r\n:") {
		h.opt.Logger.Warn("dashboard: message of an unusable kind dropped", slog.String("kind", kind))
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.seq++
	m := message{id: h.seq, kind: kind, data: payload}
	switch kind {
	case KindHealth:
		h.health = &m
	case KindStats:
		h.stats = &m
	case KindEvent:
		if len(h.history) == h.opt.History {
			copy(h.history, h.history[1:])
			h.history = h.history[:len(h.history)-1]
		}
		h.history = append(h.history, m)
	}
	for s := range h.subs {
		h.deliver(s, m)
	}
}

// deliver hands m to s without waiting, dropping s's oldest message when
// its buffer is full. Only Publish sends, under h.mu, so after one
// receive there is room.
func (h *Hub) deliver(s *subscriber, m message) {
	select {
	case s.ch <- m:
		return
	default:
	}
	select {
	case <-s.ch:
	default:
	}
	s.dropped.Add(1)
	h.dropped.Add(1)
	select {
	case s.ch <- m:
	default:
	}
}

// PublishEvent publishes an algedonic event; it fits
// (*algedonic.Emitter).Subscribe.
func (h *Hub) PublishEvent(e algedonic.Event) {
	b, err := json.Marshal(e)
	if err != nil {
		h.opt.Logger.Error("dashboard: encoding an event", slog.String("error", err.Error()))
		return
	}
	h.Publish(KindEvent, b)
}

// PublishHealth publishes a health report.
func (h *Hub) PublishHealth(r health.Report) {
	b, err := json.Marshal(r)
	if err != nil {
		h.opt.Logger.Error("dashboard: encoding a health report", slog.String("error", err.Error()))
		return
	}
	h.Publish(KindHealth, b)
}

// subscribe opens a stream: it returns the messages a new page needs at
// once (the latest health report and stats, then the latest events,
// oldest first) and the subscriber that receives everything after them.
// It returns nil once the hub is closed.
func (h *Hub) subscribe() (*subscriber, []message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil
	}
	var first []message
	if h.health != nil {
		first = append(first, *h.health)
	}
	if h.stats != nil {
		first = append(first, *h.stats)
	}
	first = append(first, h.history...)
	s := &subscriber{ch: make(chan message, h.opt.Buffer)}
	h.subs[s] = struct{}{}
	h.wg.Add(1)
	return s, first
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	h.wg.Done()
}

// poll publishes the sources every interval until Close.
func (h *Hub) poll() {
	defer h.wg.Done()
	t := time.NewTicker(h.opt.Interval)
	defer t.Stop()
	var prev map[string]QueueStats
	var prevAt time.Time
	for {
		now := time.Now()
		if h.opt.Health != nil {
			h.PublishHealth(h.opt.Health())
		}
		if h.opt.Queues != nil {
			qs := h.opt.Queues()
			msg := rates(qs, prev, now.Sub(prevAt), now)
			if b, err := json.Marshal(msg); err == nil {
				h.Publish(KindStats, b)
			}
			prev = make(map[string]QueueStats, len(qs))
			for _, q := range qs {
				prev[q.Queue] = q
			}
			prevAt = now
		}
		select {
		case <-h.done:
			return
		case <-t.C:
		}
	}
}

// rates turns two polls of the counters into outcomes per second. A queue
// seen for the first time, or whose counters went back (it was made
// anew), has rates of zero.
func rates(qs []QueueStats, prev map[string]QueueStats, elapsed time.Duration, now time.Time) StatsMessage {
	out := StatsMessage{At: algedonic.FormatTime(now), Queues: make([]QueueRates, 0, len(qs))}
	secs := elapsed.Seconds()
	for _, q := range qs {
		r := QueueRates{QueueStats: q}
		if p, ok := prev[q.Queue]; ok && secs > 0 {
			per := func(cur, old uint64) float64 {
				if cur < old {
					return 0
				}
				return float64(cur-old) / secs
			}
			r.Rates = Rates{
				Replied:      per(q.Replied, p.Replied),
				Redelivered:  per(q.Redelivered, p.Redelivered),
				DeadLettered: per(q.DeadLettered, p.DeadLettered),
				Requeued:     per(q.Requeued, p.Requeued),
				Published:    per(q.Published, p.Published),
			}
		}
		out.Queues = append(out.Queues, r)
	}
	return out
}
