// Package backlog keeps the relay's view of its queues' depths: how many
// ready messages each holds, read from the broker at a bounded rate, for
// relay_queue_backlog{queue}, the number to autoscale on. A queue whose
// intake an open breaker holds reads as 0, so that an outage does not add
// replicas that would only wait.
package backlog

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Interval bounds.
const (
	DefaultInterval = 5 * time.Second
	// MinInterval is the shortest interval: each read is a passive
	// declare the broker answers on the queue's own process.
	MinInterval = time.Second
)

// Depther reads a queue's depth (a *broker.Inspector).
type Depther interface {
	QueueDepth(ctx context.Context, queue string) (messages, consumers int, err error)
}

// Option changes how NewPoller builds a Poller.
type Option func(*Poller)

// WithLogger sets the logger of failed reads. Default: one that discards.
func WithLogger(l *slog.Logger) Option {
	return func(p *Poller) {
		if l != nil {
			p.log = l
		}
	}
}

// Poller reads the depth of each of its queues every interval and reports
// it. Run does the reading; the functions it is given are called from
// Run's goroutine only.
type Poller struct {
	d        Depther
	queues   []string
	interval time.Duration
	held     func(queue string) bool
	set      func(queue string, ready int)
	log      *slog.Logger
}

// NewPoller returns a poller of queues through d. interval is the pause
// between two rounds of reads (zero: DefaultInterval; at least
// MinInterval). Each round, for each queue, set receives 0 when held
// reports its intake held by an open breaker (nil: never held), and its
// ready messages otherwise; a queue whose depth cannot be read keeps its
// last value.
func NewPoller(d Depther, queues []string, interval time.Duration, held func(queue string) bool, set func(queue string, ready int), opts ...Option) (*Poller, error) {
	if d == nil {
		return nil, errors.New("backlog: the poller needs a depth reader")
	}
	if set == nil {
		return nil, errors.New("backlog: the poller needs a set function")
	}
	if held == nil {
		held = func(string) bool { return false }
	}
	if interval == 0 {
		interval = DefaultInterval
	}
	p := &Poller{
		d: d, queues: append([]string(nil), queues...), interval: max(interval, MinInterval),
		held: held, set: set, log: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		if o != nil {
			o(p)
		}
	}
	return p, nil
}

// Interval is the pause between two rounds of reads.
func (p *Poller) Interval() time.Duration { return p.interval }

// Run reads every queue at once, then again each interval after the
// previous round ended, so that no queue is read twice within an interval
// however long the broker takes to answer; each read waits at most an
// interval. It returns nil when ctx ends. A read that fails is logged
// when a queue's reads start failing and when they recover, not every
// round.
func (p *Poller) Run(ctx context.Context) error {
	failing := make(map[string]bool, len(p.queues))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		for _, q := range p.queues {
			if ctx.Err() != nil {
				return nil
			}
			p.read(ctx, q, failing)
		}
		timer.Reset(p.interval)
	}
}

// read reads q's depth and reports it, unless q is held (before or after
// the read), which reports 0 and skips the read.
func (p *Poller) read(ctx context.Context, q string, failing map[string]bool) {
	if p.held(q) {
		p.set(q, 0)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, p.interval)
	ready, _, err := p.d.QueueDepth(rctx, q)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if !failing[q] {
			failing[q] = true
			p.log.Warn("queue depth unreadable; relay_queue_backlog keeps its last value", "queue", q, "error", err)
		}
		return
	}
	if failing[q] {
		delete(failing, q)
		p.log.Info("queue depth readable again", "queue", q)
	}
	if p.held(q) {
		ready = 0
	}
	p.set(q, ready)
}
