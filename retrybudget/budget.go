package retrybudget

import (
	"strconv"
	"sync"
	"time"

	"github.com/vsm-relay/relay/clock"
)

// numBuckets splits the window. The current bucket is partly filled, so
// the window covers between 9/10 of Settings.Window and all of it, and
// slides in steps of a tenth (as Finagle's and Envoy's budgets do).
const numBuckets = 10

// Budget is one target's retry budget. Every first attempt of a call is
// recorded with Call; each in-process retry must first be granted by
// TryRetry. It is safe for concurrent use; Call and TryRetry take a mutex,
// read the clock once and allocate nothing.
type Budget struct {
	clk     clock.Clock
	epoch   time.Time
	s       Settings
	width   int64   // of one bucket, in nanoseconds
	reserve float64 // MinPerSecond retries for each second of the window

	mu      sync.Mutex
	cur     int64 // the interval the clock was last in
	buckets [numBuckets]bucket
}

type bucket struct {
	idx                    int64 // which interval of width the counts are for
	calls, retries, denied int
}

// Option changes how New builds a Budget.
type Option func(*options)

type options struct{ clock clock.Clock }

// WithClock makes the budget read time from c instead of clock.Real. A nil
// c is ignored.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

// New returns an empty budget. Zero fields of s take their defaults; bad
// values are reported by Settings.Validate's error.
func New(s Settings, opts ...Option) (*Budget, error) {
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
	return &Budget{
		clk:     o.clock,
		epoch:   o.clock.Now(),
		s:       s,
		width:   max(int64(s.Window)/numBuckets, 1),
		reserve: s.MinPerSecond * s.Window.Seconds(),
	}, nil
}

// Settings returns the effective settings, defaults applied.
func (b *Budget) Settings() Settings { return b.s }

// Call records a call's first attempt: it adds Ratio of a retry to the
// budget for the next Window.
func (b *Budget) Call() {
	b.mu.Lock()
	b.current().calls++
	b.mu.Unlock()
}

// TryRetry withdraws one retry from the budget and reports whether it
// could: false when the window's retries already reach Ratio of its calls
// plus MinPerSecond per second of it. The caller must then not retry in
// process (the relay takes the task's next redelivery step instead).
func (b *Budget) TryRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.current()
	calls, retries, _ := b.sum()
	if float64(retries+1) > b.s.Ratio*float64(calls)+b.reserve {
		c.denied++
		return false
	}
	c.retries++
	return true
}

// Snapshot is a budget's counts within its window.
type Snapshot struct {
	Calls   int // first attempts recorded
	Retries int // retries granted
	Denied  int // retries refused
	// Left is how many more retries would be granted now; at least 0.
	Left int
}

// DeniedShare is the share of the window's calls whose retry was refused,
// in [0, 1]: the intensity of the pain of a spent budget.
func (s Snapshot) DeniedShare() float64 {
	if s.Calls == 0 {
		if s.Denied > 0 {
			return 1
		}
		return 0
	}
	return min(1, float64(s.Denied)/float64(s.Calls))
}

// Reason says in words why a retry is refused, for logs and events:
// "retry budget spent: 32 retries for 110 calls within 10s".
func (s Snapshot) Reason(window time.Duration) string {
	return "retry budget spent: " + strconv.Itoa(s.Retries) + " retries for " +
		strconv.Itoa(s.Calls) + " calls within " + window.String()
}

// Snapshot returns the counts within the window now.
func (b *Budget) Snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.current()
	calls, retries, denied := b.sum()
	left := int(b.s.Ratio*float64(calls) + b.reserve - float64(retries))
	return Snapshot{Calls: calls, Retries: retries, Denied: denied, Left: max(0, left)}
}

// current returns the bucket of now, emptied if it last held an older
// interval, and keeps the clock's interval in b.cur for sum. b.mu is held.
func (b *Budget) current() *bucket {
	i := floorDiv(int64(b.clk.Now().Sub(b.epoch)), b.width)
	b.cur = i
	c := &b.buckets[floorMod(i, numBuckets)]
	if c.idx != i {
		*c = bucket{idx: i}
	}
	return c
}

// sum adds up the buckets of the window ending in interval b.cur. b.mu is
// held.
func (b *Budget) sum() (calls, retries, denied int) {
	for i := range b.buckets {
		c := &b.buckets[i]
		if c.idx <= b.cur && c.idx > b.cur-numBuckets {
			calls += c.calls
			retries += c.retries
			denied += c.denied
		}
	}
	return calls, retries, denied
}

// floorDiv and floorMod round toward minus infinity, so that a clock set
// back before the epoch still lands in distinct buckets.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
