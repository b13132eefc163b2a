package algedonic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vsm-relay/relay/clock"
)

var t0 = time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)

// published is one message the fake publisher accepted.
type published struct {
	exchange, key string
	ev            Event
}

// fakePublisher records what it is handed, or fails while failing is set.
type fakePublisher struct {
	failing  atomic.Bool
	attempts atomic.Int64
	mu       sync.Mutex
	got      []published
	ctxs     []bool // whether each attempt's context had a deadline
}

var errBrokerDown = errors.New("broker unreachable")

func (p *fakePublisher) Publish(ctx context.Context, exchange, key string, body []byte) error {
	p.attempts.Add(1)
	_, hasDeadline := ctx.Deadline()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ctxs = append(p.ctxs, hasDeadline)
	if p.failing.Load() {
		return errBrokerDown
	}
	ev, err := Decode(body)
	if err != nil {
		return fmt.Errorf("fake broker got an invalid body %s: %w", body, err)
	}
	p.got = append(p.got, published{exchange, key, ev})
	return nil
}

func (p *fakePublisher) messages() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]published(nil), p.got...)
}

// keysAndCounts writes what was published as "key×count" for exact
// comparison.
func keysAndCounts(ps []published) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s×%d", p.key, p.ev.Count))
	}
	return strings.Join(parts, " ")
}

func eventKeys(evs []Event) string {
	var parts []string
	for _, e := range evs {
		parts = append(parts, fmt.Sprintf("%s×%d", e.RoutingKey(), e.Count))
	}
	return strings.Join(parts, " ")
}

type harness struct {
	e     *Emitter
	pub   *fakePublisher
	clk   *clock.Fake
	reg   *prometheus.Registry
	logs  *bytes.Buffer
	mu    sync.Mutex
	queue []Event // what listeners saw
}

func (h *harness) seen() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.queue...)
}

func newHarness(t *testing.T, cfg Config, opts ...Option) *harness {
	t.Helper()
	h := &harness{pub: &fakePublisher{}, clk: clock.NewFake(t0), reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: h.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]Option{WithClock(h.clk), WithRegisterer(h.reg), WithLogger(logger)}, opts...)
	e, err := NewEmitter(cfg, h.pub, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.Subscribe(func(ev Event) {
		h.mu.Lock()
		h.queue = append(h.queue, ev)
		h.mu.Unlock()
	})
	h.e = e
	return h
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestEmitFillsAndClamps(t *testing.T) {
	h := newHarness(t, Config{Instance: "relay-1"})
	h.e.Emit(Event{Signal: Pain, Source: "breaker", Name: "b", Event: "open", Intensity: 7})
	given := t0.Add(-time.Hour)
	h.e.Emit(Event{Signal: Pleasure, Source: "breaker", Name: "b", Event: "closed", Intensity: -1,
		Instance: "other", At: given, Count: 4, Severity: Critical, Details: map[string]any{"k": "v"}})
	got := h.seen()
	if len(got) != 2 {
		t.Fatalf("listeners saw %d events, want 2", len(got))
	}
	want0 := Event{Signal: Pain, Source: "breaker", Name: "b", Event: "open", Severity: Warning,
		Intensity: 1, Count: 1, Instance: "relay-1", At: t0, Details: map[string]any{}}
	assertEventEqual(t, got[0], want0)
	want1 := Event{Signal: Pleasure, Source: "breaker", Name: "b", Event: "closed", Severity: Critical,
		Intensity: 0, Count: 4, Instance: "other", At: given, Details: map[string]any{"k": "v"}}
	assertEventEqual(t, got[1], want1)
	if p := h.e.Pending(); p != 2 {
		t.Fatalf("Pending = %d, want 2", p)
	}
}

func TestEmitRefusesInvalid(t *testing.T) {
	h := newHarness(t, Config{})
	for _, ev := range []Event{
		{Signal: "joy", Source: "breaker", Name: "b", Event: "open"},
		{Signal: Pain, Source: "breaker", Name: "b", Event: "open", Severity: "fatal"},
		{Signal: Pain, Name: "b", Event: "open"},
		{Signal: Pain, Source: "breaker", Event: "open"},
		{Signal: Pain, Source: "breaker", Name: "b"},
	} {
		h.e.Emit(ev)
	}
	if p, n := h.e.Pending(), len(h.seen()); p != 0 || n != 0 {
		t.Fatalf("Pending = %d, listeners saw %d; want nothing queued", p, n)
	}
	if c := strings.Count(h.logs.String(), "algedonic event refused"); c != 5 {
		t.Fatalf("logged %d refusals, want 5:\n%s", c, h.logs)
	}
}

func TestCoalescing(t *testing.T) {
	h := newHarness(t, Config{Coalesce: 10 * time.Second})
	rej := func(at time.Duration) {
		h.clk.Set(t0.Add(at))
		h.e.Emit(BulkheadRejected("api_agent", "full", 0.5))
	}
	rej(0)
	if got := eventKeys(h.seen()); got != "bulkhead.api_agent.rejected×1" {
		t.Fatalf("first occurrence: %q", got)
	}
	for s := 1; s <= 4; s++ {
		rej(time.Duration(s) * time.Second)
	}
	h.e.tick(t0.Add(9999 * time.Millisecond))
	if n := len(h.seen()); n != 1 {
		t.Fatalf("before the window ends %d events were sent, want 1", n)
	}
	h.e.tick(t0.Add(10 * time.Second))
	got := h.seen()
	if s := eventKeys(got); s != "bulkhead.api_agent.rejected×1 bulkhead.api_agent.rejected×4" {
		t.Fatalf("after the first window: %q", s)
	}
	if !got[1].At.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("summary At = %v, want the window end", got[1].At)
	}

	// The summary opened a new window [10s, 20s).
	rej(12 * time.Second)
	rej(19 * time.Second)
	h.e.tick(t0.Add(20 * time.Second))
	if s := eventKeys(h.seen()[2:]); s != "bulkhead.api_agent.rejected×2" {
		t.Fatalf("second window: %q", s)
	}

	// A window with nothing counted ends quietly and is forgotten...
	h.e.tick(t0.Add(30 * time.Second))
	if n := len(h.seen()); n != 3 {
		t.Fatalf("a quiet window sent something: %d events", n)
	}
	// ...so the next occurrence goes out at once.
	rej(31 * time.Second)
	if s := eventKeys(h.seen()[3:]); s != "bulkhead.api_agent.rejected×1" {
		t.Fatalf("after a quiet window: %q", s)
	}
}

func TestCoalescingNothingWithoutRepeats(t *testing.T) {
	h := newHarness(t, Config{Coalesce: time.Second})
	h.e.Emit(DeadLettered("q", "HTTP 400"))
	for s := 1; s <= 5; s++ {
		h.e.tick(t0.Add(time.Duration(s) * time.Second))
	}
	if s := eventKeys(h.seen()); s != "queue.q.dead_lettered×1" {
		t.Fatalf("got %q", s)
	}
}

func TestCoalescingKeysIndependent(t *testing.T) {
	h := newHarness(t, Config{Coalesce: 10 * time.Second})
	for i := 0; i < 3; i++ {
		h.e.Emit(BulkheadRejected("b", "full", 0.1))
		h.e.Emit(BulkheadRejected("a", "full", 0.1))
		h.e.Emit(DeadLettered("q", "HTTP 400"))
	}
	h.e.Emit(DeadLettered("q", "HTTP 400"))
	h.e.tick(t0.Add(10 * time.Second))
	want := "bulkhead.b.rejected×1 bulkhead.a.rejected×1 queue.q.dead_lettered×1 " +
		"bulkhead.a.rejected×2 bulkhead.b.rejected×2 queue.q.dead_lettered×3"
	if s := eventKeys(h.seen()); s != want {
		t.Fatalf("got  %q\nwant %q", s, want)
	}
}

// When no tick saw a window end, the next occurrence does: the summary
// goes first and the occurrence is the first count of a new window.
func TestCoalescingWindowEndSeenByEmit(t *testing.T) {
	h := newHarness(t, Config{Coalesce: 10 * time.Second})
	for i := 0; i < 4; i++ {
		h.e.Emit(BulkheadRejected("p", "full", 0.1))
	}
	h.clk.Set(t0.Add(15 * time.Second))
	h.e.Emit(BulkheadRejected("p", "full", 0.1))
	if s := eventKeys(h.seen()); s != "bulkhead.p.rejected×1 bulkhead.p.rejected×3" {
		t.Fatalf("got %q", s)
	}
	h.e.tick(t0.Add(24 * time.Second))
	h.e.tick(t0.Add(25 * time.Second))
	if s := eventKeys(h.seen()[2:]); s != "bulkhead.p.rejected×1" {
		t.Fatalf("after the new window: %q", s)
	}
}

func TestCoalescedSummaryContent(t *testing.T) {
	h := newHarness(t, Config{Coalesce: 10 * time.Second, Instance: "i"})
	h.e.Emit(BulkheadRejected("p", "first", 0.1))
	h.e.Emit(BulkheadRejected("p", "worst", 0.9))
	h.e.Emit(Event{Signal: Pain, Source: "bulkhead", Name: "p", Event: "rejected", Reason: "latest",
		Intensity: 0.3, Count: 5, Details: map[string]any{"reason": "rate_limited"}})
	h.e.tick(t0.Add(10 * time.Second))
	got := h.seen()
	if len(got) != 2 {
		t.Fatalf("got %d events", len(got))
	}
	want := Event{Signal: Pain, Source: "bulkhead", Name: "p", Event: "rejected", Severity: Warning,
		Intensity: 0.9, Reason: "latest", Count: 6, Instance: "i", At: t0.Add(10 * time.Second),
		Details: map[string]any{"reason": "rate_limited"}}
	assertEventEqual(t, got[1], want)
}

func TestNotCoalesced(t *testing.T) {
	h := newHarness(t, Config{Coalesce: time.Minute})
	evs := []Event{
		BreakerOpenedWith("b", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}), BreakerOpenedWith("b", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: true}), BreakerClosed("b", "r"),
		HealthChanged("healthy", "degraded", "r", 0), HealthChanged("degraded", "degraded", "r", 0),
		AMQPLost("EOF"), AMQPLost("EOF"), AMQPBlocked("alarm"), AMQPRestored(time.Second),
	}
	for _, ev := range evs {
		h.e.Emit(ev)
	}
	if n := len(h.seen()); n != len(evs) {
		t.Fatalf("%d of %d events were sent at once", n, len(evs))
	}
}

func TestWithCoalesced(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		h := newHarness(t, Config{}, WithCoalesced())
		for i := 0; i < 3; i++ {
			h.e.Emit(BulkheadRejected("p", "full", 1))
		}
		if s := eventKeys(h.seen()); s != "bulkhead.p.rejected×1 bulkhead.p.rejected×1 bulkhead.p.rejected×1" {
			t.Fatalf("got %q", s)
		}
	})
	t.Run("custom", func(t *testing.T) {
		h := newHarness(t, Config{Coalesce: time.Second}, WithCoalesced(Kind{Source: "breaker", Event: "open"}))
		for i := 0; i < 3; i++ {
			h.e.Emit(BreakerOpenedWith("b", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
			h.e.Emit(BulkheadRejected("p", "full", 1))
		}
		h.e.tick(t0.Add(time.Second))
		want := "breaker.b.open×1 bulkhead.p.rejected×1 bulkhead.p.rejected×1 bulkhead.p.rejected×1 breaker.b.open×2"
		if s := eventKeys(h.seen()); s != want {
			t.Fatalf("got  %q\nwant %q", s, want)
		}
	})
}

func TestBufferDropsOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Buffer: 3})
		for i := 1; i <= 5; i++ {
			h.e.Emit(BreakerOpenedWith(fmt.Sprintf("b%d", i), "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
		}
		if p := h.e.Pending(); p != 3 {
			t.Fatalf("Pending = %d, want 3", p)
		}
		if c := strings.Count(h.logs.String(), "dropped the oldest event"); c != 2 {
			t.Fatalf("logged %d drops, want 2", c)
		}
		if !strings.Contains(h.logs.String(), "routing_key=breaker.b1.open") {
			t.Fatalf("the first drop is not b1:\n%s", h.logs)
		}
		if v := valueOf(h.e.m.dropped); v != 2 {
			t.Fatalf("dropped_total = %v, want 2", v)
		}
		stop := runEmitter(t, h.e)
		synctest.Wait()
		stop()
		if s := keysAndCounts(h.pub.messages()); s != "breaker.b3.open×1 breaker.b4.open×1 breaker.b5.open×1" {
			t.Fatalf("published %q", s)
		}
	})
}

// runEmitter runs e.Run until the returned stop is called.
func runEmitter(t *testing.T, e *Emitter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	}
}

func TestRunPublishesToExchanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Instance: "relay-7f3a", PainExchange: "pain.x", PleasureExchange: "pleasure.x"},
			WithClock(clock.Real))
		stop := runEmitter(t, h.e)
		defer stop()
		h.e.Emit(BreakerOpenedWith("llm_api", "3 failures", BreakerOpening{FailureRate: 0.8, FromHalfOpen: false}))
		h.e.Emit(BreakerClosed("llm_api", "3 probes succeeded"))
		synctest.Wait()
		got := h.pub.messages()
		if len(got) != 2 {
			t.Fatalf("published %d, want 2", len(got))
		}
		if got[0].exchange != "pain.x" || got[0].key != "breaker.llm_api.open" || got[0].ev.Instance != "relay-7f3a" {
			t.Errorf("first = %+v", got[0])
		}
		if got[1].exchange != "pleasure.x" || got[1].key != "breaker.llm_api.closed" {
			t.Errorf("second = %+v", got[1])
		}
		if !got[0].ev.At.Equal(time.Now().Truncate(time.Millisecond)) {
			t.Errorf("At = %v, want the bubble's now %v", got[0].ev.At, time.Now())
		}
		if p := h.e.Pending(); p != 0 {
			t.Errorf("Pending = %d after publishing", p)
		}
	})
}

func TestRunResumesInOrderAfterOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{}, WithClock(clock.Real))
		h.pub.failing.Store(true)
		stop := runEmitter(t, h.e)
		defer stop()
		h.e.Emit(AMQPLost("connection reset"))
		h.e.Emit(BreakerOpenedWith("llm_api", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
		h.e.Emit(DeadLettered("vsm.tasks.echo", "HTTP 404"))
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(h.pub.messages()); n != 0 {
			t.Fatalf("published %d while failing", n)
		}
		if p := h.e.Pending(); p != 3 {
			t.Fatalf("Pending = %d while failing, want 3", p)
		}
		// Attempts at 0, 0.1, 0.3, 0.7, 1.5, 3.1 and 6.3s (the backoff
		// doubling from 100ms), then every 5s from 11.3s to 56.3s.
		if a := h.pub.attempts.Load(); a != 17 {
			t.Fatalf("%d attempts within a minute, want 17", a)
		}
		if !strings.Contains(h.logs.String(), "algedonic publish failed") {
			t.Fatalf("the failure was not logged:\n%s", h.logs)
		}
		h.pub.failing.Store(false)
		h.e.Emit(AMQPRestored(time.Minute))
		time.Sleep(retryMax)
		synctest.Wait()
		want := "amqp.broker.lost×1 breaker.llm_api.open×1 queue.vsm_tasks_echo.dead_lettered×1 amqp.broker.restored×1"
		if s := keysAndCounts(h.pub.messages()); s != want {
			t.Fatalf("published %q\nwant      %q", s, want)
		}
		if !strings.Contains(h.logs.String(), "algedonic publishing resumed") {
			t.Fatalf("recovery was not logged:\n%s", h.logs)
		}
		for i, d := range h.pub.ctxs {
			if !d {
				t.Fatalf("publish attempt %d had no deadline", i)
			}
		}
	})
}

func TestRunSendsSummaries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Coalesce: time.Second}, WithClock(clock.Real))
		stop := runEmitter(t, h.e)
		defer stop()
		for i := 0; i < 3; i++ {
			h.e.Emit(BulkheadRejected("api_agent", "full", 1))
		}
		synctest.Wait()
		if s := keysAndCounts(h.pub.messages()); s != "bulkhead.api_agent.rejected×1" {
			t.Fatalf("at once: %q", s)
		}
		// Run looks every Coalesce/4, so the summary is out by 1.25s.
		time.Sleep(1250 * time.Millisecond)
		synctest.Wait()
		if s := keysAndCounts(h.pub.messages()); s != "bulkhead.api_agent.rejected×1 bulkhead.api_agent.rejected×2" {
			t.Fatalf("after the window: %q", s)
		}
	})
}

func TestFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Coalesce: time.Hour}, WithClock(clock.Real))
		if err := h.e.Flush(context.Background()); err != nil {
			t.Fatalf("Flush of an empty emitter: %v", err)
		}
		for i := 0; i < 3; i++ {
			h.e.Emit(DeadLettered("q", "HTTP 400"))
		}
		h.e.Emit(BreakerClosed("b", "r"))

		h.pub.failing.Store(true)
		stop := runEmitter(t, h.e)
		defer stop()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := h.e.Flush(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Flush while the broker is down = %v, want DeadlineExceeded", err)
		}
		h.pub.failing.Store(false)
		if err := h.e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := "queue.q.dead_lettered×1 breaker.b.closed×1 queue.q.dead_lettered×2"
		if s := keysAndCounts(h.pub.messages()); s != want {
			t.Fatalf("published %q\nwant      %q", s, want)
		}
		if p := h.e.Pending(); p != 0 {
			t.Fatalf("Pending = %d after Flush", p)
		}
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{})
		stop := runEmitter(t, h.e)
		synctest.Wait()
		if err := h.e.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
			t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
		}
		stop()
	})
}

func TestUnencodableEventIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{})
		h.e.Emit(Event{Signal: Pain, Source: "breaker", Name: "b", Event: "open", Details: map[string]any{"ch": make(chan int)}})
		h.e.Emit(BreakerClosed("b", "r"))
		stop := runEmitter(t, h.e)
		synctest.Wait()
		stop()
		if s := keysAndCounts(h.pub.messages()); s != "breaker.b.closed×1" {
			t.Fatalf("published %q", s)
		}
		if v := valueOf(h.e.m.dropped); v != 1 {
			t.Fatalf("dropped_total = %v, want 1", v)
		}
	})
}

func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Coalesce: time.Hour, Buffer: 4})
		for i := 0; i < 5; i++ {
			h.e.Emit(BulkheadRejected("p", "full", 1))
		}
		h.e.Emit(BreakerOpenedWith("b", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
		h.e.Emit(BreakerClosed("b", "r"))
		h.e.Emit(Event{Signal: Pain, Source: "custom", Name: "x", Event: "y", Count: 3})
		h.e.Emit(AMQPLost("EOF")) // fills the buffer past 4: drops the first rejection
		want := `relay_algedonic_coalesced_total{} 4
relay_algedonic_dropped_total{} 1
relay_algedonic_pending{} 4
relay_algedonic_published_total{} 0
relay_algedonic_signals_total{signal=pain,source=amqp} 1
relay_algedonic_signals_total{signal=pain,source=breaker} 1
relay_algedonic_signals_total{signal=pain,source=bulkhead} 5
relay_algedonic_signals_total{signal=pain,source=custom} 3
relay_algedonic_signals_total{signal=pain,source=health} 0
relay_algedonic_signals_total{signal=pain,source=queue} 0
relay_algedonic_signals_total{signal=pleasure,source=amqp} 0
relay_algedonic_signals_total{signal=pleasure,source=breaker} 1
relay_algedonic_signals_total{signal=pleasure,source=bulkhead} 0
relay_algedonic_signals_total{signal=pleasure,source=health} 0
relay_algedonic_signals_total{signal=pleasure,source=queue} 0`
		names := []string{"relay_algedonic_coalesced_total", "relay_algedonic_dropped_total", "relay_algedonic_pending",
			"relay_algedonic_published_total", "relay_algedonic_signals_total"}
		if got := gathered(t, h.reg, names...); got != want {
			t.Fatalf("metrics:\n%s\nwant:\n%s", got, want)
		}
		h.pub.failing.Store(true)
		stop := runEmitter(t, h.e)
		synctest.Wait()
		h.pub.failing.Store(false)
		time.Sleep(retryInitial)
		synctest.Wait()
		stop()
		want = `relay_algedonic_pending{} 0
relay_algedonic_publish_failures_total{} 1
relay_algedonic_published_total{} 4`
		names = []string{"relay_algedonic_pending", "relay_algedonic_publish_failures_total", "relay_algedonic_published_total"}
		if got := gathered(t, h.reg, names...); got != want {
			t.Fatalf("metrics:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestNewEmitterErrors(t *testing.T) {
	if _, err := NewEmitter(Config{}, nil); !errors.Is(err, ErrNoPublisher) {
		t.Errorf("nil publisher: %v", err)
	}
	_, err := NewEmitter(Config{Buffer: -1, Coalesce: -time.Second}, &fakePublisher{})
	if err == nil || err.Error() != "buffer: must not be negative, got -1\ncoalesce: must not be negative, got -1s" {
		t.Errorf("bad config: %v", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := NewEmitter(Config{}, &fakePublisher{}, WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	_, err = NewEmitter(Config{}, &fakePublisher{}, WithRegisterer(reg))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second emitter on one registry: %v, want AlreadyRegisteredError", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name    string
		in, out Config
	}{
		{"zero", Config{}, Config{PainExchange: "vsm.algedonic.pain", PleasureExchange: "vsm.algedonic.pleasure", Buffer: 1000}},
		{"set values stay", Config{PainExchange: "p", PleasureExchange: "q", Coalesce: time.Minute, Buffer: 3, Instance: "i"},
			Config{PainExchange: "p", PleasureExchange: "q", Coalesce: time.Minute, Buffer: 3, Instance: "i"}},
	}
	for _, tt := range tests {
		if got := tt.in.WithDefaults(); got != tt.out {
			t.Errorf("%s: defaults = %+v, want %+v", tt.name, got, tt.out)
		}
	}
}

// A zero coalesce window is the file's "coalesce: 0s": never coalesce.
// It once meant the 10s default, so a second rejection within 10s was
// absorbed into a summary.
func TestZeroCoalesceNeverCoalesces(t *testing.T) {
	h := newHarness(t, Config{})
	for i := range 3 {
		h.clk.Set(t0.Add(time.Duration(i) * time.Second))
		h.e.Emit(BulkheadRejected("api_agent", "full", 0.5))
		h.e.Emit(DeadLettered("q", "HTTP 400"))
	}
	h.e.tick(t0.Add(time.Minute))
	want := strings.Repeat("bulkhead.api_agent.rejected×1 queue.q.dead_lettered×1 ", 3)
	if got := eventKeys(h.seen()); got != strings.TrimSpace(want) {
		t.Fatalf("got  %q\nwant %q", got, strings.TrimSpace(want))
	}
	if e := h.e; e.tickEvery < time.Minute {
		t.Errorf("with nothing to coalesce Run still looks for windows every %s", e.tickEvery)
	}
}

func TestListeners(t *testing.T) {
	h := newHarness(t, Config{})
	var order []string
	h.e.Subscribe(func(Event) { order = append(order, "a") })
	h.e.Subscribe(func(Event) { panic("listener bug") })
	h.e.Subscribe(nil)
	h.e.Subscribe(func(Event) { order = append(order, "c") })
	h.e.Emit(BreakerClosed("b", "r"))
	h.e.Emit(BreakerClosed("b", "r"))
	if s := strings.Join(order, ""); s != "acac" {
		t.Fatalf("listeners ran as %q, want acac", s)
	}
	if c := strings.Count(h.logs.String(), "algedonic listener panicked"); c != 2 {
		t.Fatalf("logged %d panics, want 2", c)
	}
}

func TestEventsAreLogged(t *testing.T) {
	h := newHarness(t, Config{Coalesce: time.Minute})
	h.e.Emit(BreakerOpenedWith("b", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
	h.e.Emit(BreakerClosed("b", "r"))
	h.e.Emit(BulkheadRejected("p", "full", 1))
	h.e.Emit(BulkheadRejected("p", "full", 1))
	logs := h.logs.String()
	for _, want := range []string{
		`level=WARN msg="algedonic pain" source=breaker name=b event=open severity=critical intensity=1`,
		`level=INFO msg="algedonic pleasure" source=breaker name=b event=closed severity=info intensity=0.5`,
		`level=WARN msg="algedonic pain" source=bulkhead name=p event=rejected`,
		`level=DEBUG msg="algedonic event coalesced" signal=pain source=bulkhead name=p event=rejected count=1`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// A pool raises a rejection on every turned-away checkout; counting one
// into an open window must not allocate.
func TestEmitCoalescedDoesNotAllocate(t *testing.T) {
	e, err := NewEmitter(Config{Coalesce: time.Hour}, &fakePublisher{}, WithClock(clock.NewFake(t0)))
	if err != nil {
		t.Fatal(err)
	}
	e.Emit(BulkheadRejected("p", "full", 1))
	if n := testing.AllocsPerRun(1000, func() { e.Emit(BulkheadRejected("p", "full", 1)) }); n != 0 {
		t.Fatalf("a coalesced Emit allocates %v times", n)
	}
}

func BenchmarkEmitCoalesced(b *testing.B) {
	e, err := NewEmitter(Config{Coalesce: time.Hour}, &fakePublisher{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Emit(BulkheadRejected("api_agent", "full", 1))
	}
}

func BenchmarkEmitQueued(b *testing.B) {
	e, err := NewEmitter(Config{Buffer: 1024}, &fakePublisher{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Emit(BreakerOpenedWith("llm_api", "3 failures", BreakerOpening{FailureRate: 0.8, FromHalfOpen: false}))
	}
}

func BenchmarkRoutingKey(b *testing.B) {
	for _, name := range []string{"api_agent", "vsm.tasks.echo"} {
		b.Run(name, func(b *testing.B) {
			ev := DeadLettered(name, "HTTP 404")
			b.ReportAllocs()
			for b.Loop() {
				_ = ev.RoutingKey()
			}
		})
	}
}
