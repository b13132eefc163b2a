package fleet

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/clock"
)

// Transport carries the coordinator's messages to the peers. Publish may
// wait (for a broker's confirm, say) but must honour ctx; an error means
// the message is lost, and the coordinator goes on: a relay that cannot
// reach its peers decides alone. Messages from peers come back through
// Coordinator.Deliver, including the coordinator's own, which it ignores.
type Transport interface {
	Publish(ctx context.Context, m Message) error
}

// Defaults of the options.
const (
	DefaultFlushInterval  = 200 * time.Millisecond
	DefaultMaxJitter      = time.Second
	DefaultPublishTimeout = 2 * time.Second
	// outboxLimit bounds the messages waiting for the transport; beyond
	// it the oldest is dropped. Failures go out at most once per flush
	// interval per breaker, transitions are rare: it is only reached
	// when the transport hangs.
	outboxLimit = 1024
)

// Option changes how New builds a Coordinator.
type Option func(*options)

type options struct {
	clock          clock.Clock
	logger         *slog.Logger
	flush          time.Duration
	maxJitter      time.Duration
	publishTimeout time.Duration
	rand           func() float64
}

// WithClock sets the time source of message times, staleness and the
// batching and jitter deadlines. Default: clock.Real. Run waits on the
// runtime's timers, which testing/synctest fakes.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

// WithLogger sets the logger of what the coordinator does. Default: one
// that discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithFlushInterval sets how often failure counts go out while failures
// occur. Default: DefaultFlushInterval.
func WithFlushInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.flush = d
		}
	}
}

// WithMaxJitter bounds the delay before a breaker goes half_open because a
// peer closed: a random share of min(max, reset_timeout/10). Zero makes it
// immediate. Default: DefaultMaxJitter.
func WithMaxJitter(max time.Duration) Option {
	return func(o *options) {
		if max >= 0 {
			o.maxJitter = max
		}
	}
}

// WithPublishTimeout bounds one Publish. Default: DefaultPublishTimeout.
func WithPublishTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.publishTimeout = d
		}
	}
}

// WithRand sets the source of the jitter, a function returning values in
// [0, 1). Default: math/rand/v2's Float64.
func WithRand(f func() float64) Option {
	return func(o *options) {
		if f != nil {
			o.rand = f
		}
	}
}

// Coordinator makes the breakers it is given act as one breaker with the
// breakers of the same name in other relays. It is safe for concurrent
// use. See the package documentation for what it sends and how it treats
// what it receives.
type Coordinator struct {
	instance string
	t        Transport
	clk      clock.Clock
	log      *slog.Logger
	o        options
	wake     chan struct{} // buffered: Run has work sooner than it planned

	counts counters

	mu      sync.Mutex
	shared  map[string]*member
	outbox  []Message
	flushAt time.Time // when the pending failure counts go out; zero: none pending
	running bool
}

// member is one shared breaker and what waits to be done for it.
type member struct {
	b *breaker.Breaker
	// active: shared now. An unshared breaker keeps its member, and its
	// listeners, which do nothing until it is shared again.
	active bool

	// Failures counted here since the last flush.
	failures   int
	lastReason string
	lastAt     time.Time

	// A half_open a peer's closing asked for, due at probeAt.
	probe     bool
	probeAt   time.Time
	probePeer string
	peerAt    time.Time
}

type counters struct {
	sent, publishErrors, dropped           atomic.Uint64
	received, ignored, applied, ownIgnored atomic.Uint64
}

// Counts are what a coordinator has done since New, for metrics.
type Counts struct {
	Sent          uint64 // messages the transport took
	PublishErrors uint64 // messages the transport refused (lost)
	Dropped       uint64 // messages dropped unsent, the outbox being full
	Received      uint64 // messages delivered
	Own           uint64 // ... of them this relay's own, or caused by it
	Ignored       uint64 // ... stale, about a breaker not shared here, or with no effect
	Applied       uint64 // ... that changed a breaker's counts or state
}

// Counts returns what the coordinator has done so far.
func (c *Coordinator) Counts() Counts {
	return Counts{
		Sent: c.counts.sent.Load(), PublishErrors: c.counts.publishErrors.Load(), Dropped: c.counts.dropped.Load(),
		Received: c.counts.received.Load(), Own: c.counts.ownIgnored.Load(),
		Ignored: c.counts.ignored.Load(), Applied: c.counts.applied.Load(),
	}
}

// Errors of New, Share and Run.
var (
	ErrNoInstance     = errors.New("fleet: instance must not be empty")
	ErrNoTransport    = errors.New("fleet: transport must not be nil")
	ErrAlreadyShared  = errors.New("fleet: a breaker of that name is already shared")
	ErrAlreadyRunning = errors.New("fleet: coordinator already running")
)

// New returns a coordinator that speaks for instance (the relay's
// instance id, distinct in the fleet) through t.
func New(instance string, t Transport, opts ...Option) (*Coordinator, error) {
	if instance == "" {
		return nil, ErrNoInstance
	}
	if t == nil {
		return nil, ErrNoTransport
	}
	o := options{
		clock: clock.Real, flush: DefaultFlushInterval, maxJitter: DefaultMaxJitter,
		publishTimeout: DefaultPublishTimeout, rand: rand.Float64,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return &Coordinator{
		instance: instance, t: t, clk: o.clock, log: o.logger, o: o,
		wake:   make(chan struct{}, 1),
		shared: make(map[string]*member),
	}, nil
}

// Instance is the id the coordinator speaks for.
func (c *Coordinator) Instance() string { return c.instance }

// Share makes b one of the fleet's shared breakers: its failures and
// transitions are told to the peers, and the peers' messages about its
// name are applied to it. A second breaker of a name already shared is
// refused with ErrAlreadyShared. Sharing again a breaker Unshare took
// out shares it as before.
func (c *Coordinator) Share(b *breaker.Breaker) error {
	c.mu.Lock()
	m, ok := c.shared[b.Name()]
	switch {
	case ok && m.active:
		c.mu.Unlock()
		return ErrAlreadyShared
	case ok && m.b == b:
		// Its listeners are still registered; they only waited.
		m.active = true
		c.mu.Unlock()
		return nil
	}
	m = &member{b: b, active: true}
	c.shared[b.Name()] = m
	c.mu.Unlock()
	b.OnFailure(func(f breaker.FailureEvent) { c.localFailure(m, f) })
	b.OnStateChange(func(t breaker.Transition) { c.localTransition(m, t) })
	return nil
}

// Unshare takes the breaker of that name out of the fleet: from now on
// it decides alone, its failures and transitions stay here, and the
// peers' messages about it are ignored. Its failures not yet sent are
// dropped, and a half_open a peer's closing planned is not made. It
// reports whether the name was shared.
func (c *Coordinator) Unshare(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.shared[name]
	if !ok || !m.active {
		return false
	}
	m.active = false
	m.failures, m.probe = 0, false
	return true
}

// Shared names the breakers shared now, sorted.
func (c *Coordinator) Shared() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for name, m := range c.shared {
		if m.active {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// localFailure counts a failure of m for the next flush. It runs on the
// breaker's failure path, so it only counts.
func (c *Coordinator) localFailure(m *member, f breaker.FailureEvent) {
	c.mu.Lock()
	if !m.active {
		c.mu.Unlock()
		return
	}
	m.failures++
	m.lastReason, m.lastAt = f.Reason, f.At
	first := c.flushAt.IsZero()
	if first {
		c.flushAt = c.clk.Now().Add(c.o.flush)
	}
	c.mu.Unlock()
	if first {
		c.poke()
	}
}

// localTransition tells the peers of a transition of m this relay decided
// (not one a peer caused): the opening or the closing. Failures not yet
// sent are dropped: an opening opens the peers anyway (as its origin,
// which they will not pass on, where failures would have them open by
// count and tell everyone again), and failures before a closing say
// nothing about after it. half_open is not sent: each relay probes on its
// own reset_timeout.
func (c *Coordinator) localTransition(m *member, t breaker.Transition) {
	c.mu.Lock()
	if !m.active {
		c.mu.Unlock()
		return
	}
	if t.To != breaker.Open {
		m.probe = false // closed or probing already
	}
	var send bool
	switch {
	case t.Origin != "":
		// Caused by a peer: never passed on again.
	case t.To == breaker.Open:
		m.failures = 0
		c.queue(Message{Kind: KindOpen, Breaker: t.Breaker, Reason: t.Reason, At: t.At})
		send = true
	case t.To == breaker.Closed:
		m.failures = 0
		c.queue(Message{Kind: KindClosed, Breaker: t.Breaker, Reason: t.Reason, At: t.At})
		send = true
	}
	c.mu.Unlock()
	if send {
		c.poke()
	}
}

// takeFailures queues m's pending failure count, if any. c.mu is held.
func (c *Coordinator) takeFailures(m *member) {
	if m.failures == 0 {
		return
	}
	c.queue(Message{Kind: KindFailures, Breaker: m.b.Name(), Count: m.failures, Reason: m.lastReason, At: m.lastAt})
	m.failures = 0
}

// queue adds a message from this instance to the outbox. c.mu is held.
func (c *Coordinator) queue(msg Message) {
	msg.Version, msg.Instance, msg.Origin = Version, c.instance, c.instance
	if len(c.outbox) >= outboxLimit {
		c.outbox = append(c.outbox[:0], c.outbox[1:]...)
		c.counts.dropped.Add(1)
	}
	c.outbox = append(c.outbox, msg)
}

func (c *Coordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Deliver applies a peer's message. It ignores the coordinator's own
// messages and those it caused, messages about breakers not shared here,
// and stale ones: older than the breaker's window, or from before its last
// transition. Any goroutine may call it; it does not wait for the
// transport.
func (c *Coordinator) Deliver(msg Message) {
	c.counts.received.Add(1)
	if msg.Instance == c.instance || msg.Origin == c.instance {
		c.counts.ownIgnored.Add(1)
		return
	}
	c.mu.Lock()
	m := c.shared[msg.Breaker]
	if m != nil && !m.active {
		m = nil
	}
	c.mu.Unlock()
	now := c.clk.Now()
	if m == nil || msg.Version != Version || now.Sub(msg.At) >= m.b.Settings().WindowSize {
		c.counts.ignored.Add(1)
		return
	}
	peer := msg.Instance
	if msg.Origin != "" {
		peer = msg.Origin
	}
	var applied bool
	switch msg.Kind {
	case KindFailures:
		applied = m.b.RecordPeerFailures(peer, msg.Count, msg.At, msg.Reason)
	case KindOpen:
		applied = m.b.OpenByPeer(peer, msg.Reason, msg.At)
	case KindClosed:
		applied = c.probeSoon(m, peer, msg.At, now)
	}
	if applied {
		c.counts.applied.Add(1)
	} else {
		c.counts.ignored.Add(1)
	}
}

// probeSoon plans a half_open of m, open here, after a jitter, because
// peer closed at at: so that the fleet's probes do not all land at once.
func (c *Coordinator) probeSoon(m *member, peer string, at, now time.Time) bool {
	if m.b.State() != breaker.Open || at.Before(m.b.LastTransition()) {
		return false
	}
	jitter := time.Duration(c.o.rand() * float64(min(c.o.maxJitter, m.b.Settings().ResetTimeout/10)))
	if jitter <= 0 {
		return m.b.HalfOpenNow(peer, at)
	}
	c.mu.Lock()
	m.probe, m.probeAt, m.probePeer, m.peerAt = true, now.Add(jitter), peer, at
	c.mu.Unlock()
	c.poke()
	return true
}

// Run sends the coordinator's messages and makes the planned half_opens
// until ctx ends; then it returns nil, leaving unsent messages unsent
// (peers that miss them decide alone). It returns ErrAlreadyRunning if
// another Run is under way.
func (c *Coordinator) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return ErrAlreadyRunning
	}
	c.running = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if next := c.step(ctx); next > 0 {
			timer.Reset(next)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		case <-timer.C:
		}
	}
}

// step does what is due now: the planned half_opens, the failure counts
// once the flush interval has passed, and sending the outbox. It returns
// how long until something more falls due, or 0 when nothing is planned
// (a failure or a transition wakes Run).
func (c *Coordinator) step(ctx context.Context) time.Duration {
	now := c.clk.Now()
	type probe struct {
		m        *member
		peer     string
		peerTime time.Time
	}
	var probes []probe
	c.mu.Lock()
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, m := range c.shared {
		if !m.probe || !m.active {
			continue
		}
		if now.Before(m.probeAt) {
			later(m.probeAt)
			continue
		}
		m.probe = false
		probes = append(probes, probe{m, m.probePeer, m.peerAt})
	}
	if !c.flushAt.IsZero() {
		if now.Before(c.flushAt) {
			later(c.flushAt)
		} else {
			c.flushAt = time.Time{}
			for _, m := range c.shared {
				c.takeFailures(m)
			}
		}
	}
	out := c.outbox
	c.outbox = nil
	c.mu.Unlock()

	for _, p := range probes {
		p.m.b.HalfOpenNow(p.peer, p.peerTime)
	}
	for _, msg := range out {
		if ctx.Err() != nil {
			break
		}
		c.publish(ctx, msg)
	}
	if next.IsZero() {
		return 0
	}
	return max(next.Sub(c.clk.Now()), time.Millisecond)
}

func (c *Coordinator) publish(ctx context.Context, msg Message) {
	pctx, cancel := context.WithTimeout(ctx, c.o.publishTimeout)
	err := c.t.Publish(pctx, msg)
	cancel()
	if err != nil {
		c.counts.publishErrors.Add(1)
		c.log.Warn("fleet message not sent; the peers decide without it",
			"breaker", msg.Breaker, "kind", string(msg.Kind), "error", err)
		return
	}
	c.counts.sent.Add(1)
}
