package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/vsm-relay/relay/admin"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/dashboard"
	"github.com/vsm-relay/relay/health"
)

const chromiumPath = "/usr/bin/chromium"

// fakeRelay holds the state a relay would show and pushes it into the hub
// the way the relay does: health reports and algedonic events. Its
// Controls record what the page asked for.
type fakeRelay struct {
	hub *dashboard.Hub

	mu       sync.Mutex
	breakers map[string]health.BreakerStatus
	calls    []string
	at       time.Time
}

func (f *fakeRelay) now() time.Time {
	f.at = f.at.Add(time.Second)
	return f.at
}

func (f *fakeRelay) report() health.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	overall, reasons := health.Healthy, []string(nil)
	for _, name := range slices.Sorted(maps.Keys(f.breakers)) {
		if s := f.breakers[name].State; s != "closed" {
			overall = health.Degraded
			reasons = append(reasons, "breaker "+name+" is "+s)
		}
	}
	return health.Report{
		Overall: overall, Instance: "relay-7f3a", At: f.now(),
		AMQP:            health.AMQPStatus{Connected: true},
		CircuitBreakers: maps.Clone(f.breakers),
		Bulkheads: map[string]health.BulkheadStatus{
			"worker_agent": {Available: 18, Busy: 12, Waiting: 0, Capacity: 30},
			"llm_worker":   {Available: 0, Busy: 7, Waiting: 4, Capacity: 7, Rejected: 2},
			"outbound":     {Available: 9, Busy: 1, Waiting: 0, Capacity: 10},
		},
		Reasons: reasons,
	}
}

// set changes one breaker and publishes what the relay would: the event
// of the transition, then a fresh health report.
func (f *fakeRelay) set(name, state string, failures int, reason string, by string) {
	f.mu.Lock()
	f.breakers[name] = health.BreakerStatus{State: state, FailureCount: failures, LastFailure: reason}
	at := f.now()
	f.mu.Unlock()
	ev := algedonic.Event{Signal: algedonic.Pain, Source: "breaker", Name: name, Event: "open",
		Severity: algedonic.Critical, Intensity: 0.8, Reason: reason, Count: 1, Instance: "relay-7f3a", At: at}
	if state == "closed" {
		ev.Signal, ev.Event, ev.Severity, ev.Intensity, ev.Reason = algedonic.Pleasure, "closed", algedonic.Info, 0.5, "probe succeeded"
	}
	if by != "" {
		ev.Details = map[string]any{"by": by}
		ev.Reason = "forced open by an operator"
	}
	f.hub.PublishEvent(ev)
	f.hub.PublishHealth(f.report())
}

func (f *fakeRelay) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeRelay) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeRelay) OpenBreaker(name string) error {
	f.record("OpenBreaker " + name)
	f.mu.Lock()
	_, ok := f.breakers[name]
	f.mu.Unlock()
	if !ok {
		return admin.ErrNotFound
	}
	f.set(name, "open", 0, "", admin.By)
	return nil
}

func (f *fakeRelay) CloseBreaker(name string) error { f.record("CloseBreaker " + name); return nil }
func (f *fakeRelay) PauseQueue(q string) error      { f.record("PauseQueue " + q); return nil }
func (f *fakeRelay) ResumeQueue(q string) error     { f.record("ResumeQueue " + q); return nil }
func (f *fakeRelay) Reload() ([]string, error)      { f.record("Reload"); return nil, nil }

func publishStats(t *testing.T, hub *dashboard.Hub) {
	t.Helper()
	q := func(name string, inFlight int, paused bool, r dashboard.Rates) dashboard.QueueRates {
		return dashboard.QueueRates{QueueStats: dashboard.QueueStats{Queue: name, InFlight: inFlight, Paused: paused}, Rates: r}
	}
	msg := dashboard.StatsMessage{At: "2026-11-29T14:00:05.000Z", Queues: []dashboard.QueueRates{
		q("tasks.agent", 12, false, dashboard.Rates{Replied: 41.5, Redelivered: 0.5}),
		q("tasks.llm", 7, false, dashboard.Rates{Replied: 3.2, Redelivered: 1.1, Requeued: 2}),
		q("tasks.ocr", 0, true, dashboard.Rates{}),
		q("outbound.mail", 1, false, dashboard.Rates{Replied: 8, DeadLettered: 0.3}),
	}}
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	hub.Publish(dashboard.KindStats, b)
}

// browser starts a headless Chromium for the test, quiet unless the test
// fails.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the browser test needs %s: %v", chromiumPath, err)
		}
		t.Skipf("no %s: the page is not tried in a browser", chromiumPath)
	}
	var out bytes.Buffer
	var outMu sync.Mutex
	t.Cleanup(func() {
		if t.Failed() {
			outMu.Lock()
			t.Logf("browser output:\n%s", out.String())
			outMu.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&lockedWriter{w: &out, mu: &outMu}),
	)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx,
		chromedp.WithLogf(func(string, ...any) {}),
		chromedp.WithErrorf(func(string, ...any) {}))
	t.Cleanup(bcancel)
	return bctx
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("RELAY_TEST_SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stateOf is the script that reads a breaker card's state text.
func stateOf(name string) string {
	return fmt.Sprintf(`(document.querySelector('[data-breaker=%q] .state') || {}).textContent`, name)
}

func TestLivePageInBrowser(t *testing.T) {
	ctx := browser(t)

	hub, err := dashboard.NewHub(dashboard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	relay := &fakeRelay{hub: hub, at: time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC), breakers: map[string]health.BreakerStatus{}}
	for _, name := range []string{"llm_api", "search_api", "geo_lookup", "mailer", "translate", "vector_db", "billing", "crm_sync", "webhooks", "image_gen"} {
		relay.breakers[name] = health.BreakerStatus{State: "closed"}
	}
	relay.breakers["ocr"] = health.BreakerStatus{State: "half_open", SuccessCount: 1}
	relay.set("payments", "open", 5, "5 failures within 60s; last: HTTP 503", "")
	adm, err := admin.New(admin.Options{Token: "s3cret", Controls: relay})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	hub.Register(mux)
	mux.Handle("/admin/", adm)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer hub.Close() // first: srv.Close waits for the open stream
	publishStats(t, hub)

	marker := `window.__marker === 1`
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](stateOf("llm_api")+` === "closed"`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page never showed llm_api closed: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__marker = 1`)); err != nil {
		t.Fatal(err)
	}

	// Outage: the relay opens the breaker; the page must follow within 2s.
	relay.set("llm_api", "open", 3, "3 failures within 60s; last: HTTP 503", "")
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](stateOf("llm_api")+` === "open" && `+marker, chromedp.WithPollingTimeout(2*time.Second))); err != nil {
		t.Fatalf("llm_api not shown open within 2s of the outage, without a reload: %v", err)
	}
	first, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#breakers .card').dataset.breaker`))
	if err != nil || (first != "llm_api" && first != "payments") {
		t.Errorf("first card %q (%v), want an open breaker first", first, err)
	}

	// Recovery.
	relay.set("llm_api", "closed", 0, "", "")
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](stateOf("llm_api")+` === "closed" && `+marker, chromedp.WithPollingTimeout(2*time.Second))); err != nil {
		t.Fatalf("llm_api not shown closed within 2s of the recovery, without a reload: %v", err)
	}
	trans, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-breaker="llm_api"] .transitions').textContent`))
	if err != nil || !bytes.Contains([]byte(trans), []byte("open → closed")) || !bytes.Contains([]byte(trans), []byte("closed → open")) {
		t.Errorf("llm_api transitions %q (%v), want both", trans, err)
	}

	// A change that only a health report carries (half-open has no
	// event) shows too.
	for _, state := range []string{"half_open", "closed"} {
		relay.mu.Lock()
		relay.breakers["geo_lookup"] = health.BreakerStatus{State: state}
		relay.mu.Unlock()
		hub.PublishHealth(relay.report())
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](stateOf("geo_lookup")+` === "`+strings.ReplaceAll(state, "_", "-")+`"`, chromedp.WithPollingTimeout(2*time.Second))); err != nil {
			t.Fatalf("geo_lookup not shown %s within 2s of the health report: %v", state, err)
		}
	}

	// Without a token the controls are off; with it, "open" works.
	disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('button[aria-label="Force breaker llm_api open"]').disabled`))
	if err != nil || !disabled {
		t.Errorf("open button enabled without a token (%v)", err)
	}
	err = chromedp.Do(ctx,
		chromedp.Click("#operator summary"),
		chromedp.SendKeys("#token", "s3cret"),
		chromedp.Click(`#token-form button[type="submit"]`),
		chromedp.WaitEnabled(`button[aria-label="Force breaker llm_api open"]`),
		chromedp.Click(`button[aria-label="Force breaker llm_api open"]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#answer').textContent.includes('"state": "open"')`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		answer, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#answer').textContent`))
		t.Fatalf("no answer of the open action on the page: %v; it shows %q", err, answer)
	}
	if calls := relay.Calls(); !slices.Equal(calls, []string{"OpenBreaker llm_api"}) {
		t.Errorf("controls called %v, want [OpenBreaker llm_api]", calls)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](stateOf("llm_api")+` === "open" && `+marker, chromedp.WithPollingTimeout(2*time.Second))); err != nil {
		t.Fatalf("llm_api not shown open after the operator opened it: %v", err)
	}
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("relay.admin.token")`))
	if err != nil || stored != "s3cret" {
		t.Errorf("token kept as %q (%v)", stored, err)
	}
	screenshot(t, ctx, "live-page.png")

	// A phone-sized screen: one column, nothing wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	wide, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	if err != nil || wide > 390 {
		t.Errorf("on a 390px screen the page is %dpx wide (%v)", wide, err)
	}
	screenshot(t, ctx, "live-page-phone.png")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}

	// A hundred breakers: the open ones first, and the filter finds one.
	relay.mu.Lock()
	for i := range 100 {
		relay.breakers[fmt.Sprintf("svc_%03d", i)] = health.BreakerStatus{State: "closed"}
	}
	relay.mu.Unlock()
	relay.set("svc_077", "open", 4, "timeouts", "")
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('#breakers .card').length === 112`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Fatalf("the page does not show 112 breakers: %v", err)
	}
	order, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#breakers .card')].slice(0, 5).map(c => c.dataset.breaker)`))
	if want := []string{"llm_api", "payments", "svc_077", "ocr", "billing"}; err != nil || !slices.Equal(order, want) {
		t.Errorf("first cards %v (%v), want %v", order, err, want)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys("#filter", "svc_07")); err != nil {
		t.Fatal(err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('#breakers .card')].filter(c => !c.hidden).length`))
	if err != nil || shown != 10 {
		t.Errorf("filter svc_07 shows %d cards (%v), want 10", shown, err)
	}
	if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](marker)); err != nil || !ok {
		t.Errorf("the page was reloaded (%v)", err)
	}
}
