package relay

import (
	"errors"
	"fmt"

	"github.com/vsm-relay/relay/admin"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/intake"
)

// controls are the operator's controls of the admin endpoints: the relay's
// breakers and queues, and reload.
type controls struct{ r *Relay }

var _ admin.Controls = controls{}

func (c controls) OpenBreaker(name string) error {
	b := c.r.breaker(name)
	if b == nil {
		return fmt.Errorf("%w: no breaker named %q", admin.ErrNotFound, name)
	}
	c.r.log.Warn("operator: breaker forced open", "breaker", name, "by", algedonic.ByOperator)
	b.ForceOpen()
	return nil
}

func (c controls) CloseBreaker(name string) error {
	b := c.r.breaker(name)
	if b == nil {
		return fmt.Errorf("%w: no breaker named %q", admin.ErrNotFound, name)
	}
	c.r.log.Warn("operator: breaker closed and its counts cleared", "breaker", name, "by", algedonic.ByOperator)
	b.Reset()
	return nil
}

func (c controls) PauseQueue(queue string) error { return c.r.pauseQueue(queue, true) }

func (c controls) ResumeQueue(queue string) error { return c.r.pauseQueue(queue, false) }

func (c controls) Reload() ([]string, error) {
	problems, err := c.r.Reload()
	if errors.Is(err, ErrReloadRefused) {
		return problems, nil
	}
	return problems, err
}

// pauseQueue holds or releases a queue's intake for an operator, as an
// open breaker holds it: its tasks wait in the broker.
func (r *Relay) pauseQueue(name string, pause bool) error {
	q := r.queue(name)
	if q == nil {
		return fmt.Errorf("%w: no queue named %q", admin.ErrNotFound, name)
	}
	r.mu.Lock()
	gate := q.gate
	if gate != nil {
		r.paused[name] = pause
	}
	r.mu.Unlock()
	if gate == nil {
		return fmt.Errorf("queue %s is not consumed yet", name)
	}
	was := gate.Holds()&intake.HoldOperator != 0
	gate.Set(intake.HoldOperator, pause)
	if was == pause {
		return nil
	}
	if pause {
		r.log.Warn("operator: queue intake paused", "queue", name, "by", algedonic.ByOperator)
		r.emit(algedonic.QueuePaused(name))
	} else {
		r.log.Warn("operator: queue intake resumed", "queue", name, "by", algedonic.ByOperator)
		r.emit(algedonic.QueueResumed(name))
	}
	return nil
}
