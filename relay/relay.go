package relay

import (
	"context"
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
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/dispatch"
	"github.com/vsm-relay/relay/health"
	"github.com/vsm-relay/relay/intake"
	"github.com/vsm-relay/relay/metrics"
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
}

// Relay consumes work and outbound queues and runs every downstream call
// inside its bulkhead and breaker. Make one with New and start it with Run;
// a Relay runs once.
type Relay struct {
	cfg      *config.Config
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics.Metrics

	breakers  map[string]*breaker.Breaker
	bulkheads map[string]*bulkhead.Bulkhead
	targets   map[string]*dispatch.Target
	work      []*dispatch.Work
	outbound  []*outboundQueue
	queues    []*queue // every consumed queue, once Run has started them

	// followers drive the gates of the queues each breaker guards; conns
	// hold them while a connection they publish on is down or blocked.
	followers map[string]*intake.Breaker
	conns     *intake.Conns

	consumeConn *broker.Conn
	publishConn *broker.Conn
	pub         *broker.Publisher // replies, dead letters, redeliveries
	eventPub    *broker.Publisher // signals and health reports

	emitter *algedonic.Emitter
	monitor *health.Monitor

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

	cleanup   cleanupStack
	consuming atomic.Bool
}

// outboundQueue is an outbound-publish queue and the destination it
// publishes to.
type outboundQueue struct {
	*dispatch.Outbound
	cfg  config.Outbound
	dest *broker.Conn      // nil: the relay's own publish connection
	pub  *broker.Publisher // on dest, or on the relay's publish connection
}

// lazyPublisher publishes through the *broker.Publisher at p, which Run
// sets when it connects, before any delivery is taken.
type lazyPublisher struct{ p **broker.Publisher }

func (l lazyPublisher) Publish(ctx context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) (*broker.Confirmation, error) {
	return (*l.p).Publish(ctx, exchange, key, mandatory, msg)
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
		breakers:  map[string]*breaker.Breaker{},
		bulkheads: map[string]*bulkhead.Bulkhead{},
		targets:   map[string]*dispatch.Target{},
		followers: map[string]*intake.Breaker{},
		conns:     intake.NewConns(),
		failed:    make(chan error, 1),
	}
	r.stop, r.stopCancel = context.WithCancel(context.Background())
	r.inflight, r.inflightCancel = context.WithCancel(context.Background())

	if err := r.buildProtections(); err != nil {
		return nil, err
	}
	// The emitter exists from the start so that signals raised while the
	// relay connects are kept; it publishes only once Run starts it.
	a := cfg.Algedonic
	r.emitter, err = algedonic.NewEmitter(algedonic.Config{
		PainExchange: a.PainExchange, PleasureExchange: a.PleasureExchange,
		Coalesce: a.Coalesce, Buffer: a.Buffer, Instance: cfg.Instance,
	}, eventPublisher{r}, algedonic.WithLogger(log), algedonic.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	if err := reg.Register(metrics.NewBreakerCollector(r.breakerSnapshots)); err != nil {
		return nil, err
	}
	if err := reg.Register(metrics.NewBulkheadCollector(r.bulkheadStats)); err != nil {
		return nil, err
	}
	if err := r.buildTargets(opts); err != nil {
		return nil, err
	}
	r.buildQueues()
	return r, nil
}

// buildProtections makes the breakers and bulkheads, and a follower for
// every breaker, which drives the intake of the queues it guards.
func (r *Relay) buildProtections() error {
	for _, name := range slices.Sorted(maps.Keys(r.cfg.Breakers)) {
		b, err := breaker.New(name, r.cfg.Breakers[name], breaker.WithLogger(r.log))
		if err != nil {
			return fmt.Errorf("breakers.%s: %w", name, err)
		}
		b.OnStateChange(r.breakerChanged)
		r.breakers[name] = b
		r.followers[name] = intake.FollowBreaker(b)
	}
	for _, name := range slices.Sorted(maps.Keys(r.cfg.Bulkheads)) {
		b, err := bulkhead.New(name, r.cfg.Bulkheads[name])
		if err != nil {
			return fmt.Errorf("bulkheads.%s: %w", name, err)
		}
		r.bulkheads[name] = b
	}
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

func (r *Relay) buildTargets(opts Options) error {
	env := opts.Env
	if env == nil {
		env = os.LookupEnv
	}
	client := opts.HTTPClient
	if client == nil {
		client = newHTTPClient(r.cfg)
	}
	ua := "relay"
	if opts.Version != "" {
		ua += "/" + opts.Version
	}
	for _, name := range slices.Sorted(maps.Keys(r.cfg.Targets)) {
		tc := r.cfg.Targets[name]
		hdrs, err := tc.ExpandedHeaders(env)
		if err != nil {
			return err
		}
		h := make(http.Header, len(hdrs))
		for k, v := range hdrs {
			h.Set(k, v)
		}
		r.targets[name] = dispatch.NewTarget(dispatch.TargetSpec{
			Name: name, URL: tc.URL, Method: tc.Method, Timeout: tc.Timeout, Headers: h,
			MaxRequestBytes: tc.MaxRequestBytes, MaxResponseBytes: tc.MaxResponseBytes,
			Client: client, Guard: r.guard(tc.Breaker, tc.Bulkhead),
			Backoff: r.cfg.Backoff[tc.Backoff], Metrics: r.metrics.Target(name), UserAgent: ua,
		})
	}
	return nil
}

// buildQueues makes the dispatchers of the work and outbound queues. Their
// publishers are the relay's, made when Run connects.
func (r *Relay) buildQueues() {
	pub := lazyPublisher{&r.pub}
	for _, w := range r.cfg.Work {
		r.work = append(r.work, dispatch.NewWork(dispatch.WorkSpec{
			Queue: w.Queue, Target: r.targets[w.Target], Redelivery: w.Redelivery,
			Prefetch: w.Prefetch, Concurrency: r.cfg.Targets[w.Target].Concurrency,
			Publisher: pub, Metrics: r.metrics.Queue(w.Queue, w.Target), Logger: r.log,
			DeadLettered: r.deadLettered,
		}))
	}
	for _, o := range r.cfg.Outbound {
		oq := &outboundQueue{cfg: o}
		oq.Outbound = dispatch.NewOutbound(dispatch.OutboundSpec{
			Queue: o.Queue, Exchanges: o.Exchanges, Prefetch: o.Prefetch,
			Guard:       r.guard(o.Breaker, o.Bulkhead),
			Destination: lazyPublisher{&oq.pub}, Publisher: pub,
			Metrics: r.metrics.Outbound(o.Queue), Logger: r.log, DeadLettered: r.deadLettered,
		})
		r.outbound = append(r.outbound, oq)
	}
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
func (r *Relay) Breaker(name string) *breaker.Breaker { return r.breakers[name] }

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
