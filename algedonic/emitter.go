package algedonic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vsm-relay/relay/clock"
)

// Publisher publishes one message and returns only once the broker has
// confirmed it, or with an error. The broker package provides the real
// one.
type Publisher interface {
	Publish(ctx context.Context, exchange, routingKey string, body []byte) error
}

// Errors of NewEmitter and Run, checked with errors.Is.
var (
	ErrNoPublisher    = errors.New("algedonic: nil publisher")
	ErrAlreadyRunning = errors.New("algedonic: Run called while already running")
)

// Delivery retry backoff while the publisher fails.
const (
	retryInitial = 100 * time.Millisecond
	retryMax     = 5 * time.Second
	// minTick bounds how often Run looks for ended coalescing windows.
	minTick = 10 * time.Millisecond
)

// Emitter raises algedonic events: it coalesces, logs, counts, buffers
// and, in Run, publishes them. All methods are safe for concurrent use.
type Emitter struct {
	instance       string // Config.Instance, fixed at NewEmitter
	pub            Publisher
	clock          clock.Clock
	log            *slog.Logger
	m              *metrics
	kinds          []Kind // the kinds coalesced while Coalesce is above zero
	publishTimeout time.Duration

	wake      chan struct{} // a token when events were queued
	reconf    chan struct{} // a token when SetConfig changed tickEvery
	running   atomic.Bool
	listeners atomic.Pointer[[]func(Event)]

	mu        sync.Mutex
	cfg       Config // SetConfig replaces it
	coalesced map[Kind]struct{}
	tickEvery time.Duration
	queue     ring
	windows   map[windowKey]*window
	// drained is closed when the queue becomes empty; a new one is made
	// when it stops being empty.
	drained chan struct{}
}

// tickEvery is how often Run looks for ended windows: a quarter window,
// and rarely when there are no windows, since nothing is coalesced.
func tickEvery(coalesce time.Duration) time.Duration {
	if coalesce <= 0 {
		return time.Hour
	}
	return max(coalesce/4, minTick)
}

// NewEmitter returns an Emitter that publishes through pub. It fails on
// an invalid cfg, a nil pub, or when its metrics cannot be registered.
func NewEmitter(cfg Config, pub Publisher, opts ...Option) (*Emitter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, ErrNoPublisher
	}
	o := options{clock: clock.Real, coalesced: DefaultCoalesced(), publishTimeout: DefaultPublishTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clock == nil {
		o.clock = clock.Real
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.publishTimeout <= 0 {
		o.publishTimeout = DefaultPublishTimeout
	}
	m, err := newMetrics(o.reg)
	if err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	e := &Emitter{
		instance: cfg.Instance, cfg: cfg, pub: pub, clock: o.clock, log: o.logger, m: m,
		kinds:          o.coalesced,
		coalesced:      coalescedSet(cfg.Coalesce, o.coalesced),
		tickEvery:      tickEvery(cfg.Coalesce),
		publishTimeout: o.publishTimeout,
		wake:           make(chan struct{}, 1),
		reconf:         make(chan struct{}, 1),
		queue:          newRing(cfg.Buffer),
		windows:        map[windowKey]*window{},
		drained:        make(chan struct{}),
	}
	close(e.drained)
	e.listeners.Store(&[]func(Event){})
	return e, nil
}

// coalescedSet is the set of kinds coalesced under a window of coalesce:
// none when it is zero, so that every event goes out as raised.
func coalescedSet(coalesce time.Duration, kinds []Kind) map[Kind]struct{} {
	set := make(map[Kind]struct{}, len(kinds))
	if coalesce > 0 {
		for _, k := range kinds {
			set[k] = struct{}{}
		}
	}
	return set
}

// Subscribe adds a listener that is handed every event the emitter
// queues for publication (first occurrences and coalesced summaries, not
// the occurrences counted into a window). Listeners run on the goroutine
// that raised the event, in the order they subscribed, with no lock held;
// they must be quick and must not change the event's Details. A listener
// that panics is recovered and logged.
func (e *Emitter) Subscribe(fn func(Event)) {
	if fn == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := *e.listeners.Load()
	next := append(append(make([]func(Event), 0, len(old)+1), old...), fn)
	e.listeners.Store(&next)
}

// Emit raises ev. It never waits for the broker. It fills what ev leaves
// empty: Instance (from the Config), At (now), Count (1 when below 1),
// Severity (warning for pain, info for pleasure) and, for events queued,
// Details ({}); it clamps Intensity into [0, 1]. An event that still is
// not valid (unknown signal or severity, no source, name or event) is
// logged as an error and dropped, so that whatever is published decodes.
func (e *Emitter) Emit(ev Event) {
	now := e.clock.Now()
	if err := e.prepare(&ev, now); err != nil {
		e.log.LogAttrs(context.Background(), slog.LevelError, "algedonic event refused",
			slog.String("error", err.Error()), slog.String("routing_key", ev.RoutingKey()))
		return
	}
	e.m.signal(ev.Signal, ev.Source).Add(float64(ev.Count))

	var buf [2]Event
	e.mu.Lock()
	out, absorbed := e.coalesce(ev, now, buf[:0])
	var dropped [2]Event
	nd := e.enqueueLocked(out, dropped[:0])
	size := e.cfg.Buffer
	e.mu.Unlock()

	if absorbed {
		e.m.coalesced.Add(float64(ev.Count))
		if e.log.Enabled(context.Background(), slog.LevelDebug) {
			e.log.LogAttrs(context.Background(), slog.LevelDebug, "algedonic event coalesced",
				slog.String("signal", string(ev.Signal)), slog.String("source", ev.Source),
				slog.String("name", ev.Name), slog.String("event", ev.Event), slog.Int("count", ev.Count))
		}
	}
	e.afterEnqueue(out, nd, size)
}

// prepare fills the defaults of ev and checks it.
func (e *Emitter) prepare(ev *Event, now time.Time) error {
	if ev.Instance == "" {
		ev.Instance = e.instance
	}
	if ev.At.IsZero() {
		ev.At = now
	}
	if ev.Count < 1 {
		ev.Count = 1
	}
	if ev.Severity == "" {
		switch ev.Signal {
		case Pain:
			ev.Severity = Warning
		case Pleasure:
			ev.Severity = Info
		}
	}
	ev.Intensity = clamp01(ev.Intensity)
	return ev.validate()
}

// enqueueLocked queues evs (e.mu held), appending the events the full
// buffer dropped to dropped.
func (e *Emitter) enqueueLocked(evs []Event, dropped []Event) []Event {
	if len(evs) == 0 {
		return dropped
	}
	if e.queue.len() == 0 {
		e.drained = make(chan struct{})
	}
	for i := range evs {
		if evs[i].Details == nil {
			evs[i].Details = map[string]any{}
		}
		if old, ok := e.queue.push(evs[i]); ok {
			dropped = append(dropped, old)
		}
	}
	e.m.pending.Set(float64(e.queue.len()))
	return dropped
}

// afterEnqueue does, with no lock held, what follows queueing: wake Run,
// count and log drops, log and hand out the queued events. size is the
// buffer's size when they were queued.
func (e *Emitter) afterEnqueue(queued, dropped []Event, size int) {
	if len(queued) == 0 {
		return
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
	e.logDropped(dropped, "algedonic buffer full; dropped the oldest event", size)
	listeners := *e.listeners.Load()
	for _, ev := range queued {
		e.logEvent(ev)
		for _, fn := range listeners {
			e.call(fn, ev)
		}
	}
}

// logDropped counts and logs events dropped unpublished.
func (e *Emitter) logDropped(dropped []Event, msg string, size int) {
	for _, d := range dropped {
		e.m.dropped.Inc()
		e.log.LogAttrs(context.Background(), slog.LevelWarn, msg,
			slog.String("routing_key", d.RoutingKey()), slog.Int("count", d.Count),
			slog.Time("at", d.At), slog.Int("buffer", size))
	}
}

func (e *Emitter) logEvent(ev Event) {
	level, msg := slog.LevelWarn, "algedonic pain"
	if ev.Signal == Pleasure {
		level, msg = slog.LevelInfo, "algedonic pleasure"
	}
	e.log.LogAttrs(context.Background(), level, msg,
		slog.String("source", ev.Source), slog.String("name", ev.Name), slog.String("event", ev.Event),
		slog.String("severity", string(ev.Severity)), slog.Float64("intensity", ev.Intensity),
		slog.String("reason", ev.Reason), slog.Int("count", ev.Count), slog.String("instance", ev.Instance))
}

func (e *Emitter) call(fn func(Event), ev Event) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("algedonic listener panicked", slog.Any("panic", r), slog.String("routing_key", ev.RoutingKey()))
		}
	}()
	fn(ev)
}

// tick sends the summaries of the coalescing windows that ended by now.
// Run calls it periodically; tests call it with a fake time.
func (e *Emitter) tick(now time.Time) {
	e.mu.Lock()
	out := e.closeWindows(now, false)
	dropped := e.enqueueLocked(out, nil)
	size := e.cfg.Buffer
	e.mu.Unlock()
	e.afterEnqueue(out, dropped, size)
}

// Pending reports how many events wait for the broker, including one
// being published.
func (e *Emitter) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.queue.len()
}

// Flush sends at once the summaries of every coalescing window with
// counts (so that shutting down loses no count), then waits until every
// queued event is published, or ctx ends (returning its error). Only a
// running Run empties the queue.
func (e *Emitter) Flush(ctx context.Context) error {
	e.mu.Lock()
	out := e.closeWindows(e.clock.Now(), true)
	dropped := e.enqueueLocked(out, nil)
	drained := e.drained
	size := e.cfg.Buffer
	e.mu.Unlock()
	e.afterEnqueue(out, dropped, size)
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run is the delivery loop: it publishes queued events in order, each to
// its signal's exchange with its routing key, and sends coalescing
// summaries as windows end. While the publisher fails it keeps the event
// at the head and retries with a backoff doubling from 100ms to 5s. It
// returns nil once ctx ends, or ErrAlreadyRunning if another Run is in
// progress.
func (e *Emitter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer e.running.Store(false)

	select {
	case <-e.reconf: // a change made before Run: the pace read next is already it
	default:
	}
	ticker := time.NewTicker(e.currentTickEvery())
	defer ticker.Stop()
	// Since Go 1.23 a stopped timer delivers no stale value, so the one
	// timer can be re-armed for every backoff.
	retry := time.NewTimer(retryMax)
	retry.Stop()
	defer retry.Stop()
	var (
		retryC   <-chan time.Time // set while waiting out a backoff
		delay    time.Duration
		failures int
	)
	for {
		if retryC == nil {
			err := e.drain(ctx, ticker.C)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				failures++
				delay = min(max(2*delay, retryInitial), retryMax)
				e.logFailure(err, failures, delay)
				retry.Reset(delay)
				retryC = retry.C
			case failures > 0:
				e.log.Info("algedonic publishing resumed", slog.Int("failed_attempts", failures))
				failures, delay = 0, 0
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.wake:
		case <-ticker.C:
			e.tick(e.clock.Now())
		case <-e.reconf:
			ticker.Reset(e.currentTickEvery())
		case <-retryC:
			retryC = nil
		}
	}
}

func (e *Emitter) logFailure(err error, failures int, delay time.Duration) {
	level := slog.LevelDebug
	if failures == 1 {
		level = slog.LevelWarn
	}
	e.log.LogAttrs(context.Background(), level, "algedonic publish failed; keeping events and retrying",
		slog.String("error", err.Error()), slog.Int("pending", e.Pending()),
		slog.Int("failed_attempts", failures), slog.Duration("retry_in", delay))
}

// drain publishes until the queue is empty or a publish fails, sending
// due summaries on the way so a long drain does not hold them back.
func (e *Emitter) drain(ctx context.Context, tick <-chan time.Time) error {
	for ctx.Err() == nil {
		select {
		case <-tick:
			e.tick(e.clock.Now())
		default:
		}
		more, err := e.publishNext(ctx)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// publishNext publishes the head of the queue and removes it once
// confirmed. It reports false when the queue was empty.
func (e *Emitter) publishNext(ctx context.Context) (bool, error) {
	e.mu.Lock()
	if e.queue.len() == 0 {
		e.mu.Unlock()
		return false, nil
	}
	head := e.queue.front()
	exchange := e.cfg.PainExchange
	if head.ev.Signal == Pleasure {
		exchange = e.cfg.PleasureExchange
	}
	e.mu.Unlock()

	body, err := json.Marshal(head.ev)
	if err != nil {
		// Details holding something JSON cannot carry: retrying would
		// block every later event behind this one.
		e.m.dropped.Inc()
		e.log.Error("algedonic event cannot be encoded; dropped",
			slog.String("error", err.Error()), slog.String("routing_key", head.ev.RoutingKey()))
		e.remove(head.seq)
		return true, nil
	}
	pctx, cancel := context.WithTimeout(ctx, e.publishTimeout)
	err = e.pub.Publish(pctx, exchange, head.ev.RoutingKey(), body)
	cancel()
	if err != nil {
		e.m.failures.Inc()
		return true, fmt.Errorf("publishing %s to %s: %w", head.ev.RoutingKey(), exchange, err)
	}
	e.m.published.Inc()
	e.remove(head.seq)
	return true, nil
}

// remove takes the event numbered seq off the head of the queue, unless
// the full buffer already dropped it while it was being published.
func (e *Emitter) remove(seq uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.queue.len() == 0 || e.queue.front().seq != seq {
		return
	}
	e.queue.pop()
	e.m.pending.Set(float64(e.queue.len()))
	if e.queue.len() == 0 {
		close(e.drained)
	}
}
