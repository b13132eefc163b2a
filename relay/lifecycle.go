package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Run connects, declares the topology, serves the HTTP endpoints and
// consumes until ctx ends; then it drains in-flight work for at most
// shutdown_timeout and returns. It returns an error when the HTTP listener
// or the first broker connection cannot be had, and when the HTTP server
// fails while the relay runs (so that the process exits non-zero).
func (r *Relay) Run(ctx context.Context) error {
	defer r.cleanup.drain()
	r.cleanup.push(r.closeProtections)
	if err := r.serve(); err != nil {
		return err
	}
	if err := r.connect(ctx); err != nil {
		return err
	}
	if err := r.startSignals(); err != nil {
		return err
	}
	for _, q := range r.queues {
		if err := r.startQueue(ctx, q); err != nil {
			return err
		}
	}
	if err := r.startBacklog(); err != nil {
		return err
	}
	// Read before consuming is set: from then on a reload may replace
	// r.cfg.
	cfg := r.config()
	r.consuming.Store(true)
	r.log.Info("relay running", "instance", cfg.Instance, "http", r.Addr(),
		"work_queues", len(cfg.Work), "outbound_queues", len(cfg.Outbound))

	var err error
	select {
	case <-ctx.Done():
	case err = <-r.failed:
		r.log.Error("stopping: a part of the relay failed", "err", err.Error())
	}
	r.shutdown()
	return err
}

// serve starts the HTTP server. Its failure while the relay runs ends Run
// with the error.
func (r *Relay) serve() error {
	ln, err := net.Listen("tcp", r.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", r.cfg.HTTP.Listen, err)
	}
	r.listener = ln
	adm, err := r.newAdmin()
	if err != nil {
		ln.Close()
		return err
	}
	r.admin.Store(adm)
	if r.hub, err = r.newHub(); err != nil {
		ln.Close()
		return err
	}
	r.server = &http.Server{Handler: r.handler(r.hub), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.fail(fmt.Errorf("http server on %s: %w", r.cfg.HTTP.Listen, err))
		}
	}()
	r.cleanup.push(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if r.server.Shutdown(ctx) != nil {
			_ = r.server.Close()
		}
		<-done
	})
	// The live page's streams end before the server shuts down, which
	// would otherwise wait for them.
	r.cleanup.push(r.hub.Close)
	return nil
}

// fail ends Run with err, unless an earlier failure already does.
func (r *Relay) fail(err error) {
	select {
	case r.failed <- err:
	default:
	}
}

// startSignals makes the health monitor and runs it and the emitter until
// the relay stops; the emitter is flushed on the way out.
func (r *Relay) startSignals() error {
	if err := r.newMonitor(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = r.emitter.Run(ctx) }()
	go func() { defer wg.Done(); _ = r.monitor.Run(ctx) }()
	r.cleanup.push(func() {
		flush, cancelFlush := context.WithTimeout(context.Background(), 3*time.Second)
		if err := r.emitter.Flush(flush); err != nil {
			r.log.Warn("some signals were not published before exit", "pending", r.emitter.Pending())
		}
		cancelFlush()
		cancel()
		wg.Wait()
	})
	return nil
}

// shutdown stops intake, lets in-flight work finish within
// shutdown_timeout, and gives back whatever did not.
func (r *Relay) shutdown() {
	r.reloadMu.Lock() // no reload while stopping
	defer r.reloadMu.Unlock()
	cfg := r.config()
	r.log.Info("shutting down: intake stopped, draining in-flight work", "timeout", cfg.ShutdownTimeout)
	r.stopCancel()
	deadline, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	r.mu.RLock()
	queues := slices.Clone(r.queues)
	for _, f := range r.followers {
		f.Close()
	}
	r.mu.RUnlock()
	var drains sync.WaitGroup
	for _, q := range queues {
		drains.Add(1)
		go func() { defer drains.Done(); q.consumer.CancelAndDrain(deadline) }()
	}
	drains.Wait()
	done := make(chan struct{})
	go func() {
		for _, q := range queues {
			q.wait()
		}
		r.retiring.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-deadline.Done():
		r.log.Warn("shutdown_timeout passed; unfinished work goes back to the broker")
		r.inflightCancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	r.inflightCancel()
	r.log.Info("relay stopped")
}

// closeProtections closes the bulkheads (waiters give up) and the breaker
// followers' timers.
func (r *Relay) closeProtections() {
	r.stopCancel()
	r.inflightCancel()
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, f := range r.followers {
		f.Close()
	}
	for _, b := range r.bulkheads {
		b.Close()
	}
}
