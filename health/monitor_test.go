package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/clock"
)

var t0 = time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)

// world is the state the fake sources report; tests change it between
// checks.
type world struct {
	mu        sync.Mutex
	amqp      AMQPStatus
	breakers  []breaker.Snapshot
	bulkheads []bulkhead.Stats
}

func (w *world) set(f func(w *world)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

func (w *world) sources(targets ...string) Sources {
	return Sources{
		Breakers: func() []breaker.Snapshot {
			w.mu.Lock()
			defer w.mu.Unlock()
			return append([]breaker.Snapshot(nil), w.breakers...)
		},
		Bulkheads: func() []bulkhead.Stats {
			w.mu.Lock()
			defer w.mu.Unlock()
			return append([]bulkhead.Stats(nil), w.bulkheads...)
		},
		AMQP: func() AMQPStatus {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.amqp
		},
		TargetBreakers: targets,
	}
}

func healthyWorld() *world {
	return &world{
		amqp: AMQPStatus{Connected: true},
		breakers: []breaker.Snapshot{
			{Name: "external_api", State: breaker.Closed},
			{Name: "llm_api", State: breaker.Closed},
		},
		bulkheads: []bulkhead.Stats{{Name: "api_agent", Available: 20, Capacity: 20}},
	}
}

// events collects what the monitor emits.
type events struct {
	mu  sync.Mutex
	got []algedonic.Event
}

func (e *events) emit(ev algedonic.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) list() []algedonic.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]algedonic.Event(nil), e.got...)
}

func newTestMonitor(t *testing.T, w *world, pub algedonic.Publisher, opts ...Option) (*Monitor, *events, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	evs := &events{}
	reg := prometheus.NewRegistry()
	logs := &bytes.Buffer{}
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]Option{WithClock(clock.NewFake(t0)), WithRegisterer(reg), WithLogger(logger)}, opts...)
	m, err := NewMonitor(Config{Instance: "relay-7f3a"}, w.sources("external_api", "llm_api"), evs.emit, pub, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m, evs, reg, logs
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestCheckReport(t *testing.T) {
	w := healthyWorld()
	opened := t0.Add(-time.Minute)
	w.set(func(w *world) {
		w.breakers = []breaker.Snapshot{
			{Name: "llm_api", State: breaker.Open, FailureCount: 3, OpenedAt: opened, LastFailure: "HTTP 503"},
			{Name: "external_api", State: breaker.HalfOpen, SuccessCount: 1, OpenedAt: opened},
			{Name: "database", State: breaker.Closed, FailureCount: 1, OpenedAt: opened, LastFailure: "timeout"},
		}
		w.bulkheads = []bulkhead.Stats{{Name: "api_agent", Available: 5, Busy: 15, Waiting: 2, Capacity: 20,
			RejectedFull: 1, RejectedTimeout: 2, RejectedRateLimited: 4}}
	})
	m, _, _, _ := newTestMonitor(t, w, nil)
	got := m.Check()
	want := Report{
		Overall: Degraded, Instance: "relay-7f3a", At: t0,
		AMQP: AMQPStatus{Connected: true},
		CircuitBreakers: map[string]BreakerStatus{
			"llm_api":      {State: "open", FailureCount: 3, LastFailure: "HTTP 503", OpenedAt: &opened},
			"external_api": {State: "half_open", SuccessCount: 1, OpenedAt: &opened},
			"database":     {State: "closed", FailureCount: 1, LastFailure: "timeout"},
		},
		Bulkheads: map[string]BulkheadStatus{"api_agent": {Available: 5, Busy: 15, Waiting: 2, Capacity: 20, Rejected: 7}},
		Reasons: []string{"breaker external_api is half_open", "breaker llm_api is open",
			"bulkhead api_agent rejected 7 since the last check"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestCheckTransitions(t *testing.T) {
	w := healthyWorld()
	m, evs, reg, _ := newTestMonitor(t, w, nil)
	step := func(name string, change func(w *world), want Status) {
		t.Helper()
		w.set(change)
		if got := m.Check().Overall; got != want {
			t.Fatalf("%s: Overall = %s, want %s", name, got, want)
		}
		if g := gaugeValue(t, reg); g != float64(want.Level()) {
			t.Fatalf("%s: relay_health_status = %v, want %d", name, g, want.Level())
		}
	}
	step("start", func(*world) {}, Healthy)
	step("breaker opens", func(w *world) { w.breakers[1].State = breaker.Open }, Degraded)
	step("still degraded", func(*world) {}, Degraded)
	step("broker lost", func(w *world) { w.amqp.Connected = false }, Unhealthy)
	step("still unhealthy", func(*world) {}, Unhealthy)
	step("all recovers", func(w *world) { w.amqp.Connected = true; w.breakers[1].State = breaker.Closed }, Healthy)
	step("still healthy", func(*world) {}, Healthy)

	got := evs.list()
	var summary []string
	for _, ev := range got {
		summary = append(summary, fmt.Sprintf("%s %s %s %s %v", ev.Signal, ev.RoutingKey(), ev.Severity, ev.Reason, ev.Intensity))
	}
	want := []string{
		"pain health.overall.degraded warning breaker llm_api is open 0.3",
		"pain health.overall.unhealthy critical broker is unreachable; breaker llm_api is open 0.8",
		"pleasure health.overall.healthy info every check passes 0.8",
	}
	if !reflect.DeepEqual(summary, want) {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(summary, "\n"), strings.Join(want, "\n"))
	}
	if d := got[1].Details; d["from"] != "degraded" || d["to"] != "unhealthy" {
		t.Fatalf("details = %v", d)
	}
}

func TestCheckEveryTargetOpen(t *testing.T) {
	w := healthyWorld()
	m, evs, _, _ := newTestMonitor(t, w, nil)
	w.set(func(w *world) { w.breakers[0].State, w.breakers[1].State = breaker.Open, breaker.Open })
	r := m.Check()
	if r.Overall != Unhealthy || r.Reasons[0] != "every target breaker is open (external_api, llm_api)" {
		t.Fatalf("got %s %q", r.Overall, r.Reasons)
	}
	// 2 of 4 watched components (broker, 2 breakers, 1 pool) are in trouble.
	if got := evs.list(); len(got) != 1 || got[0].Event != "unhealthy" || got[0].Details["unhealthy_share"] != 0.5 {
		t.Fatalf("events = %+v", got)
	}
}

func TestCheckStartingDegradedSaysSo(t *testing.T) {
	w := healthyWorld()
	w.set(func(w *world) { w.bulkheads[0].Busy, w.bulkheads[0].Available = 19, 1 })
	m, evs, _, _ := newTestMonitor(t, w, nil)
	m.Check()
	m.Check()
	if got := evs.list(); len(got) != 1 || got[0].RoutingKey() != "health.overall.degraded" ||
		got[0].Reason != "bulkhead api_agent 95% busy (threshold 80%)" {
		t.Fatalf("events = %+v", got)
	}
}

// Reads of /health see new rejections but do not consume them: only
// Check moves the baseline.
func TestRejectionBaseline(t *testing.T) {
	w := healthyWorld()
	m, _, _, _ := newTestMonitor(t, w, nil)
	h := m.Handler()
	read := func() Report {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		var r Report
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	reasons := func(r Report) string { return string(r.Overall) + ": " + strings.Join(r.Reasons, "; ") }
	rejected := func(n uint64) { w.set(func(w *world) { w.bulkheads[0].RejectedTimeout = n }) }

	steps := []struct {
		name     string
		rejected uint64
		check    func() Report
		want     string
	}{
		{"first check", 0, m.Check, "healthy: "},
		{"rejections", 5, m.Check, "degraded: bulkhead api_agent rejected 5 since the last check"},
		{"more, read", 7, read, "degraded: bulkhead api_agent rejected 2 since the last check"},
		{"read again", 7, read, "degraded: bulkhead api_agent rejected 2 since the last check"},
		{"check counts them", 7, m.Check, "degraded: bulkhead api_agent rejected 2 since the last check"},
		{"none since", 7, m.Check, "healthy: "},
		{"counter reset", 3, m.Check, "degraded: bulkhead api_agent rejected 3 since the last check"},
		{"quiet again", 3, read, "healthy: "},
	}
	for _, s := range steps {
		rejected(s.rejected)
		if got := reasons(s.check()); got != s.want {
			t.Fatalf("%s: %q, want %q", s.name, got, s.want)
		}
	}
}

// A pool seen for the first time counts every rejection it made.
func TestRejectionsOfANewPool(t *testing.T) {
	w := healthyWorld()
	w.set(func(w *world) { w.bulkheads[0].RejectedFull = 2 })
	m, _, _, _ := newTestMonitor(t, w, nil)
	if r := m.Check(); r.Overall != Degraded || r.Reasons[0] != "bulkhead api_agent rejected 2 since the last check" {
		t.Fatalf("got %s %q", r.Overall, r.Reasons)
	}
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		change  func(w *world)
		code    int
		overall Status // "" when no body is expected
	}{
		{"healthy", http.MethodGet, func(*world) {}, 200, Healthy},
		{"degraded", http.MethodGet, func(w *world) { w.breakers[0].State = breaker.HalfOpen }, 200, Degraded},
		{"unhealthy", http.MethodGet, func(w *world) { w.amqp.Blocked = true }, 503, Unhealthy},
		{"head", http.MethodHead, func(w *world) { w.amqp.Connected = false }, 503, ""},
		{"post", http.MethodPost, func(*world) {}, 405, ""},
		{"delete", http.MethodDelete, func(*world) {}, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := healthyWorld()
			w.set(tt.change)
			m, _, _, _ := newTestMonitor(t, w, nil)
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, "/health", nil))
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d", rec.Code, tt.code)
			}
			if tt.code == http.StatusMethodNotAllowed {
				if a := rec.Header().Get("Allow"); a != "GET, HEAD" {
					t.Fatalf("Allow = %q", a)
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type = %q", ct)
			}
			if tt.overall == "" {
				if rec.Body.Len() != 0 {
					t.Fatalf("HEAD answered a body: %q", rec.Body)
				}
				return
			}
			var r Report
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if r.Overall != tt.overall {
				t.Fatalf("overall %s, want %s", r.Overall, tt.overall)
			}
		})
	}
}

// The field names are the contract's: a client reading /health with a
// map must find exactly these keys.
func TestHandlerFieldNames(t *testing.T) {
	w := healthyWorld()
	m, _, _, _ := newTestMonitor(t, w, nil)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	keys := func(v any) string {
		m, _ := v.(map[string]any)
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	checks := map[string]struct{ got, want string }{
		"report":  {keys(doc), "amqp,at,bulkheads,circuit_breakers,instance,overall"},
		"amqp":    {keys(doc["amqp"]), "blocked,connected"},
		"breaker": {keys(doc["circuit_breakers"].(map[string]any)["llm_api"]), "failure_count,state,success_count"},
		"pool":    {keys(doc["bulkheads"].(map[string]any)["api_agent"]), "available,busy,capacity,rejected,waiting"},
	}
	for name, c := range checks {
		if c.got != c.want {
			t.Errorf("%s keys %q, want %q", name, c.got, c.want)
		}
	}
	if doc["overall"] != "healthy" || doc["instance"] != "relay-7f3a" || doc["at"] != "2026-11-29T14:00:00.000Z" {
		t.Errorf("values: %v", doc)
	}
}

// fakePublisher records reports, or fails while err is set, or blocks
// until its context ends while hang is set.
type fakePublisher struct {
	mu   sync.Mutex
	err  error
	hang bool
	got  []publishedReport
}

type publishedReport struct {
	exchange, key string
	report        Report
}

func (p *fakePublisher) Publish(ctx context.Context, exchange, key string, body []byte) error {
	p.mu.Lock()
	err, hang := p.err, p.hang
	p.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, publishedReport{exchange, key, r})
	return nil
}

func (p *fakePublisher) set(err error, hang bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err, p.hang = err, hang
}

func (p *fakePublisher) reports() []publishedReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]publishedReport(nil), p.got...)
}

func run(t *testing.T, m *Monitor) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}
}

func TestRunPublishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := healthyWorld()
		pub := &fakePublisher{}
		m, evs, reg, logs := newTestMonitor(t, w, pub, WithClock(clock.Real))
		stop := run(t, m)
		defer stop()
		synctest.Wait()
		if n := len(pub.reports()); n != 1 {
			t.Fatalf("%d reports at start, want 1", n)
		}
		w.set(func(w *world) { w.breakers[1].State = breaker.Open })
		time.Sleep(DefaultInterval - time.Millisecond)
		synctest.Wait()
		if n := len(pub.reports()); n != 1 {
			t.Fatalf("%d reports before the interval, want 1", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		got := pub.reports()
		if len(got) != 2 {
			t.Fatalf("%d reports after one interval, want 2", len(got))
		}
		for _, r := range got {
			if r.exchange != "vsm.health" || r.key != "health.relay-7f3a" {
				t.Fatalf("published to %s with key %s", r.exchange, r.key)
			}
		}
		if got[0].report.Overall != Healthy || got[1].report.Overall != Degraded || got[1].report.Instance != "relay-7f3a" {
			t.Fatalf("reports: %+v", got)
		}
		if e := evs.list(); len(e) != 1 || e[0].Event != "degraded" {
			t.Fatalf("events: %+v", e)
		}

		// A broker that refuses: logged once, counted, and the next report
		// goes on time.
		pub.set(errors.New("channel closed"), false)
		time.Sleep(2 * DefaultInterval)
		synctest.Wait()
		if c := strings.Count(logs.String(), "level=WARN msg=\"health report not published\""); c != 1 {
			t.Fatalf("%d warnings for 2 failures, want 1:\n%s", c, logs)
		}
		// A broker that never confirms: each attempt ends after an interval.
		pub.set(nil, true)
		time.Sleep(DefaultInterval)
		synctest.Wait()
		pub.set(nil, false)
		time.Sleep(DefaultInterval)
		synctest.Wait()
		if n := len(pub.reports()); n != 3 {
			t.Fatalf("%d reports after recovery, want 3", n)
		}
		if f := counterValue(t, reg, "relay_health_publish_failures_total"); f != 3 {
			t.Fatalf("publish failures = %v, want 3", f)
		}
		if !strings.Contains(logs.String(), "health report published again") {
			t.Fatalf("recovery not logged:\n%s", logs)
		}
	})
}

func TestRunWithoutPublisher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := healthyWorld()
		w.set(func(w *world) { w.amqp.Connected = false })
		m, evs, _, _ := newTestMonitor(t, w, nil, WithClock(clock.Real))
		stop := run(t, m)
		synctest.Wait()
		if err := m.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
			t.Errorf("second Run = %v", err)
		}
		stop()
		if e := evs.list(); len(e) != 1 || e[0].Event != "unhealthy" {
			t.Fatalf("events: %+v", e)
		}
	})
}

func TestRoutingKeySanitised(t *testing.T) {
	m, err := NewMonitor(Config{Instance: "host.example.com-42"}, Sources{AMQP: func() AMQPStatus { return AMQPStatus{} }}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k := m.RoutingKey(); k != "health.host_example_com-42" {
		t.Fatalf("RoutingKey = %q", k)
	}
}

func TestNewMonitorErrors(t *testing.T) {
	amqp := Sources{AMQP: func() AMQPStatus { return AMQPStatus{} }}
	_, err := NewMonitor(Config{Interval: -time.Second, DegradedUtilization: 1.5}, amqp, nil, nil)
	want := "degraded_utilization: must be a fraction between 0 and 1, got 1.5\ninstance: must not be empty\ninterval: must not be negative, got -1s"
	if err == nil || err.Error() != want {
		t.Errorf("bad config: %v", err)
	}
	if _, err := NewMonitor(Config{Instance: "i"}, Sources{}, nil, nil); !errors.Is(err, ErrNoAMQPSource) {
		t.Errorf("no AMQP source: %v", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := NewMonitor(Config{Instance: "i"}, amqp, nil, nil, WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	_, err = NewMonitor(Config{Instance: "i"}, amqp, nil, nil, WithRegisterer(reg))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second monitor on one registry: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	got := Config{Instance: "i"}.WithDefaults()
	want := Config{Instance: "i", Exchange: "vsm.health", Interval: 15 * time.Second, DegradedUtilization: 0.8}
	if got != want {
		t.Fatalf("defaults = %+v", got)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry) float64 {
	return metricValue(t, reg, "relay_health_status")
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return metricValue(t, reg, name)
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		switch f.GetType() {
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func BenchmarkCheck(b *testing.B) {
	w := healthyWorld()
	m, err := NewMonitor(Config{Instance: "relay-7f3a"}, w.sources("external_api", "llm_api"), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.Check()
	}
}

// A breaker the fleet shares says so in the report; the others say
// nothing, and the JSON of an unshared one is as before.
func TestReportMarksSharedBreakers(t *testing.T) {
	w := healthyWorld()
	src := w.sources("external_api", "llm_api")
	var shared atomic.Pointer[[]string]
	shared.Store(&[]string{"llm_api"})
	src.Shared = func() []string { return *shared.Load() }
	m, err := NewMonitor(Config{Instance: "relay-7f3a"}, src, nil, nil, WithClock(clock.NewFake(t0)))
	if err != nil {
		t.Fatal(err)
	}
	r := m.Check()
	if !r.CircuitBreakers["llm_api"].Shared || r.CircuitBreakers["external_api"].Shared {
		t.Fatalf("shared flags: %+v", r.CircuitBreakers)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"llm_api":{"state":"closed","failure_count":0,"success_count":0,"shared":true}`,
		`"external_api":{"state":"closed","failure_count":0,"success_count":0}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %s:\n%s", want, b)
		}
	}
	shared.Store(&[]string{}) // a reload turned share off
	if r := m.Check(); r.CircuitBreakers["llm_api"].Shared {
		t.Fatalf("llm_api still shared after the fleet let it go: %+v", r.CircuitBreakers)
	}
}
