package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/client"
	"golang.org/x/time/rate"
)

// Agent is an operational unit (System 1) in the spirit of the seed's
// ExampleAgent: it protects its own in-process work with a bulkhead and
// a circuit breaker, hands the downstream call to the relay, and listens
// to the relay's algedonic signals to slow itself while its target
// hurts.
type Agent struct {
	c      *client.Client
	queue  string
	target string // the relay's breaker in front of our downstream
	events client.Exchanges
	log    *slog.Logger

	// work bounds how many tasks the agent handles at once, so that a
	// flood of jobs queues here instead of taking every goroutine.
	work *bulkhead.Bulkhead
	// prepare guards the agent's own fragile step: a local model, a
	// cache, a file system. When it keeps failing the agent stops trying
	// for a while instead of piling up timeouts.
	prepare *breaker.Breaker
	// Prepare is that step: it turns a job into the task's body.
	Prepare func(ctx context.Context, job string) ([]byte, error)

	// pace spaces the agent's calls to the relay: Normal while the
	// target is well, Slow while its breaker is open.
	pace         *rate.Limiter
	Normal, Slow rate.Limit

	mu    sync.Mutex
	hurts bool // the target's breaker is open, as last heard
}

// Settings of a new Agent.
type Settings struct {
	Queue  string // the relay's work queue for our downstream
	Target string // the breaker that guards it in the relay
	Normal rate.Limit
	Slow   rate.Limit
	Log    *slog.Logger
	// Events names the relay's event exchanges when its configuration
	// renamed them.
	Events client.Exchanges
}

// NewAgent builds an agent on c.
func NewAgent(c *client.Client, s Settings) (*Agent, error) {
	work, err := bulkhead.New("agent_work", bulkhead.Settings{Size: 4, Overflow: 2})
	if err != nil {
		return nil, err
	}
	prepare, err := breaker.New("agent_prepare", breaker.Settings{FailureThreshold: 3, SuccessThreshold: 1})
	if err != nil {
		return nil, err
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		c: c, queue: s.Queue, target: s.Target, events: s.Events, log: log,
		work: work, prepare: prepare,
		Prepare: func(_ context.Context, job string) ([]byte, error) { return []byte(job), nil },
		pace:    rate.NewLimiter(s.Normal, 1),
		Normal:  s.Normal, Slow: s.Slow,
	}, nil
}

// ErrOverloaded is the agent's own pool turning a job away.
var ErrOverloaded = errors.New("agent: overloaded")

// Handle does one job: prepares it in-process, under the agent's pool and
// breaker, and asks the relay to run it against the downstream, paced by
// what the agent last heard of the target.
func (a *Agent) Handle(ctx context.Context, job string) (*client.Reply, error) {
	var reply *client.Reply
	err := a.work.WithResource(ctx, func(bulkhead.Handle) error {
		var body []byte
		if err := a.prepare.Call(ctx, func(ctx context.Context) error {
			var err error
			body, err = a.Prepare(ctx, job)
			return err
		}); err != nil {
			return fmt.Errorf("preparing: %w", err)
		}
		if err := a.pace.Wait(ctx); err != nil {
			return err
		}
		var err error
		reply, err = a.c.Call(ctx, a.queue, body, client.ContentType("application/json"))
		return err
	})
	if errors.Is(err, bulkhead.ErrFull) || errors.Is(err, bulkhead.ErrTimeout) {
		return nil, fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	return reply, err
}

// Listen follows the relay's pain and pleasure about the target's breaker
// until ctx ends.
func (a *Agent) Listen(ctx context.Context, subscribed func()) error {
	err := a.c.Watch(ctx, func(e client.Event) error {
		a.hear(e)
		return nil
	},
		client.WatchKinds(client.Pain, client.Pleasure),
		client.WatchExchanges(a.events),
		client.WatchFilter(func(e client.Event) bool {
			return e.Signal != nil && e.Signal.Source == "breaker" && e.Signal.Name == a.target
		}),
		client.WatchStateFunc(func(s client.WatchState) {
			if s == client.Subscribed && subscribed != nil {
				subscribed()
			}
		}))
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// hear adjusts the pace to one breaker event: an opening slows the agent
// down, a closing restores its pace. The relay already holds the tasks
// while the breaker is open; slowing down spares the broker a backlog
// that would only wait, and the agent's callers their timeouts.
func (a *Agent) hear(e client.Event) {
	if e.Signal == nil || e.Signal.Source != "breaker" || e.Signal.Name != a.target {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch e.Signal.Event {
	case "open":
		if !a.hurts {
			a.log.Warn("target hurts; slowing down", "breaker", a.target, "reason", e.Signal.Reason)
		}
		a.hurts = true
		a.pace.SetLimit(a.Slow)
	case "closed":
		if a.hurts {
			a.log.Info("target recovered; back to pace", "breaker", a.target)
		}
		a.hurts = false
		a.pace.SetLimit(a.Normal)
	}
}

// Hurts reports whether the agent last heard its target's breaker open.
func (a *Agent) Hurts() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hurts
}
