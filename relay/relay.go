package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
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
	"github.com/vsm-relay/relay/health"
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
// inside its bulkhead and breaker. Make one with New and start it with Run.
type Relay struct {
	cfg      *config.Config
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics.Metrics

	breakers  map[string]*breaker.Breaker
	bulkheads map[string]*bulkhead.Bulkhead
	targets   map[string]*target
	work      []*workQueue
	outbound  []*outboundQueue
	intakes   map[string]*intake

	// gatesMu guards connGates: the gates each publishing connection
	// holds while it is down or blocked (a task taken then could not be
	// answered, and would only come back as a duplicate).
	gatesMu   sync.Mutex
	connGates map[*broker.Conn][]*gate
	connHolds map[*broker.Conn]connHold

	consumeConn *broker.Conn
	publishConn *broker.Conn
	pub         *broker.Publisher
	eventPub    *broker.Publisher
	destConns   []*broker.Conn

	emitter *algedonic.Emitter
	monitor *health.Monitor

	listener net.Listener
	server   *http.Server

	// softCtx ends when shutdown begins (no new attempts, no more
	// backoff sleeps); workCtx ends when shutdown_timeout has passed.
	softCtx, workCtx       context.Context
	softCancel, workCancel context.CancelFunc
	stopping               chan struct{}
	consuming              atomic.Bool
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
		targets:   map[string]*target{},
		intakes:   map[string]*intake{},
		connGates: map[*broker.Conn][]*gate{},
		connHolds: map[*broker.Conn]connHold{},
		stopping:  make(chan struct{}),
	}
	r.softCtx, r.softCancel = context.WithCancel(context.Background())
	r.workCtx, r.workCancel = context.WithCancel(context.Background())

	for _, name := range slices.Sorted(maps.Keys(cfg.Breakers)) {
		b, err := breaker.New(name, cfg.Breakers[name], breaker.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("breakers.%s: %w", name, err)
		}
		b.OnStateChange(r.breakerChanged)
		r.breakers[name] = b
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
	a := cfg.Algedonic
	em, err := algedonic.NewEmitter(algedonic.Config{
		PainExchange: a.PainExchange, PleasureExchange: a.PleasureExchange,
		Coalesce: a.Coalesce, Buffer: a.Buffer, Instance: cfg.Instance,
	}, eventPublisher{r}, algedonic.WithLogger(log), algedonic.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	r.emitter = em
	if err := reg.Register(metrics.NewBreakerCollector(r.breakerSnapshots)); err != nil {
		return nil, err
	}
	if err := reg.Register(metrics.NewBulkheadCollector(r.bulkheadStats)); err != nil {
		return nil, err
	}

	env := opts.Env
	if env == nil {
		env = os.LookupEnv
	}
	client := opts.HTTPClient
	if client == nil {
		client = newHTTPClient(cfg)
	}
	ua := "relay"
	if opts.Version != "" {
		ua += "/" + opts.Version
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Targets)) {
		tc := cfg.Targets[name]
		hdrs, err := tc.ExpandedHeaders(env)
		if err != nil {
			return nil, err
		}
		h := make(http.Header, len(hdrs))
		for k, v := range hdrs {
			h.Set(k, v)
		}
		r.targets[name] = &target{
			name:    name,
			url:     tc.URL,
			method:  tc.Method,
			timeout: tc.Timeout,
			headers: h,
			maxReq:  tc.MaxRequestBytes,
			maxResp: tc.MaxResponseBytes,
			client:  client,
			guard: guard{
				breaker:  r.breakers[tc.Breaker],
				bulkhead: r.bulkheads[tc.Bulkhead],
				poolWait: m.BulkheadWait(tc.Bulkhead),
				onReject: r.bulkheadRejected,
			},
			policy:    cfg.Backoff[tc.Backoff],
			m:         m.Target(name),
			userAgent: ua,
		}
	}
	for _, w := range cfg.Work {
		r.work = append(r.work, newWorkQueue(r, w, r.targets[w.Target]))
	}
	for _, o := range cfg.Outbound {
		r.outbound = append(r.outbound, newOutboundQueue(r, o))
	}
	return r, nil
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
	if !r.consuming.Load() || r.consumeConn == nil || r.publishConn == nil {
		return false
	}
	select {
	case <-r.stopping:
		return false
	default:
	}
	return r.consumeConn.Connected() && r.publishConn.Connected() && !r.publishConn.Blocked()
}

// Run connects, declares the topology, serves the HTTP endpoints and
// consumes until ctx ends; then it drains in-flight work for at most
// shutdown_timeout and returns. It returns an error when the HTTP listener
// or the first broker connection cannot be had.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.listen(); err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- r.server.Serve(r.listener) }()
	defer r.server.Close()

	if err := r.connect(ctx); err != nil {
		r.closeConns()
		return err
	}
	if err := r.startSignals(); err != nil {
		r.closeConns()
		return err
	}
	var bg sync.WaitGroup
	bgCtx, bgCancel := context.WithCancel(context.Background())
	bg.Add(2)
	go func() { defer bg.Done(); _ = r.emitter.Run(bgCtx) }()
	go func() { defer bg.Done(); _ = r.monitor.Run(bgCtx) }()

	if err := r.startConsumers(); err != nil {
		bgCancel()
		bg.Wait()
		r.closeConns()
		return err
	}
	r.consuming.Store(true)
	r.log.Info("relay running", "instance", r.cfg.Instance, "http", r.Addr(),
		"work_queues", len(r.work), "outbound_queues", len(r.outbound))

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		r.log.Error("http server stopped", "err", err)
	}
	r.shutdown()
	flushCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	if err := r.emitter.Flush(flushCtx); err != nil {
		r.log.Warn("some signals were not published before exit", "pending", r.emitter.Pending())
	}
	cancel()
	bgCancel()
	bg.Wait()
	r.closeConns()
	shutCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = r.server.Shutdown(shutCtx)
	cancel()
	r.log.Info("relay stopped")
	return nil
}

func (r *Relay) listen() error {
	ln, err := net.Listen("tcp", r.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", r.cfg.HTTP.Listen, err)
	}
	r.listener = ln
	r.server = &http.Server{Handler: r.handler(), ReadHeaderTimeout: 5 * time.Second}
	return nil
}

func (r *Relay) connOptions(tc *tls.Config, name, url string, topo func(*amqp.Connection) error) broker.Options {
	a := r.cfg.AMQP
	confirms := r.metrics.Broker(name).PublishConfirms
	return broker.Options{
		Name: name, Instance: r.cfg.Instance, URL: url, TLS: tc,
		ConnectTimeout: a.ConnectTimeout, Heartbeat: a.Heartbeat,
		ReconnectInitial: a.Reconnect.Initial, ReconnectMax: a.Reconnect.Max,
		Topology: topo, Logger: r.log,
		OnConfirm: func(err error) { confirms(confirmOutcome(err)).Inc() },
	}
}

// confirmOutcome is the relay_amqp_publishes_total outcome of a publish.
func confirmOutcome(err error) string {
	switch {
	case err == nil:
		return metrics.ConfirmAck
	case errors.Is(err, broker.ErrReturned):
		return metrics.ConfirmReturned
	case errors.Is(err, broker.ErrNacked):
		return metrics.ConfirmNack
	}
	return metrics.ConfirmLost
}

// connect opens the publishing and consuming connections (separate, so
// that flow control on publishes never stalls acks) and any outbound
// destinations, each declaring its topology on every (re)connect.
func (r *Relay) connect(ctx context.Context) error {
	tc, err := r.cfg.AMQP.TLS.ClientConfig()
	if err != nil {
		return err
	}
	if r.publishConn, err = broker.Dial(ctx, r.connOptions(tc, "publish", r.cfg.AMQP.URL, r.declareAll)); err != nil {
		return err
	}
	r.watchConn(r.publishConn, connHold{blocked: holdBlocked, down: holdDown})
	if r.consumeConn, err = broker.Dial(ctx, r.connOptions(tc, "consume", r.cfg.AMQP.URL, r.declareAll)); err != nil {
		return err
	}
	r.watchConn(r.consumeConn, connHold{})
	r.pub = r.publishConn.NewPublisher()
	r.eventPub = r.publishConn.NewPublisher()
	for _, o := range r.outbound {
		if o.destURL == "" {
			o.pub = r.publishConn.NewPublisher()
			continue
		}
		opts := r.connOptions(tc, "outbound "+o.queue, o.destURL, func(conn *amqp.Connection) error {
			d := &declarer{conn: conn, log: r.log}
			defer d.close()
			return o.declareDestination(d)
		})
		dest, err := broker.Dial(ctx, opts)
		if err != nil {
			return fmt.Errorf("outbound %s destination: %w", o.queue, err)
		}
		r.watchConn(dest, connHold{blocked: holdDestBlocked, down: holdDestDown})
		r.destConns = append(r.destConns, dest)
		o.dest = dest
		o.pub = dest.NewPublisher()
	}
	return nil
}

// declareAll declares every exchange and queue the relay uses on its own
// broker. It is idempotent and runs on every (re)connect.
func (r *Relay) declareAll(conn *amqp.Connection) error {
	d := &declarer{conn: conn, log: r.log}
	defer d.close()
	for _, x := range []string{r.cfg.Algedonic.PainExchange, r.cfg.Algedonic.PleasureExchange, r.cfg.Health.Exchange} {
		if err := d.topic(x); err != nil {
			return err
		}
	}
	for _, w := range r.work {
		if err := w.declare(d); err != nil {
			return err
		}
	}
	for _, o := range r.outbound {
		if err := o.declare(d); err != nil {
			return err
		}
		if o.destURL == "" {
			if err := o.declareDestination(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// startSignals makes the health monitor.
func (r *Relay) startSignals() error {
	var targetBreakers []string
	seen := map[string]bool{}
	for _, t := range r.targets {
		if !seen[t.breaker.Name()] {
			seen[t.breaker.Name()] = true
			targetBreakers = append(targetBreakers, t.breaker.Name())
		}
	}
	sort.Strings(targetBreakers)
	h := r.cfg.Health
	mon, err := health.NewMonitor(health.Config{
		Instance: r.cfg.Instance, Exchange: h.Exchange, Interval: h.Interval, DegradedUtilization: h.DegradedUtilization,
	}, health.Sources{
		Breakers:       r.breakerSnapshots,
		Bulkheads:      r.bulkheadStats,
		AMQP:           r.amqpStatus,
		TargetBreakers: targetBreakers,
	}, r.emitter.Emit, eventPublisher{r}, health.WithLogger(r.log), health.WithRegisterer(r.registry))
	if err != nil {
		return err
	}
	r.monitor = mon
	return nil
}

// startConsumers starts one consumer per queue, each behind a gate that
// its breaker's intake and the broker's flow control drive.
func (r *Relay) startConsumers() error {
	add := func(queue string, prefetch int, b *breaker.Breaker, h broker.Handler, publishers ...*broker.Conn) (*broker.Consumer, error) {
		c, err := r.consumeConn.Consume(broker.ConsumerOptions{Queue: queue, Prefetch: prefetch}, h)
		if err != nil {
			return nil, err
		}
		g := &gate{c: c, normal: prefetch, probes: 1}
		in := r.intakes[b.Name()]
		if in == nil {
			in = newIntake(b)
			r.intakes[b.Name()] = in
		}
		in.add(g)
		if st := b.State(); st == breaker.Open {
			g.set(holdBreaker, true)
		}
		for _, pc := range publishers {
			r.holdWith(pc, g)
		}
		return c, nil
	}
	for _, w := range r.work {
		w.start()
		c, err := add(w.queue, w.prefetch, w.target.breaker, w.onDelivery, r.publishConn)
		if err != nil {
			return err
		}
		w.consumer = c
	}
	for _, o := range r.outbound {
		o.start()
		publishers := []*broker.Conn{r.publishConn}
		if o.dest != nil {
			publishers = append(publishers, o.dest)
		}
		c, err := add(o.queue, o.prefetch, o.breaker, o.onDelivery, publishers...)
		if err != nil {
			return err
		}
		o.consumer = c
	}
	return nil
}

// shutdown stops intake, lets in-flight work finish within
// shutdown_timeout, and gives back whatever did not.
func (r *Relay) shutdown() {
	r.log.Info("shutting down: intake stopped, draining in-flight work", "timeout", r.cfg.ShutdownTimeout)
	close(r.stopping)
	r.softCancel()
	deadline, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	for _, in := range r.intakes {
		in.close()
	}
	var drains sync.WaitGroup
	for _, c := range r.consumers() {
		drains.Add(1)
		go func() { defer drains.Done(); c.CancelAndDrain(deadline) }()
	}
	drains.Wait()
	done := make(chan struct{})
	go func() {
		for _, w := range r.work {
			w.workers.wait()
		}
		for _, o := range r.outbound {
			o.wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-deadline.Done():
		r.log.Warn("shutdown_timeout passed; unfinished work goes back to the broker")
		r.workCancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	r.workCancel()
	for _, c := range r.consumers() {
		c.Close()
	}
}

func (r *Relay) consumers() []*broker.Consumer {
	var cs []*broker.Consumer
	for _, w := range r.work {
		if w.consumer != nil {
			cs = append(cs, w.consumer)
		}
	}
	for _, o := range r.outbound {
		if o.consumer != nil {
			cs = append(cs, o.consumer)
		}
	}
	return cs
}

func (r *Relay) closeConns() {
	for _, in := range r.intakes {
		in.close()
	}
	for _, c := range r.consumers() {
		c.Close()
	}
	for _, w := range r.work {
		if w.workers != nil {
			w.workers.stop()
		}
	}
	for _, o := range r.outbound {
		if o.workers != nil {
			o.stop()
		}
	}
	for _, p := range []*broker.Publisher{r.pub, r.eventPub} {
		if p != nil {
			p.Close()
		}
	}
	for _, o := range r.outbound {
		if o.pub != nil {
			o.pub.Close()
		}
	}
	for _, c := range append([]*broker.Conn{r.consumeConn, r.publishConn}, r.destConns...) {
		if c != nil {
			c.Close()
		}
	}
	for _, b := range r.bulkheads {
		b.Close()
	}
}

// publishReply publishes a reply (mandatory, so a vanished reply queue
// is noticed) and waits for its confirm. A reply queue that no longer
// exists is logged, not retried: its client is gone.
func (r *Relay) publishReply(ctx context.Context, replyTo string, msg amqp.Publishing) error {
	err := r.pub.PublishAndWait(ctx, "", replyTo, true, msg)
	if errors.Is(err, broker.ErrReturned) {
		r.log.Warn("reply queue no longer exists; reply dropped", "reply_to", replyTo)
		return nil
	}
	return err
}

// eventPublisher publishes signals and health reports, persistent and
// confirmed, on the relay's event publisher (set by connect, before Run
// starts the emitter and the monitor).
type eventPublisher struct{ r *Relay }

func (e eventPublisher) Publish(ctx context.Context, exchange, key string, body []byte) error {
	return e.r.eventPub.PublishAndWait(ctx, exchange, key, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, Timestamp: time.Now(), Body: body,
	})
}
