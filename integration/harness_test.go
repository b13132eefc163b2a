package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/testbroker"
	"github.com/vsm-relay/relay/relay"
)

// env is one test's view of the broker: a URL, names of its own, and an
// admin channel for set-up and inspection.
type env struct {
	t   *testing.T
	url string
	id  string
	ch  *amqp.Channel

	mu     sync.Mutex
	queues []string
	exchs  []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	url := testbroker.URL(t)
	e := &env{t: t, url: url, id: strings.TrimPrefix(testbroker.Unique(""), ".")}
	e.ch = testbroker.Channel(t, url)
	t.Cleanup(e.cleanup)
	return e
}

// name returns base made unique to this test.
func (e *env) name(base string) string {
	return base + "." + e.id
}

// own records broker objects to delete when the test ends.
func (e *env) own(queues []string, exchanges []string) {
	e.mu.Lock()
	e.queues = append(e.queues, queues...)
	e.exchs = append(e.exchs, exchanges...)
	e.mu.Unlock()
}

func (e *env) cleanup() {
	conn, err := amqp.Dial(e.url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, q := range e.queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			if ch, err = conn.Channel(); err != nil {
				return
			}
		}
	}
	for _, x := range e.exchs {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			if ch, err = conn.Channel(); err != nil {
				return
			}
		}
	}
}

// baseYAML is a configuration with this test's own exchanges and broker;
// the caller appends breakers, bulkheads, backoff, targets, work and
// outbound sections.
func (e *env) baseYAML() string {
	return fmt.Sprintf(`instance: it-%s
shutdown_timeout: 10s
amqp:
  url: %q
  connect_timeout: 10s
  prefetch: 16
  reconnect: {initial: 50ms, max: 1s}
http:
  listen: 127.0.0.1:0
algedonic:
  pain_exchange: %s
  pleasure_exchange: %s
  coalesce: 1s
health:
  exchange: %s
  interval: 1s
`, e.id, e.url, e.name("it.pain"), e.name("it.pleasure"), e.name("it.health"))
}

// loadConfig loads base YAML plus extra and records every queue and
// exchange the relay will declare, for cleanup.
func (e *env) loadConfig(extra string) *config.Config {
	e.t.Helper()
	cfg, err := config.LoadBytes([]byte(e.baseYAML()+extra), func(string) (string, bool) { return "", false })
	if err != nil {
		e.t.Fatalf("test configuration is invalid:\n%v", err)
	}
	cfg.Instance = "it-" + e.id
	var qs []string
	for _, w := range cfg.Work {
		qs = append(qs, w.Queue, w.Queue+".dlq")
		for _, d := range w.Redelivery {
			qs = append(qs, relay.DelayQueueName(w.Queue, d))
		}
	}
	for _, o := range cfg.Outbound {
		qs = append(qs, o.Queue, o.Queue+".dlq")
	}
	e.own(qs, []string{cfg.Algedonic.PainExchange, cfg.Algedonic.PleasureExchange, cfg.Health.Exchange})
	return cfg
}

// routeTo declares topic exchanges (deleted when the test ends) and a
// queue dest bound to the first of them with bindingKey, the far side of
// an outbound path.
func (e *env) routeTo(dest, bindingKey string, exchanges ...string) {
	e.t.Helper()
	e.own([]string{dest}, exchanges)
	for _, x := range exchanges {
		if err := e.ch.ExchangeDeclare(x, "topic", true, false, false, false, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := e.ch.QueueDeclare(dest, true, false, false, false, nil); err != nil {
		e.t.Fatal(err)
	}
	if err := e.ch.QueueBind(dest, bindingKey, exchanges[0], false, nil); err != nil {
		e.t.Fatal(err)
	}
}

// running is a relay started in process.
type running struct {
	r      *relay.Relay
	cancel context.CancelFunc
	done   chan error
}

// startRelay runs a relay in process until the test ends (or stop).
func (e *env) startRelay(cfg *config.Config) *running {
	e.t.Helper()
	r, err := relay.New(cfg, relay.Options{Logger: testLogger(e.t)})
	if err != nil {
		e.t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- r.Run(ctx) }()
	e.t.Cleanup(func() { run.stop(e.t) })
	eventually(e.t, 15*time.Second, "relay ready", r.Ready)
	return run
}

func (run *running) stop(t *testing.T) {
	if _, ok := run.stopWithin(t, 30*time.Second); !ok {
		t.Errorf("relay did not stop within 30s")
	}
}

// stopWithin cancels the relay and waits up to limit for Run to return.
// It reports how long Run took, or false when it had not returned.
func (run *running) stopWithin(t *testing.T, limit time.Duration) (time.Duration, bool) {
	t.Helper()
	stopping := time.Now()
	run.cancel()
	select {
	case err := <-run.done:
		run.done <- err // keep it for a second stop
		if err != nil {
			t.Errorf("relay Run returned %v", err)
		}
		return time.Since(stopping), true
	case <-time.After(limit):
		return 0, false
	}
}

func (run *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + run.r.Addr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// downstream is a local HTTP service whose behaviour a test changes as
// it goes.
type downstream struct {
	*httptest.Server
	hits    atomic.Int64
	handler atomic.Value // http.HandlerFunc
	mu      sync.Mutex
	seen    []*http.Request
	bodies  []string
}

func newDownstream(t *testing.T, h http.HandlerFunc) *downstream {
	d := &downstream{}
	d.set(h)
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		d.seen = append(d.seen, r.Clone(context.Background()))
		d.bodies = append(d.bodies, string(b))
		d.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		d.handler.Load().(http.HandlerFunc)(w, r)
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *downstream) set(h http.HandlerFunc) { d.handler.Store(h) }

func (d *downstream) requests() []*http.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*http.Request(nil), d.seen...)
}

// echo answers 200 with the request body and its content type.
func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if ct := r.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, "status %d", code)
	}
}

// replies is a private reply queue and everything that arrived on it.
type replies struct {
	queue string
	mu    sync.Mutex
	got   []amqp.Delivery
}

func (e *env) replyQueue() *replies {
	e.t.Helper()
	return e.subscribe("")
}

// subscribe declares a private queue, binds it with key to each of the
// topic exchanges (declaring them), and keeps every message that arrives.
func (e *env) subscribe(key string, exchanges ...string) *replies {
	e.t.Helper()
	ch := testbroker.Channel(e.t, e.url)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDeclare(x, "topic", true, false, false, false, nil); err != nil {
			e.t.Fatal(err)
		}
		if err := ch.QueueBind(q.Name, key, x, false, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.collect(ch, q.Name)
}

// collect consumes queue on ch and keeps every message that arrives.
func (e *env) collect(ch *amqp.Channel, queue string) *replies {
	e.t.Helper()
	msgs, err := ch.Consume(queue, "", true, true, false, false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	rep := &replies{queue: queue}
	go func() {
		for m := range msgs {
			rep.mu.Lock()
			rep.got = append(rep.got, m)
			rep.mu.Unlock()
		}
	}()
	return rep
}

func (r *replies) all() []amqp.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]amqp.Delivery(nil), r.got...)
}

func (r *replies) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// publish publishes msg to queue with a publisher confirm.
func (e *env) publish(queue string, msg amqp.Publishing) {
	e.t.Helper()
	e.publishTo("", queue, msg)
}

func (e *env) publishTo(exchange, key string, msg amqp.Publishing) {
	e.t.Helper()
	ch := testbroker.Channel(e.t, e.url)
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		e.t.Fatal(err)
	}
	if msg.DeliveryMode == 0 {
		msg.DeliveryMode = amqp.Persistent
	}
	dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, msg)
	if err != nil {
		e.t.Fatal(err)
	}
	if !dc.Wait() {
		e.t.Fatalf("publish to %s/%s nacked", exchange, key)
	}
}

// publishMany publishes n tasks numbered from 0 on one confirmed channel.
func (e *env) publishMany(queue string, n int, mk func(i int) amqp.Publishing) {
	e.t.Helper()
	ch := testbroker.Channel(e.t, e.url)
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		e.t.Fatal(err)
	}
	var dcs []*amqp.DeferredConfirmation
	for i := 0; i < n; i++ {
		m := mk(i)
		if m.DeliveryMode == 0 {
			m.DeliveryMode = amqp.Persistent
		}
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, m)
		if err != nil {
			e.t.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	for _, dc := range dcs {
		if !dc.Wait() {
			e.t.Fatal("publish nacked")
		}
	}
}

// shortChannel opens a channel on a connection of its own that done
// closes: depth and take are polled, and a connection kept to the end of
// the test per poll would pile up by the hundred.
func (e *env) shortChannel() (ch *amqp.Channel, done func()) {
	e.t.Helper()
	conn, err := amqp.Dial(e.url)
	if err != nil {
		e.t.Fatalf("dialling test broker: %v", err)
	}
	if ch, err = conn.Channel(); err != nil {
		conn.Close()
		e.t.Fatalf("opening test channel: %v", err)
	}
	return ch, func() { conn.Close() }
}

// depth reports a queue's ready messages and consumers.
func (e *env) depth(queue string) (messages, consumers int) {
	e.t.Helper()
	ch, done := e.shortChannel()
	defer done()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		e.t.Fatalf("inspecting %s: %v", queue, err)
	}
	return q.Messages, q.Consumers
}

// take gets every message ready in queue (acking them).
func (e *env) take(queue string) []amqp.Delivery {
	e.t.Helper()
	ch, done := e.shortChannel()
	defer done()
	var out []amqp.Delivery
	for {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			e.t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

// events is a private queue bound to this test's pain and pleasure
// exchanges, and every event that arrived on it.
func (e *env) events(cfg *config.Config) *replies {
	e.t.Helper()
	return e.subscribe("#", cfg.Algedonic.PainExchange, cfg.Algedonic.PleasureExchange)
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RELAY_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// relayBinary builds ./cmd/relay once per test binary.
func relayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "relay-it-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "relay")
		cmd := exec.Command("go", "build", "-o", binPath, "../cmd/relay")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func headerInt(h amqp.Table, k string) int {
	switch v := h[k].(type) {
	case int32:
		return int(v)
	case int64:
		return int(v)
	case int:
		return v
	}
	return -1
}
