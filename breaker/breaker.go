package breaker

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vsm-relay/relay/clock"
)

// Breaker is a named circuit breaker. It is safe for concurrent use by any
// number of goroutines. The zero value is not usable: make one with New.
type Breaker struct {
	// word packs the state, the feature bits and the generation: the only
	// thing the closed-state hot path reads. It is written only on a
	// transition, under mu. Permits carry a copy, so Done's fast path need
	// not read the breaker at all. The padding keeps it on a cache line of its
	// own, so that the writes of the failure path do not slow every other
	// core's reads.
	word atomic.Uint64
	_    [56]byte

	// retryAt is when an open breaker goes half_open, so that rejecting
	// while open needs no lock. Written under mu; math.MaxInt64 when forced
	// open.
	retryAt atomic.Int64

	name     string
	s        Settings // under mu: SetSettings replaces it
	clk      clock.Clock
	epoch    time.Time // time zero of every int64 time below
	log      *slog.Logger
	timed    bool // under mu; slow-call threshold on: permits carry a start time
	windowed bool // under mu; a rate threshold on: closed-state outcomes are counted

	// timeout is Settings.Timeout, read by Call without the lock.
	timeout atomic.Int64

	// From the settings, in nanoseconds; changed only under mu.
	window, resetTimeout, halfOpenTimeout, slowCall int64

	mu               sync.Mutex
	state            State
	gen              uint64
	forced           bool // opened by ForceOpen: stays open until Reset
	failures         failureRing
	calls            callWindow
	lastFailure      string
	openedAt         int64
	probing          bool  // a probe was admitted in this half-open period
	halfOpenSince    int64 // when the first probe was admitted
	probes           int   // probes in flight
	successes        int   // probe successes in this half-open period
	transitions      uint64
	listeners        []func(Transition)   // replaced, never modified in place
	failureListeners []func(FailureEvent) // replaced, never modified in place
	changedAt        int64                // when the state last changed, or the breaker was reset
	origin           string               // the peer that caused the transition being made
	queue, spare     []Transition         // transitions not yet told to listeners
	draining         bool                 // a goroutine is telling listeners
}

// The layout of Breaker.word and Permit.word: generation<<genShift |
// windowedBit | timedBit | state.
const (
	stateMask   = 1<<2 - 1
	timedBit    = 1 << 2 // the slow-call threshold is on: Allow reads the clock
	windowedBit = 1 << 3 // a rate threshold is on: Done counts every outcome
	genShift    = 4
)

// sameGeneration reports whether a permit's word was granted in the
// breaker's current generation. The feature bits are left out: SetSettings
// may change them without starting a new generation.
func sameGeneration(p, w uint64) bool { return (p^w)&^(timedBit|windowedBit) == 0 }

// Permit is the leave to make one call, handed back to Done with the
// call's outcome. It is a small value; copy it freely. The zero Permit was
// never granted, and Done ignores it.
type Permit struct {
	word  uint64 // the breaker's state and generation when granted
	start int64  // when granted, only if the slow-call threshold is on
}

// New returns a closed breaker called name. Zero fields of s take their
// defaults; a bad value is reported by Settings.Validate's error, keyed by
// its configuration name.
func New(name string, s Settings, opts ...Option) (*Breaker, error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	o := options{clock: clock.Real}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	b := &Breaker{
		name:             name,
		s:                s,
		clk:              o.clock,
		epoch:            o.clock.Now(),
		log:              o.logger,
		timed:            s.SlowCallDuration > 0,
		windowed:         s.SlowCallDuration > 0 || s.FailureRateThreshold > 0,
		window:           int64(s.WindowSize),
		resetTimeout:     int64(s.ResetTimeout),
		halfOpenTimeout:  int64(s.HalfOpenTimeout),
		slowCall:         int64(s.SlowCallDuration),
		failures:         newFailureRing(s.FailureThreshold),
		calls:            newCallWindow(int64(s.WindowSize)),
		listeners:        o.listeners,
		failureListeners: o.failures,
	}
	b.timeout.Store(int64(s.Timeout))
	// Generations start at 1 so that the zero Permit is always stale.
	b.setState(Closed, 0)
	return b, nil
}

// Name returns the name the breaker was made with.
func (b *Breaker) Name() string { return b.name }

// Settings returns the effective settings, defaults applied.
func (b *Breaker) Settings() Settings {
	b.mu.Lock()
	s := b.s
	b.mu.Unlock()
	return s
}

// OnStateChange adds fn to the listeners told of every transition. See
// Transition for when and how they are called. A nil fn is ignored.
func (b *Breaker) OnStateChange(fn func(Transition)) {
	if fn == nil {
		return
	}
	b.mu.Lock()
	ls := make([]func(Transition), len(b.listeners), len(b.listeners)+1)
	copy(ls, b.listeners)
	b.listeners = append(ls, fn)
	b.mu.Unlock()
}

// Allow asks leave to make one call. On success the caller must make the
// call and then report it with Done, exactly once. While open it returns
// ErrOpen; while half-open with every probe slot taken, ErrTooManyProbes.
//
// In the closed state (rate thresholds off) Allow is a single atomic load.
// Allow and Done are shaped to fit the compiler's inlining budget, which is
// worth more than their looks: check with -gcflags=-m after changing them.
func (b *Breaker) Allow() (p Permit, err error) {
	if p.word = b.word.Load(); p.word&(stateMask|timedBit) != 0 {
		err = b.allowSlow(&p)
	}
	return
}

// allowSlow decides what Allow could not from the word alone; p holds
// the word Allow read, and is filled in on success.
func (b *Breaker) allowSlow(p *Permit) error {
	now := b.now()
	switch State(p.word & stateMask) {
	case Closed:
		p.start = now
		return nil
	case Open:
		if now < b.retryAt.Load() {
			*p = Permit{}
			return ErrOpen
		}
	}
	b.mu.Lock()
	// Read again under the lock, so that transitions carry times in the
	// order they happen.
	now = b.now()
	b.advance(now)
	*p = Permit{}
	var err error
	switch b.state {
	case Closed:
		*p = Permit{word: b.word.Load(), start: now}
	case Open:
		err = ErrOpen
	case HalfOpen:
		if b.probes+b.successes >= b.s.SuccessThreshold {
			err = ErrTooManyProbes
			break
		}
		if !b.probing {
			b.probing, b.halfOpenSince = true, now
		}
		b.probes++
		*p = Permit{word: b.word.Load(), start: now}
	}
	b.unlockAndNotify()
	return err
}

// Done reports the outcome of the call p was granted for. reason, which
// may be nil, is kept as the text of the last failure. A permit granted
// before the breaker last changed state (or was reset) is stale: its
// outcome is not counted, since it says nothing about the new period.
//
// Reporting success or neutral in the closed state (rate thresholds off)
// touches no shared memory at all.
func (b *Breaker) Done(p Permit, o Outcome, reason error) {
	if p.word&(stateMask|windowedBit) != uint64(Closed) || (o != Success && o != Neutral) {
		b.doneSlow(p, o, reason)
	}
}

func (b *Breaker) doneSlow(p Permit, o Outcome, reason error) {
	if o == Neutral && p.word&stateMask == uint64(Closed) {
		return // counted neither way, and holds no probe slot
	}
	failed := o != Success && o != Neutral
	var text string
	if failed && reason != nil {
		// Outside the lock: Error is the caller's code.
		text = reason.Error()
	}
	b.mu.Lock()
	now := b.now()
	b.advance(now)
	var fls []func(FailureEvent)
	if sameGeneration(p.word, b.word.Load()) {
		switch b.state {
		case Closed:
			if failed {
				fls = b.failureListeners
			}
			b.recordClosed(now, p, failed, text)
		case HalfOpen:
			b.recordProbe(now, p, o, failed, text)
		}
	}
	if len(fls) > 0 {
		b.unlockTellFailure(fls, FailureEvent{Breaker: b.name, At: b.at(now), Reason: text})
		return
	}
	b.unlockAndNotify()
}

// Call runs fn if the breaker allows it, with a context bounded by the
// Timeout setting, and reports the outcome: a nil error is a Success; an
// error after ctx itself ended, or one marked with MarkNeutral, is Neutral;
// any other error, including the breaker's own deadline passing, is a
// Failure. It returns fn's error unchanged, or ErrOpen / ErrTooManyProbes
// without calling fn, or ctx's error if ctx has already ended.
//
// Call allocates for the timeout context; Allow and Done do not.
func (b *Breaker) Call(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := b.Allow()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Duration(b.timeout.Load()))
	reported := false
	defer func() {
		cancel()
		if !reported {
			// fn panicked: the downstream call did not complete, and the
			// permit (perhaps a probe slot) must not be lost.
			b.Done(p, Failure, errPanicked)
		}
	}()
	err = fn(cctx)
	reported = true
	b.Done(p, classify(ctx, err), err)
	return err
}

var errPanicked = errors.New("call panicked")

func classify(ctx context.Context, err error) Outcome {
	switch {
	case err == nil:
		return Success
	case ctx.Err() != nil, IsNeutral(err):
		return Neutral
	}
	return Failure
}

// State returns the current state, first making any transition that time
// has brought about (open to half_open after reset_timeout, half_open back
// to open after half_open_timeout).
func (b *Breaker) State() State {
	w := b.word.Load()
	switch State(w & stateMask) {
	case Closed:
		return Closed
	case Open:
		if b.now() < b.retryAt.Load() {
			return Open
		}
	}
	b.mu.Lock()
	b.advance(b.now())
	s := b.state
	b.unlockAndNotify()
	return s
}

// Snapshot describes the breaker now, after any transition time has
// brought about.
type Snapshot struct {
	Name         string
	State        State
	FailureCount int     // failures within the window
	SuccessCount int     // probe successes in the current half-open period; 0 otherwise
	Calls        int     // calls within the window when a rate threshold is on; else 0
	FailureRate  float64 // share of Calls that failed
	SlowCallRate float64 // share of Calls slower than SlowCallDuration
	OpenedAt     time.Time
	// RetryAt is when an open breaker goes half_open; zero when it is not
	// open, or was forced open.
	RetryAt     time.Time
	LastFailure string // reason given with the last failure counted
	Transitions uint64 // state changes since New
}

// Snapshot returns the breaker's state and counts.
func (b *Breaker) Snapshot() Snapshot {
	b.mu.Lock()
	now := b.now()
	b.advance(now)
	s := Snapshot{
		Name:         b.name,
		State:        b.state,
		FailureCount: b.failures.count(now, b.window),
		LastFailure:  b.lastFailure,
		Transitions:  b.transitions,
	}
	if b.windowed {
		c := b.calls.sum(now)
		s.Calls, s.FailureRate, s.SlowCallRate = c.calls, c.failureRate(), c.slowRate()
	}
	switch b.state {
	case HalfOpen:
		s.SuccessCount = b.successes
		s.OpenedAt = b.at(b.openedAt)
	case Open:
		s.OpenedAt = b.at(b.openedAt)
		if !b.forced {
			s.RetryAt = b.at(b.retryAt.Load())
		}
	}
	b.unlockAndNotify()
	return s
}

// Reset closes the breaker and forgets every count, as if new. Calls in
// flight when it is reset are not counted when they are reported.
func (b *Breaker) Reset() {
	b.mu.Lock()
	now := b.now()
	b.advance(now)
	if b.state == Closed {
		b.clearCounts()
		b.setState(Closed, now)
	} else {
		b.toClosed(now, ReasonReset)
	}
	b.unlockAndNotify()
}

// ForceOpen opens the breaker now and keeps it open, rejecting every call,
// until Reset: no reset_timeout, no probes.
func (b *Breaker) ForceOpen() {
	b.mu.Lock()
	now := b.now()
	b.advance(now)
	if b.state != Open {
		b.toOpen(now, true, ReasonForcedOpen)
	} else {
		b.forced = true
		b.retryAt.Store(math.MaxInt64)
	}
	b.unlockAndNotify()
}

// now is the breaker's clock in nanoseconds since New. Using durations
// from one epoch keeps the real clock's monotonic reading.
func (b *Breaker) now() int64 { return int64(b.clk.Now().Sub(b.epoch)) }

// at turns a breaker time back into a time.Time (without the monotonic
// reading, which means nothing to a reader).
func (b *Breaker) at(t int64) time.Time { return b.epoch.Add(time.Duration(t)).Round(0) }
