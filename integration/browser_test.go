package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/relay"
)

// chromiumPath is Debian's Chromium, which CI installs.
const chromiumPath = "/usr/bin/chromium"

// pageLag is how long the live page may take to show a breaker's change.
const pageLag = 2 * time.Second

// headlessChromium starts a headless Chromium with a fresh profile for
// the test, quiet unless the test fails. Without Chromium the test is
// skipped, except under CI=true, where it fails.
func headlessChromium(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the browser test needs %s under CI=true: %v", chromiumPath, err)
		}
		t.Skipf("no %s: the live page is not tried in a browser", chromiumPath)
	}
	out := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser output:\n%s", out.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
		chromedp.CombinedOutput(out),
	)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx,
		chromedp.WithLogf(func(string, ...any) {}),
		chromedp.WithErrorf(func(string, ...any) {}))
	t.Cleanup(bcancel)
	return bctx
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pageScreenshot saves the whole page as name in the test's temp dir and,
// when RELAY_TEST_SCREENSHOT_DIR is set, there too.
func pageScreenshot(t *testing.T, ctx context.Context, name string) {
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

// cardState is the script that reads a breaker card's state as the page
// shows it.
func cardState(name string) string {
	return fmt.Sprintf(`(document.querySelector('[data-breaker=%q] .state') || {}).textContent`, name)
}

// pageShows waits up to limit for the script cond to be true on the page
// and returns when it became so.
func pageShows(t *testing.T, ctx context.Context, cond string, limit time.Duration) (time.Time, error) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(limit)))
	return time.Now(), err
}

// transitions records when a breaker last moved to each state, as its
// listener is told: the moment the relay's breaker changed.
type transitions struct {
	b  *breaker.Breaker
	mu sync.Mutex
	at map[breaker.State]time.Time
}

func watchTransitions(b *breaker.Breaker) *transitions {
	tr := &transitions{b: b, at: map[breaker.State]time.Time{}}
	b.OnStateChange(func(t breaker.Transition) {
		now := time.Now()
		tr.mu.Lock()
		tr.at[t.To] = now
		tr.mu.Unlock()
	})
	return tr
}

// reach waits until the breaker's State is state and returns when the
// breaker moved there.
func (tr *transitions) reach(t *testing.T, state breaker.State, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for tr.b.State() != state {
		if time.Now().After(deadline) {
			t.Fatalf("breaker %s not %s within %s (it is %s)", tr.b.Name(), state, limit, tr.b.State())
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The state changes before the breaker's listeners are told: give
	// the listener a moment.
	for {
		tr.mu.Lock()
		at, ok := tr.at[state]
		tr.mu.Unlock()
		if ok {
			return at
		}
		if time.Now().After(deadline.Add(2 * time.Second)) {
			t.Fatalf("breaker %s is %s, but its listener was told of no such transition", tr.b.Name(), state)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// trickle publishes message i (made by mk, with a ledger id) to queue
// every pace on a confirmed channel of its own until stop is called, which
// returns how many it published and the first error.
func (l *ledger) trickle(brokerURL, queue string, pace time.Duration, mk func(i int) amqp.Publishing) (stop func() (int, error)) {
	quit := make(chan struct{})
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := l.trickleUntil(brokerURL, queue, pace, mk, quit)
		done <- result{n, err}
	}()
	return func() (int, error) {
		close(quit)
		r := <-done
		return r.n, r.err
	}
}

func (l *ledger) trickleUntil(brokerURL, queue string, pace time.Duration, mk func(i int) amqp.Publishing, quit <-chan struct{}) (int, error) {
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	tick := time.NewTicker(pace)
	defer tick.Stop()
	var dcs []*amqp.DeferredConfirmation
	for more := true; more; {
		m := mk(len(dcs))
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, m)
		if err != nil {
			return len(dcs), err
		}
		dcs = append(dcs, dc)
		l.mu.Lock()
		l.published[m.CorrelationId] = true
		l.mu.Unlock()
		select {
		case <-quit:
			more = false
		case <-tick.C:
		}
	}
	n := len(dcs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dc := range dcs {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return n, err
		}
		if !ok {
			return n, errors.New("publish nacked")
		}
	}
	return n, nil
}

// TestBrowserLivePageFollowsTheRelay opens the live page of a relay run in
// process in headless Chromium while a steady trickle of tasks goes
// through: the downstream fails, the breaker opens, and the page shows it
// within two seconds of the change in the relay, and shows it closed
// again within two seconds of the recovery, without being reloaded. Then
// the operator types the admin token into the page and forces the breaker
// open with its button: the relay's breaker is held open and /health says
// so. The page's screenshot is the one in docs/live-page.png.
func TestBrowserLivePageFollowsTheRelay(t *testing.T) {
	ctx := headlessChromium(t)
	e := newEnv(t)
	in := e.inspector()
	var down atomic.Bool
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			hangUp(w, r)
			return
		}
		echo(w, r)
	})
	llm := newDownstream(t, echo)
	q, q2, qo := e.name("tasks.echo"), e.name("tasks.llm"), e.name("outbound")
	exch, dest := e.name("events"), e.name("events.dest")
	e.routeTo(dest, "live.#", exch)
	cfg := e.loadConfig(faultConfig{
		URL: ds.URL, Queues: []string{q},
		Breaker: "failure_threshold: 3, reset_timeout: 2s", Backoff: "max_retries: 1", Redelivery: "500ms",
		ExtraBreakers: "  llm_api: {}\n",
		ExtraTargets:  fmt.Sprintf("  llm: {url: %q, timeout: 2s, breaker: llm_api, bulkhead: pool, backoff: downstream}\n", llm.URL),
		ExtraWork:     fmt.Sprintf("  - {queue: %s, target: llm, redelivery: [500ms]}\n", q2),
		Outbound:      qo, Exchanges: []string{exch},
	}.yaml())
	cfg.HTTP.AdminToken = adminToken
	run := e.startRelay(cfg)
	events := e.events(cfg)
	b := run.r.Breaker("downstream")
	tr := watchTransitions(b)

	// Three trickles, one per queue, each counted by a ledger of its own.
	var stops []func() (int, error)
	stopTrickles := func() {
		for _, stop := range stops {
			if _, err := stop(); err != nil {
				t.Errorf("trickle: %v", err)
			}
		}
		stops = nil
	}
	defer stopTrickles()
	l := e.ledger("live page: a downstream outage and its recovery under a trickle of tasks", in)
	stopEcho := l.trickle(e.url, q, 40*time.Millisecond, func(i int) amqp.Publishing {
		return l.task(i, []byte(fmt.Sprint("echo ", i)))
	})
	echoStopped := false
	defer func() {
		if !echoStopped {
			_, _ = stopEcho()
		}
	}()
	ll := e.ledger("live page: tasks of a second queue", in)
	ll.prefix = e.id + "-llm-"
	stops = append(stops, ll.trickle(e.url, q2, 100*time.Millisecond, func(i int) amqp.Publishing {
		return ll.task(i, []byte(fmt.Sprint("llm ", i)))
	}))
	lo := e.ledger("live page: outbound messages", in)
	lo.prefix = e.id + "-out-"
	lo.dests = []string{dest}
	stops = append(stops, lo.trickle(e.url, qo, 50*time.Millisecond, func(i int) amqp.Publishing {
		m := lo.task(i, []byte(fmt.Sprint("event ", i)))
		m.ReplyTo = ""
		m.Headers = amqp.Table{relay.HeaderExchange: exch, relay.HeaderRoutingKey: "live.event"}
		return m
	}))

	page := "http://" + run.r.Addr() + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("opening %s: %v", page, err)
	}
	if _, err := pageShows(t, ctx, cardState("downstream")+` === "closed" && document.querySelectorAll('#queues tr[data-queue]').length === 3`, 10*time.Second); err != nil {
		t.Fatalf("the page never showed breaker downstream closed and the three queues: %v", err)
	}
	const marker = `window.__notReloaded === true`
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "tasks answered before the outage", func() bool { return l.tally().Answered >= 10 })

	// The outage: the downstream drops every connection unanswered.
	down.Store(true)
	opened := tr.reach(t, breaker.Open, 10*time.Second)
	shown, err := pageShows(t, ctx, cardState("downstream")+` === "open" && `+marker, 10*time.Second)
	if err != nil {
		t.Fatalf("the page never showed breaker downstream open, or was reloaded: %v", err)
	}
	if lag := shown.Sub(opened); lag >= pageLag {
		t.Errorf("the page showed the breaker open %s after it opened in the relay, want under %s", lag, pageLag)
	} else {
		t.Logf("breaker downstream open in the relay, on the page %s later", lag.Round(time.Millisecond))
	}

	// The recovery: half-open after reset_timeout, probes succeed, closed.
	down.Store(false)
	closed := tr.reach(t, breaker.Closed, 15*time.Second)
	shown, err = pageShows(t, ctx, cardState("downstream")+` === "closed" && `+marker, 10*time.Second)
	if err != nil {
		t.Fatalf("the page never showed breaker downstream closed again, or was reloaded: %v", err)
	}
	if lag := shown.Sub(closed); lag >= pageLag {
		t.Errorf("the page showed the breaker closed %s after it closed in the relay, want under %s", lag, pageLag)
	} else {
		t.Logf("breaker downstream closed in the relay, on the page %s later", lag.Round(time.Millisecond))
	}
	trans, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-breaker="downstream"] .transitions').textContent`))
	if err != nil || !bytes.Contains([]byte(trans), []byte("closed → open")) || !bytes.Contains([]byte(trans), []byte("→ closed")) {
		t.Errorf("the card of downstream lists transitions %q (%v), want the opening and the closing", trans, err)
	}

	// Every task of the outage's trickle has its outcome.
	echoStopped = true
	if _, err := stopEcho(); err != nil {
		t.Fatalf("trickle: %v", err)
	}
	l.check(l.settle(30*time.Second, []string{q + ".dlq"}, q, relay.DelayQueueName(q, 500*time.Millisecond)), 0)

	// The operator: the token typed in, "open" clicked on the card.
	openButton := `button[aria-label="Force breaker downstream open"]`
	err = chromedp.Do(ctx,
		chromedp.Click("#operator summary"),
		chromedp.SendKeys("#token", adminToken),
		chromedp.Click(`#token-form button[type="submit"]`),
		chromedp.WaitEnabled(openButton),
		chromedp.Click(openButton),
	)
	if err != nil {
		t.Fatalf("typing the token and clicking open: %v", err)
	}
	if _, err := pageShows(t, ctx, `document.querySelector('#answer').textContent.startsWith('200 ')`, 5*time.Second); err != nil {
		answer, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#answer').textContent`))
		t.Fatalf("the page shows no 200 answer to its open action: %v; it shows %q", err, answer)
	}
	if s := b.Snapshot(); s.State != breaker.Open || !s.RetryAt.IsZero() {
		t.Fatalf("after the click the relay's breaker is %s retrying at %v, want open and held (forced)", s.State, s.RetryAt)
	}
	if st := breakerState(t, run, "downstream"); st != "open" {
		t.Fatalf("/health shows breaker downstream %s after it was forced open, want open", st)
	}
	if _, err := pageShows(t, ctx, `document.querySelector('[data-breaker="downstream"]').dataset.forced === "true" && `+cardState("downstream")+` === "open" && `+marker, pageLag); err != nil {
		t.Fatalf("the page does not show breaker downstream held open: %v", err)
	}
	eventually(t, 10*time.Second, "breaker open event by operator", func() bool { return eventBy(t, events, "breaker.downstream.open") })
	if _, err := pageShows(t, ctx, `[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('breaker downstream open') && li.textContent.includes('by operator'))`, pageLag); err != nil {
		t.Errorf("the page's events do not list the operator's opening: %v", err)
	}
	// An outbound queue's work is what it publishes: the page shows it.
	done := fmt.Sprintf(`parseFloat((document.querySelector('#queues tr[data-queue=%q]') || {children: []}).children[3]?.textContent) > 0`, qo)
	if _, err := pageShows(t, ctx, done, 3*time.Second); err != nil {
		t.Errorf("the page shows no work done by outbound queue %s while it publishes: %v", qo, err)
	}
	pageScreenshot(t, ctx, "live-page.png")

	// The other trickles went on throughout; each of theirs has its
	// outcome too.
	stopTrickles()
	ll.check(ll.settle(30*time.Second, []string{q2 + ".dlq"}, settledQueues(cfg)...), 0)
	lo.check(lo.settle(30*time.Second, []string{qo + ".dlq"}, settledQueues(cfg)...), 0)
	if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](marker)); err != nil || !ok {
		t.Errorf("the page was reloaded (%v)", err)
	}
}
