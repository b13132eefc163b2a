package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/admin"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/dashboard"
	"github.com/vsm-relay/relay/dispatch"
	"github.com/vsm-relay/relay/fleet"
	"github.com/vsm-relay/relay/health"
	"github.com/vsm-relay/relay/intake"
	"github.com/vsm-relay/relay/metrics"
	"github.com/vsm-relay/relay/retrybudget"
)

// Options are what a Relay is handed besides its configuration.
type Options struct {
	// Logger receives everything the relay logs. Nil: discarded.
	Logger *slog.Logger
	// Registry receives the relay's metrics and serves /metrics. Nil: a
	// fresh registry with the Go and process collectors.
	Registry *prometheus.Registry
	// Env looks up ${VAR} references in target headers. Nil: the
	// process environment.
	Env func(string) (string, bool)
	// HTTPClient makes downstream requests. Nil: a client whose idle
	// connection pool is sized to the bulkheads.
	HTTPClient *http.Client
	// Version is sent in the User-Agent of downstream requests.
	Version string
	// Source is where Reload reads the configuration again. Nil: reload
	// is refused.
	Source ConfigSource
}

// ConfigSource loads the configuration (a config.Source).
type ConfigSource interface {
	Load() (*config.Config, error)
}

// Relay consumes work and outbound queues and runs every downstream call
// inside its bulkhead and breaker. Make one with New and start it with Run;
// a Relay runs once.
type Relay struct {
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	env      func(string) (string, bool)
	client   *http.Client
	ua       string
	source   ConfigSource

	// mu guards the configuration and what is built from it, which a
	// reload changes: the maps and the queues. A delivery's path never
	// takes it: each queue holds its own pointers.
	mu        sync.RWMutex
	cfg       *config.Config
	breakers  map[string]*breaker.Breaker
	bulkheads map[string]*bulkhead.Bulkhead
	targets   map[string]*dispatch.Target
	queues    []*queue // every consumed queue, in configuration order
	// paused names the queues an operator paused; a queue a reload starts
	// again starts paused when it is here.
	paused map[string]bool
	// followers drive the gates of the queues each breaker guards; conns
	// hold them while a connection they publish on is down or blocked.
	followers map[string]*intake.Breaker
	conns     *intake.Conns
	tlsConf   *tls.Config // for every amqps:// connection

	consumeConn *broker.Conn
	publishConn *broker.Conn
	pub         *broker.Publisher // replies, dead letters, redeliveries
	eventPub    *broker.Publisher // signals and health reports

	emitter *algedonic.Emitter
	monitor *health.Monitor
	hub     *dashboard.Hub
	admin   atomic.Pointer[admin.Handler] // replaced when a reload changes the token

	listener net.Listener
	server   *http.Server

	// stop is the one stop signal: it ends when shutdown begins. Nothing
	// new starts after it (no intake, no attempt, no backoff wait).
	stop       context.Context
	stopCancel context.CancelFunc
	// inflight bounds in-flight calls and publishes; it ends when
	// shutdown_timeout has passed, and in-flight work is given up.
	inflight       context.Context
	inflightCancel context.CancelFunc
	// failed receives the error of a part that failed for good (the HTTP
	// server), which ends Run.
	failed chan error
	// retiring counts queues a reload removed that are still draining.
	retiring sync.WaitGroup
	reloadMu sync.Mutex
	// backlogStop stops the running relay_queue_backlog poller, which a
	// reload that starts or retires queues replaces; backlogDone is set
	// once the relay stopped it for good.
	backlogMu   sync.Mutex
	backlogStop func()
	backlogDone bool
	// The fleet: its transport, read by the consuming connection's
	// topology on every reconnect, and its coordinator, read by health
	// reports; both nil until a breaker is shared. fleetMu orders the
	// changes of what is shared.
	fleetT  atomic.Pointer[fleet.AMQP]
	coord   atomic.Pointer[fleet.Coordinator]
	fleetMu sync.Mutex

	cleanup   cleanupStack
	consuming atomic.Bool
}

// New builds a relay from a validated configuration. It makes no
// connection: Run does.
func New(cfg *config.Config, opts Options) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		if err := metrics.RegisterRuntime(reg); err != nil {
			return nil, err
		}
	}
	m, err := metrics.New(reg)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:       cfg,
		log:       log,
		registry:  reg,
		metrics:   m,
		env:       opts.Env,
		client:    opts.HTTPClient,
		ua:        "relay",
		source:    opts.Source,
		breakers:  map[string]*breaker.Breaker{},
		bulkheads: map[string]*bulkhead.Bulkhead{},
		followers: map[string]*intake.Breaker{},
		paused:    map[string]bool{},
		conns:     intake.NewConns(),
		failed:    make(chan error, 1),
	}
	if r.env == nil {
		r.env = os.LookupEnv
	}
	if r.client == nil {
		r.client = newHTTPClient(cfg)
	}
	if opts.Version != "" {
		r.ua += "/" + opts.Version
	}
	r.stop, r.stopCancel = context.WithCancel(context.Background())
	r.inflight, r.inflightCancel = context.WithCancel(context.Background())

	for _, name := range slices.Sorted(maps.Keys(cfg.Breakers)) {
		if err := r.addBreaker(name, cfg.Breakers[name]); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Bulkheads)) {
		b, err := bulkhead.New(name, cfg.Bulkheads[name])
		if err != nil {
			return nil, fmt.Errorf("bulkheads.%s: %w", name, err)
		}
		r.bulkheads[name] = b
	}
	// The emitter exists from the start so that signals raised while the
	// relay connects are kept; it publishes only once Run starts it.
	ac := cfg.Algedonic
	ac.Instance = cfg.Instance
	r.emitter, err = algedonic.NewEmitter(ac, eventPublisher{r}, algedonic.WithLogger(log), algedonic.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	if err := reg.Register(metrics.NewBreakerCollector(r.breakerSnapshots)); err != nil {
		return nil, err
	}
	if err := reg.Register(metrics.NewBulkheadCollector(r.bulkheadStats)); err != nil {
		return nil, err
	}
	if r.targets, err = r.buildTargets(cfg, nil); err != nil {
		return nil, err
	}
	for _, w := range cfg.Work {
		r.queues = append(r.queues, r.newWorkQueue(cfg, w))
	}
	for _, o := range cfg.Outbound {
		r.queues = append(r.queues, r.newOutboundQueue(o))
	}
	return r, nil
}

// addBreaker makes a breaker, and a follower that drives the intake of the
// queues it guards.
func (r *Relay) addBreaker(name string, s breaker.Settings) error {
	b, err := breaker.New(name, s, breaker.WithLogger(r.log))
	if err != nil {
		return fmt.Errorf("breakers.%s: %w", name, err)
	}
	b.OnStateChange(r.breakerChanged)
	r.breakers[name] = b
	r.followers[name] = intake.FollowBreaker(b)
	return nil
}

// guard is the protections of a downstream that uses breaker b and
// bulkhead p.
func (r *Relay) guard(b, p string) dispatch.Guard {
	return dispatch.Guard{
		Breaker:  r.breakers[b],
		Bulkhead: r.bulkheads[p],
		PoolWait: r.metrics.BulkheadWait(p),
		OnReject: r.bulkheadRejected,
	}
}

// buildTargets makes cfg's targets, with the breakers and bulkheads of
// r. A target of old whose retry budget settings stay keeps its budget.
func (r *Relay) buildTargets(cfg *config.Config, old map[string]*dispatch.Target) (map[string]*dispatch.Target, error) {
	out := make(map[string]*dispatch.Target, len(cfg.Targets))
	for _, name := range slices.Sorted(maps.Keys(cfg.Targets)) {
		tc := cfg.Targets[name]
		hdrs, err := tc.ExpandedHeaders(r.env)
		if err != nil {
			return nil, err
		}
		h := make(http.Header, len(hdrs))
		for k, v := range hdrs {
			h.Set(k, v)
		}
		budget := old[name].Budget()
		if budget == nil || budget.Settings() != tc.RetryBudget.WithDefaults() {
			if budget, err = retrybudget.New(tc.RetryBudget); err != nil {
				return nil, fmt.Errorf("targets.%s.retry_budget: %w", name, err)
			}
		}
		out[name] = dispatch.NewTarget(dispatch.TargetSpec{
			Name: name, URL: tc.URL, Method: tc.Method, Timeout: tc.Timeout, Headers: h,
			MaxRequestBytes: tc.MaxRequestBytes, MaxResponseBytes: tc.MaxResponseBytes,
			Client: r.client, Guard: r.guard(tc.Breaker, tc.Bulkhead),
			Backoff: cfg.Backoff[tc.Backoff], Metrics: r.metrics.Target(name), UserAgent: r.ua,
			Budget: budget, BudgetExhausted: r.budgetExhausted,
		})
	}
	return out, nil
}

func newHTTPClient(cfg *config.Config) *http.Client {
	idle := 0
	for _, b := range cfg.Bulkheads {
		idle += b.Size + b.Overflow
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(100, idle)
	tr.MaxIdleConnsPerHost = max(16, idle)
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport: tr,
		// A task never chooses a URL; neither does a redirect.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Registry returns the registry the relay's metrics live in.
func (r *Relay) Registry() *prometheus.Registry { return r.registry }

// Breaker returns the named breaker, or nil.
func (r *Relay) Breaker(name string) *breaker.Breaker { return r.breaker(name) }

func (r *Relay) breaker(name string) *breaker.Breaker {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.breakers[name]
}

func (r *Relay) queue(name string) *queue {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, q := range r.queues {
		if q.name == name {
			return q
		}
	}
	return nil
}

func (r *Relay) config() *config.Config {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cfg
}

// Addr returns the address the HTTP endpoints listen on, once Run has
// started listening.
func (r *Relay) Addr() string {
	if r.listener == nil {
		return ""
	}
	return r.listener.Addr().String()
}

// Ready reports whether the relay is connected to the broker, not
// blocked, and consuming.
func (r *Relay) Ready() bool {
	if !r.consuming.Load() || r.stop.Err() != nil {
		return false
	}
	return r.consumeConn.Connected() && r.publishConn.Connected() && !r.publishConn.Blocked()
}

// cleanupStack holds what to undo, in the order it was done; drain runs it
// last-in-first-out, once.
type cleanupStack struct {
	mu    sync.Mutex
	funcs []func()
}

func (s *cleanupStack) push(f func()) {
	s.mu.Lock()
	s.funcs = append(s.funcs, f)
	s.mu.Unlock()
}

func (s *cleanupStack) drain() {
	s.mu.Lock()
	funcs := s.funcs
	s.funcs = nil
	s.mu.Unlock()
	for i := len(funcs) - 1; i >= 0; i-- {
		funcs[i]()
	}
}
