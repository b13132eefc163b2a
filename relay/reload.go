package relay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// ErrReloadRefused is the error of a reload whose configuration is
// invalid: the running configuration stays.
var ErrReloadRefused = errors.New("configuration reload refused")

// Reload reads the configuration again from the relay's source and applies
// it while tasks are in flight. An invalid configuration is refused whole:
// it returns every problem and ErrReloadRefused, logs them and publishes a
// config.reload.refused pain event, and the running configuration stays.
// A valid one takes effect without a restart: breakers whose names stay
// keep their state and counts, pools are resized in place, targets,
// backoff, signal and health settings apply from the next task on, added
// queues start, removed queues stop and drain (a queue whose entry
// changed does both), breakers join or leave the fleet as their share
// says. The broker connections, http.listen and instance
// are read at start only; a change to them is logged and waits for a
// restart.
func (r *Relay) Reload() (problems []string, err error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if r.source == nil {
		return nil, errors.New("relay: no configuration source to reload from")
	}
	if !r.consuming.Load() || r.stop.Err() != nil {
		return nil, errors.New("relay: not running")
	}
	cfg, err := r.source.Load()
	if err == nil {
		err = r.apply(cfg)
	}
	if err != nil {
		problems = fielderr.Lines(err)
		for _, p := range problems {
			r.log.Error("configuration reload refused", "problem", p)
		}
		r.emit(algedonic.ReloadRefused(problems))
		return problems, fmt.Errorf("%w: %s", ErrReloadRefused, problems[0])
	}
	return nil, nil
}

// apply makes cfg the running configuration. It builds everything new
// first and changes nothing when any of it fails.
func (r *Relay) apply(cfg *config.Config) error {
	old := r.config()
	var changes []string
	note := func(format string, args ...any) { changes = append(changes, fmt.Sprintf(format, args...)) }

	// Everything that can fail, before anything changes.
	for name, s := range cfg.Breakers {
		if err := s.WithDefaults().Validate(); err != nil {
			return fmt.Errorf("breakers.%s: %w", name, err)
		}
	}
	for name, s := range cfg.Bulkheads {
		if err := s.WithDefaults().Validate(); err != nil {
			return fmt.Errorf("bulkheads.%s: %w", name, err)
		}
	}
	ac := cfg.Algedonic
	ac.Instance = cfg.Instance
	if err := ac.WithDefaults().Validate(); err != nil {
		return err
	}
	hc := cfg.Health
	hc.Instance = cfg.Instance
	if err := hc.WithDefaults().Validate(); err != nil {
		return err
	}
	for name, tc := range cfg.Targets {
		if _, err := tc.ExpandedHeaders(r.env); err != nil {
			return fmt.Errorf("targets.%s.headers: %w", name, err)
		}
	}
	for _, what := range restartOnly(old, cfg) {
		r.log.Warn("a changed setting waits for a restart", "key", what)
		note("%s changed: takes effect at the next restart", what)
	}
	// The instance id names this relay's broker connections and its fleet
	// queue, and its events: it stays what it was until the restart.
	cfg.Instance = old.Instance

	r.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(cfg.Breakers)) {
		s := cfg.Breakers[name]
		if b := r.breakers[name]; b != nil {
			if b.Settings() != s.WithDefaults() {
				if err := b.SetSettings(s); err != nil {
					r.mu.Unlock()
					return fmt.Errorf("breakers.%s: %w", name, err)
				}
				note("breaker %s: settings changed, state kept", name)
			}
			continue
		}
		if err := r.addBreaker(name, s); err != nil {
			r.mu.Unlock()
			return err
		}
		note("breaker %s added", name)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Bulkheads)) {
		s := cfg.Bulkheads[name]
		if b := r.bulkheads[name]; b != nil {
			if b.Settings() != s.WithDefaults() {
				if err := b.SetSettings(s); err != nil {
					r.mu.Unlock()
					return fmt.Errorf("bulkheads.%s: %w", name, err)
				}
				note("bulkhead %s: resized in place", name)
			}
			continue
		}
		b, err := bulkhead.New(name, s)
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("bulkheads.%s: %w", name, err)
		}
		r.bulkheads[name] = b
		note("bulkhead %s added", name)
	}
	targets, err := r.buildTargets(cfg, r.targets)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	if !reflect.DeepEqual(old.Targets, cfg.Targets) || !reflect.DeepEqual(old.Backoff, cfg.Backoff) {
		note("targets and backoff policies apply from the next task on")
	}
	r.targets = targets

	// Queues: one whose entry stays keeps running with its target's new
	// settings; the others are retired, and the new entries started.
	wanted := map[string]*queue{}
	var order []*queue
	for _, w := range cfg.Work {
		q := r.newWorkQueue(cfg, w)
		wanted[q.name], order = q, append(order, q)
	}
	for _, o := range cfg.Outbound {
		q := r.newOutboundQueue(o)
		wanted[q.name], order = q, append(order, q)
	}
	var retire, start []*queue
	running := map[string]*queue{}
	for _, q := range r.queues {
		w := wanted[q.name]
		if q.consumer == nil {
			continue // never started (its start failed): start it anew
		}
		if w != nil && reflect.DeepEqual(w.entry, q.entry) {
			running[q.name] = q
			if q.work != nil {
				q.work.SetTarget(targets[q.entry.(workEntry).Target])
			}
			continue
		}
		retire = append(retire, q)
	}
	var queues []*queue
	for _, q := range order {
		if keep := running[q.name]; keep != nil {
			queues = append(queues, keep)
			continue
		}
		queues = append(queues, q)
		start = append(start, q)
	}
	r.queues = queues
	r.cfg = cfg
	r.mu.Unlock()

	if err := r.emitter.SetConfig(ac); err != nil {
		r.log.Warn("algedonic settings not applied", "err", err.Error())
	}
	if err := r.monitor.SetConfig(hc); err != nil {
		r.log.Warn("health settings not applied", "err", err.Error())
	}
	for _, q := range retire {
		note("queue %s stopped and draining", q.name)
		r.retire(q)
		if wanted[q.name] == nil {
			r.metrics.ForgetQueue(q.name)
		}
	}
	if len(start) > 0 {
		// Declare the new queues on both connections before consuming.
		ctx, cancel := context.WithTimeout(r.stop, cfg.AMQP.ConnectTimeout)
		defer cancel()
		for _, c := range r.brokerConns() {
			if err := c.Redeclare(ctx); err != nil {
				r.log.Error("declaring the reloaded topology failed", "connection", c.Name(), "err", err.Error())
			}
		}
		for _, q := range start {
			if err := r.startQueue(ctx, q); err != nil {
				// The configuration is valid; the broker refused. The
				// queue starts on the next reload or restart.
				r.log.Error("starting a reloaded queue failed", "queue", q.name, "err", err.Error())
				note("queue %s failed to start: %v", q.name, err)
				continue
			}
			note("queue %s started", q.name)
		}
	}
	if len(start) > 0 || len(retire) > 0 {
		// relay_queue_backlog follows the queues now running, each with
		// its own intake gate.
		if err := r.startBacklog(); err != nil {
			r.log.Error("relay_queue_backlog not following the reloaded queues", "err", err.Error())
		}
	}
	// Compared with what the fleet shares now, not with the old file: a
	// change that failed (the broker was down) is made by the next reload.
	if shared := sharedBreakers(cfg); !slices.Equal(shared, r.sharedNow()) {
		ctx, cancel := context.WithTimeout(r.stop, cfg.AMQP.ConnectTimeout)
		err := r.reshare(ctx, shared)
		cancel()
		if err != nil {
			// The breakers act alone or as before until the next reload
			// or restart makes the fleet whole.
			r.log.Error("the fleet's shared breakers not changed", "shared", shared, "err", err.Error())
			note("shared breakers not changed: %v", err)
		} else {
			note("shared breakers now: %s", sharedList(shared))
		}
	}
	if old.HTTP.AdminToken != cfg.HTTP.AdminToken {
		if adm, err := r.newAdmin(); err == nil {
			r.admin.Store(adm)
			note("http.admin_token changed")
		}
	}
	r.log.Info("configuration reloaded", "changes", len(changes))
	r.emit(algedonic.Reloaded(changes))
	return nil
}

// sharedList writes the names of shared breakers for a reload's note.
func sharedList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// restartOnly names the settings that differ between old and cfg and are
// read at start only.
func restartOnly(old, cfg *config.Config) []string {
	var out []string
	if old.AMQP.URL != cfg.AMQP.URL || !reflect.DeepEqual(old.AMQP.TLS, cfg.AMQP.TLS) ||
		old.AMQP.Heartbeat != cfg.AMQP.Heartbeat || old.AMQP.Reconnect != cfg.AMQP.Reconnect {
		out = append(out, "amqp")
	}
	if old.HTTP.Listen != cfg.HTTP.Listen {
		out = append(out, "http.listen")
	}
	if old.Instance != cfg.Instance {
		out = append(out, "instance")
	}
	return out
}

// brokerConns are the relay's own broker connections.
func (r *Relay) brokerConns() []*broker.Conn {
	return []*broker.Conn{r.publishConn, r.consumeConn}
}
