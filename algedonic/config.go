package algedonic

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vsm-relay/relay/clock"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// Config configures an Emitter. The zero value of each field means the
// default noted beside it. It is also the `algedonic` section of the
// relay's configuration file, which decodes into it key by key
// (pain_exchange, pleasure_exchange, coalesce, buffer).
type Config struct {
	// PainExchange receives pain events. Zero: "vsm.algedonic.pain".
	PainExchange string
	// PleasureExchange receives pleasure events. Zero:
	// "vsm.algedonic.pleasure".
	PleasureExchange string
	// Coalesce is the window within which repeated pain of a coalesced
	// kind is only counted. Zero: never coalesce, every event is sent, as
	// the configuration file's "coalesce: 0s" promises. The default file
	// sets DefaultCoalesce.
	Coalesce time.Duration
	// Buffer is how many events wait for the broker at most; beyond it the
	// oldest is dropped. Zero: 1000.
	Buffer int
	// Instance is written into every event that does not carry one. Zero:
	// left empty. It is not a key of the file's algedonic section: the
	// relay's configuration fills it from the top-level instance.
	Instance string `config:"-"`
}

// Defaults of the zero-valued fields, and DefaultCoalesce, the window the
// relay's default configuration file sets (a zero Coalesce stays zero).
const (
	DefaultPainExchange     = "vsm.algedonic.pain"
	DefaultPleasureExchange = "vsm.algedonic.pleasure"
	DefaultCoalesce         = 10 * time.Second
	DefaultBuffer           = 1000
)

// WithDefaults returns c with every zero field set to its default. A zero
// Coalesce is left zero: it means "never coalesce", not "the default".
func (c Config) WithDefaults() Config {
	if c.PainExchange == "" {
		c.PainExchange = DefaultPainExchange
	}
	if c.PleasureExchange == "" {
		c.PleasureExchange = DefaultPleasureExchange
	}
	if c.Buffer == 0 {
		c.Buffer = DefaultBuffer
	}
	return c
}

// Validate reports every bad value keyed by its configuration name
// (coalesce, buffer).
func (c Config) Validate() error {
	var l fielderr.List
	if c.Coalesce < 0 {
		l.Addf("coalesce", "must not be negative, got %s", c.Coalesce)
	}
	if c.Buffer < 0 {
		l.Addf("buffer", "must not be negative, got %d", c.Buffer)
	}
	return l.Err()
}

// Kind names a (source, event) pair, the unit coalescing is configured by.
type Kind struct {
	Source, Event string
}

// DefaultCoalesced returns the kinds the contract coalesces: bulkhead
// rejections, dead-lettered tasks and exhausted retry budgets, the kinds
// of pain that come in storms during an outage.
func DefaultCoalesced() []Kind {
	return []Kind{
		{Source: SourceBulkhead, Event: EventRejected},
		{Source: SourceQueue, Event: EventDeadLettered},
		{Source: SourceTarget, Event: EventRetryBudgetExhausted},
	}
}

type options struct {
	clock          clock.Clock
	logger         *slog.Logger
	reg            prometheus.Registerer
	coalesced      []Kind
	publishTimeout time.Duration
}

// Option tunes an Emitter.
type Option func(*options)

// WithClock sets the time source of event times and coalescing windows.
// Default: clock.Real.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger every event goes to. Default: a logger that
// discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer sets where the emitter's metrics are registered. Default:
// nowhere (the metrics still count, for tests).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithCoalesced replaces the set of coalesced kinds (default:
// DefaultCoalesced). With no kinds, nothing is coalesced; with a zero
// Config.Coalesce, nothing is coalesced whatever the kinds.
func WithCoalesced(kinds ...Kind) Option {
	return func(o *options) { o.coalesced = append([]Kind{}, kinds...) }
}

// WithPublishTimeout bounds one publish attempt, so that a broker that
// never confirms (for example while it blocks publishers) cannot stall the
// delivery loop: the attempt fails and is retried. Default: 10s.
func WithPublishTimeout(d time.Duration) Option {
	return func(o *options) { o.publishTimeout = d }
}

// DefaultPublishTimeout is the default of WithPublishTimeout.
const DefaultPublishTimeout = 10 * time.Second
