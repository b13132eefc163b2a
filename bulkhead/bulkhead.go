package bulkhead

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/vsm-relay/relay/clock"
)

// Bulkhead is a named pool of Size+Overflow slots. It is safe for
// concurrent use by any number of goroutines; all methods may be called
// at the same time, including Close.
type Bulkhead struct {
	name    string
	clock   clock.Clock
	exact   bool          // stamp every checkout with the clock
	base    time.Time     // hold times are kept as offsets from here
	closing chan struct{} // closed by Close, to wake callers waiting for a rate token

	// admitted counts checkouts that went through a wait or the rate
	// limiter; they finish outside mu. Uncontended checkouts of a pool
	// without a rate limit are counted in counts.checkouts under mu.
	admitted atomic.Uint64

	mu       sync.Mutex
	settings Settings // with defaults applied; SetSettings replaces it
	limiter  *rate.Limiter
	// capacity is Size+Overflow. Slots [0, capacity) are the pool's; slots
	// beyond it are left over from before a shrink, and are never handed
	// out again while beyond it. The table never shrinks, so that a slot's
	// generation, and with it the check of a stale handle, survives any
	// number of resizes.
	capacity int
	free     []int32 // stack of the free slots below capacity
	// retired counts the busy slots at or beyond capacity. Until they are
	// checked in, as many free slots are held back: a pool shrunk below
	// its busy count lends nothing until busy < capacity.
	retired int
	slots   []slot
	queue   waitQueue
	closed  bool
	counts  counters
	recent  recentWindow
}

type slot struct {
	gen   uint32 // odd while checked out
	since int64  // offset from base of the checkout, or unseen
}

type counters struct {
	checkouts           uint64
	rejectedFull        uint64
	rejectedTimeout     uint64
	rejectedRateLimited uint64
	cancelled           uint64
}

// Option adjusts a Bulkhead built by New.
type Option func(*options)

type options struct {
	clock clock.Clock
	exact bool
}

// WithClock sets the clock that hold times and Stats are measured with.
// Waiting (Timeout, rate tokens) always uses the runtime's timers, which
// testing/synctest fakes. Default: clock.Real; nil keeps the default.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

// WithExactHoldTimes makes every checkout read the clock, so that hold
// times run from the checkout itself rather than from the first time
// Stats or Held looked at the slot. It costs one clock read per checkout
// (time.Now is 20 to 60ns depending on the machine), which is more than
// the rest of an uncontended checkout and check-in together.
func WithExactHoldTimes() Option {
	return func(o *options) { o.exact = true }
}

// New builds a bulkhead from s (zero fields take their defaults). It
// returns the problems of s, keyed by configuration name, when s is
// invalid. Nil options are ignored rather than panicking.
func New(name string, s Settings, opts ...Option) (*Bulkhead, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.WithDefaults()
	o := options{clock: clock.Real}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	n := s.Capacity()
	b := &Bulkhead{
		name:     name,
		settings: s,
		clock:    o.clock,
		exact:    o.exact,
		base:     o.clock.Now(),
		closing:  make(chan struct{}),
		capacity: n,
		free:     make([]int32, n),
		slots:    make([]slot, n),
	}
	// Lowest slot on top, so that a lightly used pool keeps to the first
	// slots.
	for i := range b.free {
		b.free[i] = int32(n - 1 - i)
	}
	if s.RateLimit > 0 {
		b.limiter = rate.NewLimiter(rate.Limit(s.RateLimit), burst(s.RateLimit))
	}
	return b, nil
}

// burst is one second's worth of tokens, at least one; it is clamped so
// that an absurd rate cannot overflow an int.
func burst(perSecond float64) int {
	const most = math.MaxInt32
	if perSecond >= most {
		return most
	}
	return max(1, int(math.Ceil(perSecond)))
}

// Name is the bulkhead's name, as given to New.
func (b *Bulkhead) Name() string { return b.name }

// Settings are the bulkhead's settings with defaults applied.
func (b *Bulkhead) Settings() Settings {
	b.mu.Lock()
	s := b.settings
	b.mu.Unlock()
	return s
}

// Checkout takes a slot, waiting in FIFO order behind earlier callers when
// every slot is busy. It fails with ErrFull at once when the wait queue is
// full, ErrTimeout after waiting Settings.Timeout, ErrRateLimited when a
// rate token would come too late, ErrClosed after Close, and with an
// error that unwraps to ctx.Err() when ctx ends while it waits. ctx only
// bounds waiting: a free slot is handed out even if ctx is already done.
//
// Every successful Checkout must be followed by exactly one Checkin of the
// returned handle; WithResource does that for you.
func (b *Bulkhead) Checkout(ctx context.Context) (Handle, error) {
	since := unseen
	if b.exact {
		since = b.offset(b.clock.Now())
	}
	b.mu.Lock()
	if n := len(b.free); n > b.retired && b.queue.len == 0 && !b.closed {
		i := b.free[n-1]
		b.free = b.free[:n-1]
		h := b.take(i, since)
		lim := b.limiter
		if lim == nil {
			b.counts.checkouts++
			b.countLocked(false)
			b.mu.Unlock()
			return h, nil
		}
		timeout := b.settings.Timeout
		b.mu.Unlock()
		return b.admit(ctx, lim, h, time.Time{}, timeout)
	}
	return b.wait(ctx) // unlocks b.mu
}

// Checkin returns a slot. It refuses, with ErrBadCheckin, a handle that
// was already checked in, the zero Handle, and handles of other pools.
func (b *Bulkhead) Checkin(h Handle) error {
	if h.b != b {
		return ErrBadCheckin
	}
	b.mu.Lock()
	if b.slots[h.slot].gen != h.gen {
		b.mu.Unlock()
		return ErrBadCheckin
	}
	b.releaseLocked(h.slot)
	b.mu.Unlock()
	return nil
}

// WithResource checks out a slot, runs fn with it and checks it in, also
// when fn panics (the panic then goes on up). It returns the checkout's
// rejection, else fn's error, else ErrBadCheckin if fn checked the handle
// in itself.
func (b *Bulkhead) WithResource(ctx context.Context, fn func(Handle) error) (err error) {
	h, err := b.Checkout(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := b.Checkin(h); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(h)
}

// Close turns away every later checkout with ErrClosed and wakes every
// waiting caller with ErrClosed. Slots still held may be checked in as
// usual. Close may be called more than once.
func (b *Bulkhead) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	close(b.closing)
	for w := b.queue.pop(); w != nil; w = b.queue.pop() {
		w.err = ErrClosed
		close(w.ready)
	}
}

// take marks free slot i checked out. b.mu must be held.
func (b *Bulkhead) take(i int32, since int64) Handle {
	s := &b.slots[i]
	s.gen++
	s.since = since
	return Handle{b: b, slot: i, gen: s.gen}
}

// releaseLocked checks slot i in and hands a slot straight to the longest
// waiter, if any may have one, so that nobody arriving later can take it
// first. b.mu must be held.
func (b *Bulkhead) releaseLocked(i int32) {
	b.slots[i].gen++
	if int(i) < b.capacity {
		b.free = append(b.free, i)
	} else {
		b.retired--
	}
	if b.queue.len > 0 {
		b.handOutLocked()
	}
}

// handOutLocked gives free slots to the longest waiters for as long as
// the pool may lend them. b.mu must be held.
func (b *Bulkhead) handOutLocked() {
	for b.queue.len > 0 && len(b.free) > b.retired {
		n := len(b.free)
		i := b.free[n-1]
		b.free = b.free[:n-1]
		since := unseen
		if b.exact {
			since = b.offset(b.clock.Now())
		}
		w := b.queue.pop()
		w.h = b.take(i, since)
		w.lim = b.limiter
		close(w.ready)
	}
}

// giveUp checks in a handle its caller never received (the wait ended as
// the slot arrived, or no rate token came) and counts why; rejected says
// whether the pool turned the caller away (rather than the caller giving
// up).
func (b *Bulkhead) giveUp(h Handle, count *uint64, rejected bool) {
	b.mu.Lock()
	b.releaseLocked(h.slot)
	if count != nil {
		*count++
	}
	if rejected {
		b.foldLocked()
		b.countLocked(true)
	}
	b.mu.Unlock()
}

// cancelled records and wraps the caller's context ending.
func (b *Bulkhead) cancelled(err error) error {
	return &cancelledError{pool: b.name, err: err}
}
