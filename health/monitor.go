package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/internal/promreg"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/clock"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// Config configures a Monitor. The zero value of each field means the
// default noted beside it, except Instance, which is required. It is also
// the `health` section of the relay's configuration file, which decodes
// into it key by key (exchange, interval, degraded_utilization).
type Config struct {
	// Instance names the relay in reports and in the routing key
	// "health.<instance>". Required. It is not a key of the file's health
	// section: the relay's configuration fills it from the top-level
	// instance.
	Instance string `config:"-"`
	// Exchange receives the periodic reports. Zero: "vsm.health".
	Exchange string
	// Interval is the period of Run's checks and reports. Zero: 15s.
	Interval time.Duration
	// DegradedUtilization is the share of a pool's capacity in use at
	// which the relay counts as degraded, in (0, 1]. Zero: 0.8.
	DegradedUtilization float64
}

// Defaults of the zero-valued fields.
const (
	DefaultExchange            = "vsm.health"
	DefaultInterval            = 15 * time.Second
	DefaultDegradedUtilization = 0.8
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Exchange == "" {
		c.Exchange = DefaultExchange
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.DegradedUtilization == 0 {
		c.DegradedUtilization = DefaultDegradedUtilization
	}
	return c
}

// Validate reports every bad value keyed by its configuration name
// (instance, interval, degraded_utilization).
func (c Config) Validate() error {
	var l fielderr.List
	if c.Instance == "" {
		l.Addf("instance", "must not be empty")
	}
	if c.Interval < 0 {
		l.Addf("interval", "must not be negative, got %s", c.Interval)
	}
	if u := c.DegradedUtilization; u < 0 || u > 1 || math.IsNaN(u) {
		l.Addf("degraded_utilization", "must be a fraction between 0 and 1, got %v", u)
	}
	return l.Err()
}

// Sources are where a Monitor reads the state it judges. Breakers and
// Bulkheads may be nil (none); AMQP is required. They are called without
// any of the monitor's locks held.
type Sources struct {
	Breakers  func() []breaker.Snapshot
	Bulkheads func() []bulkhead.Stats
	AMQP      func() AMQPStatus
	// TargetBreakers are the breakers that guard targets: the relay is
	// unhealthy when every one of them is open.
	TargetBreakers []string
	// Shared names the breakers the relay's fleet shares now; nil: none.
	Shared func() []string
}

// ErrNoAMQPSource is returned by NewMonitor when Sources.AMQP is nil.
var ErrNoAMQPSource = errors.New("health: Sources.AMQP is required")

type options struct {
	clock  clock.Clock
	logger *slog.Logger
	reg    prometheus.Registerer
}

// Option tunes a Monitor.
type Option func(*options)

// WithClock sets the time source of report times. Default: clock.Real.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger for status changes and publish failures.
// Default: a logger that discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer sets where the monitor's metrics are registered.
// Default: nowhere.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// Monitor judges the relay's health, raises an algedonic event when the
// overall status changes, serves /health and publishes reports. It is
// safe for concurrent use.
type Monitor struct {
	instance string // Config.Instance, fixed at NewMonitor
	src      Sources
	emit     func(algedonic.Event)
	pub      algedonic.Publisher
	clock    clock.Clock
	log      *slog.Logger
	key      string

	status   prometheus.Gauge
	failures prometheus.Counter
	running  atomic.Bool
	reconf   chan struct{} // a token when SetConfig changed the interval

	mu  sync.Mutex
	cfg Config // SetConfig replaces it
	// overall is the status of the latest evaluation; healthy before the
	// first, so that a relay starting in trouble reports it.
	overall Status
	// rejected is, per pool, its rejection counter at the previous Check.
	rejected map[string]uint64
}

// NewMonitor returns a Monitor. emit receives the status changes (nil:
// none are raised); pub publishes Run's reports (nil: Run only checks).
func NewMonitor(cfg Config, src Sources, emit func(algedonic.Event), pub algedonic.Publisher, opts ...Option) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src.AMQP == nil {
		return nil, ErrNoAMQPSource
	}
	o := options{clock: clock.Real}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clock == nil {
		o.clock = clock.Real
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{
		instance: cfg.Instance, cfg: cfg.WithDefaults(), src: src, emit: emit, pub: pub, clock: o.clock, log: o.logger,
		reconf: make(chan struct{}, 1),
		key:    "health." + algedonic.RoutingWord(cfg.Instance),
		status: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "relay", Subsystem: "health", Name: "status",
			Help: "Overall health: 0 healthy, 1 degraded, 2 unhealthy.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "relay", Subsystem: "health", Name: "publish_failures_total",
			Help: "Health reports that could not be published.",
		}),
		overall:  Healthy,
		rejected: map[string]uint64{},
	}
	if o.reg != nil {
		if _, err := promreg.RegisterAll(o.reg, m.status, m.failures); err != nil {
			return nil, fmt.Errorf("health: registering metrics: %w", err)
		}
	}
	return m, nil
}

// RoutingKey is the key Run publishes reports with: "health.<instance>",
// the instance made one routing word (see algedonic.RoutingWord).
func (m *Monitor) RoutingKey() string { return m.key }

// Check evaluates the health now and makes this the previous check that
// the next one counts pool rejections from. When the overall status
// changed since the latest evaluation it raises pain (degraded,
// unhealthy) or pleasure (healthy again) through emit, once per change.
func (m *Monitor) Check() Report { return m.check(true) }

// Peek evaluates the health now, as Check does, but changes nothing: the
// baseline of pool rejections stays where the last Check left it, and a
// status change it finds is neither raised, logged, nor recorded in the
// latest status or the status gauge. It is for pages that show the health
// live and must not disturb what Run and /health report.
func (m *Monitor) Peek() Report {
	r := m.observe(m.clock.Now())
	m.mu.Lock()
	status, reasons, _ := m.judgeLocked(&r, false)
	m.mu.Unlock()
	r.Overall, r.Reasons = status, reasons
	return r
}

// check evaluates; advance says whether it moves the rejection baseline.
// Reads of /health do not, so that a client polling them cannot hide a
// pool's rejections from the periodic check.
func (m *Monitor) check(advance bool) Report {
	now := m.clock.Now()
	r := m.observe(now)

	m.mu.Lock()
	status, reasons, share := m.judgeLocked(&r, advance)
	prev := m.overall
	m.overall = status
	m.mu.Unlock()

	r.Overall, r.Reasons = status, reasons
	m.status.Set(float64(status.Level()))
	if status != prev {
		m.changed(prev, status, reasons, share)
	}
	return r
}

// judgeLocked applies the rules to r, counting pool rejections from the
// baseline, which advance moves to r's counts. m.mu must be held.
func (m *Monitor) judgeLocked(r *Report, advance bool) (Status, []string, float64) {
	fresh := make(map[string]uint64, len(r.Bulkheads))
	for name, b := range r.Bulkheads {
		// A counter below the baseline was reset (a pool made anew):
		// everything it counted is new.
		if base := m.rejected[name]; b.Rejected >= base {
			fresh[name] = b.Rejected - base
		} else {
			fresh[name] = b.Rejected
		}
		if advance {
			m.rejected[name] = b.Rejected
		}
	}
	return evaluate(Inputs{
		AMQP: r.AMQP, Breakers: r.CircuitBreakers, Bulkheads: r.Bulkheads, NewRejections: fresh,
		TargetBreakers: m.src.TargetBreakers, DegradedUtilization: m.cfg.DegradedUtilization,
	})
}

func (m *Monitor) changed(from, to Status, reasons []string, share float64) {
	reason := strings.Join(reasons, "; ")
	level := slog.LevelWarn
	if to == Healthy {
		level, reason = slog.LevelInfo, "every check passes"
	}
	m.log.LogAttrs(context.Background(), level, "health changed",
		slog.String("from", string(from)), slog.String("to", string(to)), slog.String("reason", reason))
	if m.emit != nil {
		m.emit(algedonic.HealthChanged(string(from), string(to), reason, share))
	}
}

// observe reads the sources into a report without a status.
func (m *Monitor) observe(now time.Time) Report {
	r := Report{
		Instance:        m.instance,
		At:              now,
		AMQP:            m.src.AMQP(),
		CircuitBreakers: map[string]BreakerStatus{},
		Bulkheads:       map[string]BulkheadStatus{},
	}
	var shared []string
	if m.src.Shared != nil {
		shared = m.src.Shared()
	}
	if m.src.Breakers != nil {
		for _, s := range m.src.Breakers() {
			b := BreakerStatus{
				State: s.State.String(), FailureCount: s.FailureCount, SuccessCount: s.SuccessCount,
				LastFailure: s.LastFailure, Shared: slices.Contains(shared, s.Name),
			}
			if s.State != breaker.Closed && !s.OpenedAt.IsZero() {
				at := s.OpenedAt
				b.OpenedAt = &at
			}
			r.CircuitBreakers[s.Name] = b
		}
	}
	if m.src.Bulkheads != nil {
		for _, s := range m.src.Bulkheads() {
			r.Bulkheads[s.Name] = BulkheadStatus{
				Available: s.Available, Busy: s.Busy, Waiting: s.Waiting, Capacity: s.Capacity,
				Rejected: s.RejectedFull + s.RejectedTimeout + s.RejectedRateLimited,
			}
		}
	}
	return r
}

// ErrAlreadyRunning is returned by Run while another Run is in progress.
var ErrAlreadyRunning = errors.New("health: Run called while already running")

// Run checks at once and then every Interval, and publishes each report
// to the Exchange with RoutingKey. A failed publish is logged and counted,
// never fatal: the next report follows anyway. Each publish may take at
// most one Interval, so reports never pile up behind a stuck broker. Run
// returns nil once ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer m.running.Store(false)
	select {
	case <-m.reconf: // a change made before Run: the interval read next is already it
	default:
	}
	ticker := time.NewTicker(m.config().Interval)
	defer ticker.Stop()
	failing := false
	for {
		r := m.Check()
		if m.pub != nil {
			failing = m.publish(ctx, r, failing)
		}
		for due := false; !due; {
			select {
			case <-ctx.Done():
				return nil
			case <-m.reconf:
				ticker.Reset(m.config().Interval)
			case <-ticker.C:
				due = true
			}
		}
	}
}

// publish sends r and reports whether it failed; only the first of a run
// of failures is logged as a warning.
func (m *Monitor) publish(ctx context.Context, r Report, failing bool) bool {
	cfg := m.config()
	body, err := json.Marshal(r)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, cfg.Interval)
		err = m.pub.Publish(pctx, cfg.Exchange, m.key, body)
		cancel()
	}
	switch {
	case err == nil && failing:
		m.log.Info("health report published again")
	case err != nil && ctx.Err() == nil:
		m.failures.Inc()
		level := slog.LevelWarn
		if failing {
			level = slog.LevelDebug
		}
		m.log.LogAttrs(ctx, level, "health report not published",
			slog.String("error", err.Error()), slog.String("exchange", cfg.Exchange), slog.String("routing_key", m.key))
	}
	return err != nil
}

// SetConfig changes the monitor's configuration in place, as a
// configuration reload does. When c is invalid it returns Validate's
// error and changes nothing. An empty Instance stands for the current one;
// any other Instance is ignored, since the instance names this relay in
// every report and in the routing key, and cannot change while it runs.
//
// Exchange applies from the next report published and
// DegradedUtilization from the next evaluation. A changed Interval resets
// Run's ticker: the next check comes one new Interval after the change.
// The status and the rejection baseline are kept, so a reload alone
// raises no health event.
func (m *Monitor) SetConfig(c Config) error {
	c.Instance = m.instance
	if err := c.Validate(); err != nil {
		return err
	}
	c = c.WithDefaults()
	m.mu.Lock()
	changed := c.Interval != m.cfg.Interval
	m.cfg = c
	m.mu.Unlock()
	if changed {
		select {
		case m.reconf <- struct{}{}:
		default:
		}
	}
	return nil
}

// config returns the configuration in force, defaults applied.
func (m *Monitor) config() Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}
