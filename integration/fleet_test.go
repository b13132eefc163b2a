package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/fleet"
	"github.com/vsm-relay/relay/relay"
)

// This file shows a fleet of relays on the real broker (contract section
// 8): breakers shared over the fleet exchange, the retry budget, and
// relay_queue_backlog.

// fleetConfig is the configuration section of a fleet scenario: one
// target, svc, behind the breaker Breaker, and one work queue.
type fleetConfig struct {
	URL     string
	Queue   string
	Breaker string // the target's breaker
	// Fields of the breaker (failure_threshold, reset_timeout, share...).
	BreakerFields string
	Backoff       string // fields of backoff svc
	Budget        string // the target's retry_budget; "": the default budget
	Redelivery    string // default 10s: no redelivery comes back within a scenario's measures
}

func (c fleetConfig) yaml() string {
	if c.Redelivery == "" {
		c.Redelivery = "10s"
	}
	budget := ""
	if c.Budget != "" {
		budget = ", retry_budget: {" + c.Budget + "}"
	}
	return fmt.Sprintf(`breakers:
  defaults: {failure_threshold: 1000, success_threshold: 2, reset_timeout: 500ms, half_open_timeout: 5s, window_size: 60s, timeout: 10s}
  %s: {%s}
  amqp: {}
bulkheads:
  pool: {size: 8, overflow: 2, timeout: 5s}
backoff:
  defaults: {initial: 10ms, max: 50ms, multiplier: 2, jitter: full, max_retries: 0}
  svc: {%s}
targets:
  svc: {url: %q, timeout: 2s, breaker: %s, bulkhead: pool, backoff: svc%s}
work:
  - {queue: %s, target: svc, redelivery: [%s]}
outbound: []
`, c.Breaker, c.BreakerFields, c.Backoff, c.URL, c.Breaker, budget, c.Queue, c.Redelivery)
}

// fleetMember loads the configuration of one relay of a fleet: the same
// sections, its own instance id (which names its fleet queue) and its own
// HTTP listener (127.0.0.1:0).
func (e *env) fleetMember(c fleetConfig, member string) *config.Config {
	e.t.Helper()
	cfg := e.loadConfig(c.yaml())
	id := "it-" + e.id + "-" + member
	cfg.Instance, cfg.Algedonic.Instance, cfg.Health.Instance = id, id, id
	return cfg
}

// stream publishes a task to queue every pace (without a reply queue)
// until the returned stop is called; stop returns how many it published.
func (e *env) stream(queue string, pace time.Duration) (stop func() int) {
	e.t.Helper()
	ch, done := e.shortChannel()
	quit := make(chan struct{})
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			i := n.Add(1)
			if err := ch.Publish("", queue, false, false, amqp.Publishing{
				Body: fmt.Appendf(nil, "task %d", i), ContentType: "text/plain", MessageId: fmt.Sprint("s-", i),
			}); err != nil {
				return
			}
		}
	})
	var once sync.Once
	stopIt := func() int {
		once.Do(func() { close(quit); wg.Wait(); done() })
		return int(n.Load())
	}
	e.t.Cleanup(func() { stopIt() })
	return stopIt
}

// breakerLog keeps every transition of a breaker.
type breakerLog struct {
	mu  sync.Mutex
	all []breaker.Transition
}

func watchBreaker(b *breaker.Breaker) *breakerLog {
	tr := &breakerLog{}
	b.OnStateChange(func(t breaker.Transition) {
		tr.mu.Lock()
		tr.all = append(tr.all, t)
		tr.mu.Unlock()
	})
	return tr
}

func (tr *breakerLog) list() []breaker.Transition {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]breaker.Transition(nil), tr.all...)
}

// waitTo waits for a transition to state s at index from or later of the
// list (a breaker's state changes before its listeners hear of it), and
// returns it and its index.
func (tr *breakerLog) waitTo(t *testing.T, from int, s breaker.State) (breaker.Transition, int) {
	t.Helper()
	var got breaker.Transition
	at := -1
	eventually(t, 10*time.Second, "a transition to "+s.String(), func() bool {
		l := tr.list()
		for i := from; i < len(l); i++ {
			if l[i].To == s {
				got, at = l[i], i
				return true
			}
		}
		return false
	})
	return got, at
}

func allIn(runs []*running, name string, s breaker.State) bool {
	for _, run := range runs {
		if run.r.Breaker(name).State() != s {
			return false
		}
	}
	return true
}

// pathDownstream answers each relay of a fleet on a path of its own
// (/a, /b, ...), so that requests are counted per relay, and fails them
// as a test says.
type pathDownstream struct {
	*downstream
	fail     sync.Map // path -> http.HandlerFunc; absent: echo
	mu       sync.Mutex
	requests map[string]int // path -> requests
	failures map[string]int // path -> requests answered with a failure
}

func newPathDownstream(t *testing.T) *pathDownstream {
	p := &pathDownstream{requests: map[string]int{}, failures: map[string]int{}}
	p.downstream = newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		h, failing := p.fail.Load(r.URL.Path)
		p.mu.Lock()
		p.requests[r.URL.Path]++
		p.mu.Unlock()
		if !failing {
			echo(w, r)
			return
		}
		h.(http.HandlerFunc)(w, r)
		p.mu.Lock()
		p.failures[r.URL.Path]++
		p.mu.Unlock()
	})
	return p
}

func (p *pathDownstream) failWith(h http.HandlerFunc, paths ...string) {
	for _, path := range paths {
		p.fail.Store(path, h)
	}
}

func (p *pathDownstream) heal(paths ...string) {
	for _, path := range paths {
		p.fail.Delete(path)
	}
}

func (p *pathDownstream) counts() (requests, failures map[string]int, totalFailures int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	requests, failures = map[string]int{}, map[string]int{}
	for k, v := range p.requests {
		requests[k] = v
	}
	for k, v := range p.failures {
		failures[k] = v
		totalFailures += v
	}
	return requests, failures, totalFailures
}

// fleetOpening is what one run of the opening measure saw.
type fleetOpening struct {
	// Failures answered from the first failure until every relay's
	// breaker was open, and 500ms later (calls in flight at the opening
	// included).
	atOpen, settled int
	perRelay        map[string]int
	took            time.Duration // from the first failure to the last opening
	byPeer          int           // relays whose breaker a peer's opening opened
	spread          time.Duration // from the first opening to the last
	recovery        time.Duration // from the downstream healing to every breaker closed (shared only)
}

// measureFleetOpening runs three relays consuming one queue, with their
// breaker shared or not, under a steady stream of tasks; the downstream
// then fails every call, and the failures are counted until every relay
// has its breaker open. With share, the downstream then heals, and every
// relay must close again within reset_timeout plus a margin.
func measureFleetOpening(t *testing.T, share bool, threshold int, reset, pace time.Duration) fleetOpening {
	e := newEnv(t)
	ds := newPathDownstream(t)
	q := e.name("it.fleet.opening")
	name := "fleet_" + e.id
	paths := []string{"/a", "/b", "/c"}
	var runs []*running
	var trs []*breakerLog
	var events *replies
	instances := map[string]bool{}
	for _, p := range paths {
		cfg := e.fleetMember(fleetConfig{
			URL: ds.URL + p, Queue: q, Breaker: name,
			BreakerFields: fmt.Sprintf("failure_threshold: %d, success_threshold: 2, reset_timeout: %s, share: %t", threshold, reset, share),
			Backoff:       "max_retries: 0",
		}, p[1:])
		if events == nil {
			events = e.events(cfg)
		}
		instances[cfg.Instance] = true
		run := e.startRelay(cfg)
		runs = append(runs, run)
		trs = append(trs, watchBreaker(run.r.Breaker(name)))
	}
	stop := e.stream(q, pace)
	defer stop()
	// Every relay takes its share of the stream before the failures.
	eventually(t, 15*time.Second, "every relay answering tasks", func() bool {
		req, _, _ := ds.counts()
		for _, p := range paths {
			if req[p] < 3 {
				return false
			}
		}
		return true
	})
	start := time.Now()
	ds.failWith(status(http.StatusInternalServerError), paths...)
	// Polled every 2ms: the poll's lag adds nothing to the count, since
	// calls stop once every breaker is open.
	deadline := start.Add(15 * time.Second)
	for !allIn(runs, name, breaker.Open) {
		if time.Now().After(deadline) {
			_, f, _ := ds.counts()
			t.Fatalf("share %t: not every breaker open 15s after the downstream failed; failures %v", share, f)
		}
		time.Sleep(2 * time.Millisecond)
	}
	var m fleetOpening
	m.took = time.Since(start)
	_, _, m.atOpen = ds.counts()
	time.Sleep(500 * time.Millisecond)
	_, perRelay, settled := ds.counts()
	m.settled, m.perRelay = settled, perRelay
	if time.Since(start) >= reset {
		t.Fatalf("share %t: the measure took %s, past reset_timeout %s: probes may have been counted", share, time.Since(start), reset)
	}
	if !allIn(runs, name, breaker.Open) {
		t.Fatalf("share %t: a breaker left open before reset_timeout", share)
	}
	var first, last time.Time
	for _, tr := range trs {
		o, _ := tr.waitTo(t, 0, breaker.Open)
		if first.IsZero() || o.At.Before(first) {
			first = o.At
		}
		if o.At.After(last) {
			last = o.At
		}
		if o.Origin != "" {
			m.byPeer++
			if !instances[o.Origin] || !strings.Contains(o.Reason, "opened at "+o.Origin) {
				t.Errorf("share %t: an opening with origin %q, reason %q: not a peer of the fleet", share, o.Origin, o.Reason)
			}
		}
	}
	if !share {
		if m.byPeer != 0 {
			t.Errorf("not shared: %d breakers opened by a peer", m.byPeer)
		}
		return m
	}
	m.spread = last.Sub(first)
	if m.byPeer == 0 {
		t.Errorf("shared: no breaker opened by a peer's opening")
	}
	if m.spread > time.Second {
		t.Errorf("shared: the last breaker opened %s after the first, more than a second", m.spread)
	}
	// The openings a peer caused are published with details.origin, the
	// others without.
	eventually(t, 10*time.Second, "an opening event from every relay, with details.origin as its cause", func() bool {
		withOrigin, seen := 0, map[string]bool{}
		for _, d := range events.all() {
			var ev struct {
				Instance string         `json:"instance"`
				Details  map[string]any `json:"details"`
			}
			if d.RoutingKey != "breaker."+name+".open" || json.Unmarshal(d.Body, &ev) != nil {
				continue
			}
			seen[ev.Instance] = true
			if o, ok := ev.Details["origin"].(string); ok {
				if !instances[o] || o == ev.Instance {
					t.Fatalf("opening event of %s with details.origin %q", ev.Instance, o)
				}
				withOrigin++
			}
		}
		return len(seen) == len(runs) && withOrigin == m.byPeer
	})
	healed := time.Now()
	ds.heal(paths...)
	eventually(t, reset+10*time.Second, "every breaker closed after the downstream healed", func() bool {
		return allIn(runs, name, breaker.Closed)
	})
	m.recovery = time.Since(healed)
	return m
}

// TestFleetSharedBreakerOpensAfterTheFleetsThreshold: three relays share a
// breaker and consume one queue; the downstream fails every call. Sharing
// must open every relay's breaker after about failure_threshold failures
// in all, where three relays that do not share need three times as many.
// After the downstream heals, every relay closes again within
// reset_timeout plus a margin.
func TestFleetSharedBreakerOpensAfterTheFleetsThreshold(t *testing.T) {
	const (
		threshold = 10
		relays    = 3
		pace      = 50 * time.Millisecond // 20 tasks a second over the fleet
		reset     = 3 * time.Second
	)
	alone := measureFleetOpening(t, false, threshold, reset, pace)
	shared := measureFleetOpening(t, true, threshold, reset, pace)
	t.Logf("fleet | failures until every breaker is open | not shared: %d (%d with calls in flight; per relay %v; last opening after %s) | shared: %d (%d with calls in flight; per relay %v; last opening after %s; %d opened by a peer, %s after the first) | threshold %d, %d relays",
		alone.atOpen, alone.settled, alone.perRelay, alone.took.Round(time.Millisecond),
		shared.atOpen, shared.settled, shared.perRelay, shared.took.Round(time.Millisecond), shared.byPeer, shared.spread.Round(time.Millisecond), threshold, relays)
	t.Logf("fleet | every shared breaker closed %s after the downstream healed (reset_timeout %s)", shared.recovery.Round(time.Millisecond), reset)

	// Without sharing each relay opens on its own threshold failures.
	if alone.settled < relays*threshold {
		t.Errorf("not shared: %d failures until every breaker was open, want at least %d (each relay its own %d)", alone.settled, relays*threshold, threshold)
	}
	// Shared: the fleet opens on threshold failures in all. A relay hears
	// its peers' failures up to one batching interval (200ms) late, plus
	// the broker's hop (<100ms): at 20 tasks a second that is at most 6
	// failures more; and each relay may have one call in flight when the
	// opening reaches it (3 more). Margin 9.
	const margin = 6 + relays
	if shared.settled > threshold+margin {
		t.Errorf("shared: %d failures until every breaker was open, more than failure_threshold %d + %d", shared.settled, threshold, margin)
	}
	if shared.settled >= alone.settled {
		t.Errorf("shared: %d failures, not fewer than the %d without sharing", shared.settled, alone.settled)
	}
	// Each relay goes half_open within reset_timeout of its opening
	// (before the healing); two probes on waiting tasks close it, and a
	// peer's closing half-opens the others after a jitter of at most
	// reset_timeout/10. Margin 2s for the probes and the consumers'
	// restart.
	if limit := reset + 2*time.Second; shared.recovery > limit {
		t.Errorf("shared: every breaker closed %s after the downstream healed, more than reset_timeout + 2s = %s", shared.recovery, limit)
	}
}

// TestFleetRelayCutOffDecidesAloneAndIgnoresStaleNews puts one relay of
// three (c) behind a proxy. Connected, it follows its peers' opening.
// Cut off, it opens on its own failures, which its peers never hear. Back,
// it does not follow news from before its own last transition (an old
// opening of a peer, old failures), while fresh news still reaches it.
func TestFleetRelayCutOffDecidesAloneAndIgnoresStaleNews(t *testing.T) {
	e := newEnv(t)
	ds := newPathDownstream(t)
	px := newFaultProxy(t, e.url)
	q := e.name("it.fleet.cut")
	name := "fleet_" + e.id
	fields := "failure_threshold: 5, success_threshold: 1, reset_timeout: 1s, share: true"
	// The fleet's messages about the breaker, as they went through the
	// exchange.
	news := e.subscribe("breaker."+name, fleet.DefaultExchange)

	mk := func(member, backoff, budget string) *config.Config {
		return e.fleetMember(fleetConfig{URL: ds.URL + "/" + member, Queue: q, Breaker: name, BreakerFields: fields, Backoff: backoff, Budget: budget}, member)
	}
	a := e.startRelay(mk("a", "max_retries: 0", ""))
	b := e.startRelay(mk("b", "max_retries: 0", ""))
	// c retries in process (budget off), so that the calls it has in hand
	// when it is cut off go on failing.
	cc := mk("c", "initial: 20ms, max: 20ms, multiplier: 1, jitter: none, max_retries: 100", "ratio: 1000")
	cc.AMQP.URL = px.url(e.url)
	c := e.startRelay(cc)
	ba, bb, bc := a.r.Breaker(name), b.r.Breaker(name), c.r.Breaker(name)
	trC := watchBreaker(bc)
	instA, instB, instC := "it-"+e.id+"-a", "it-"+e.id+"-b", "it-"+e.id+"-c"

	stop := e.stream(q, 50*time.Millisecond)
	defer stop()
	eventually(t, 15*time.Second, "every relay answering tasks", func() bool {
		req, _, _ := ds.counts()
		return req["/a"] > 2 && req["/b"] > 2 && req["/c"] > 2
	})

	// Connected: a and b fail, c follows their opening.
	ds.failWith(status(http.StatusInternalServerError), "/a", "/b")
	eventually(t, 10*time.Second, "every breaker open", func() bool { return allIn([]*running{a, b, c}, name, breaker.Open) })
	opened, openedAt := trC.waitTo(t, 0, breaker.Open)
	if opened.Origin != instA && opened.Origin != instB {
		t.Fatalf("c opened with origin %q (%s), want a peer's", opened.Origin, opened.Reason)
	}
	var old fleet.Message
	var oldBody []byte
	eventually(t, 5*time.Second, "a peer's opening on the fleet exchange", func() bool {
		for _, d := range news.all() {
			m, err := fleet.Decode(d.Body)
			if err == nil && m.Kind == fleet.KindOpen && (m.Instance == instA || m.Instance == instB) {
				old, oldBody = m, d.Body
				return true
			}
		}
		return false
	})
	ds.heal("/a", "/b")
	eventually(t, 10*time.Second, "every breaker closed", func() bool { return allIn([]*running{a, b, c}, name, breaker.Closed) })
	_, mark := trC.waitTo(t, openedAt+1, breaker.Closed)

	// Cut off while its calls hang and then fail: c opens on its own
	// failures; a and b, which do not fail, never hear of it.
	ds.failWith(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(700 * time.Millisecond):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusInternalServerError)
	}, "/c")
	time.Sleep(300 * time.Millisecond) // c's calls under way, none failed yet
	_, failed, _ := ds.counts()
	if failed["/c"] != 0 {
		t.Fatalf("c failed %d calls before the cut", failed["/c"])
	}
	px.p.Stop()
	cut := time.Now()
	eventually(t, 10*time.Second, "c open on its own while cut off", func() bool { return bc.State() == breaker.Open })
	alone, aloneAt := trC.waitTo(t, mark+1, breaker.Open)
	t.Logf("fleet | cut off, c opened %s after the cut: %s", time.Since(cut).Round(time.Millisecond), alone.Reason)
	if alone.Origin != "" || strings.Contains(alone.Reason, "fleet") || !strings.Contains(alone.Reason, "5 failures") {
		t.Errorf("c cut off opened with origin %q, reason %q; want its own 5 failures", alone.Origin, alone.Reason)
	}
	time.Sleep(1500 * time.Millisecond)
	if sa, sb := ba.State(), bb.State(); sa != breaker.Closed || sb != breaker.Closed {
		t.Errorf("a %s and b %s while c, cut off, opened alone: they heard what c could not send", sa, sb)
	}

	// Back: c probes on its own and closes.
	ds.heal("/c")
	if err := px.p.Start(); err != nil {
		t.Fatalf("restarting the proxy: %v", err)
	}
	eventually(t, 20*time.Second, "c ready again", c.r.Ready)
	eventually(t, 20*time.Second, "c closed again", func() bool { return bc.State() == breaker.Closed })
	closed, closedIdx := trC.waitTo(t, aloneAt+1, breaker.Closed)
	if !old.At.Before(closed.At) {
		t.Fatalf("the captured opening (%s) is not older than c's closing (%s)", old.At, closed.At)
	}
	before := closedIdx + 1

	// Stale news, straight to c's fleet queue: the peer's old opening
	// again, and a flood of failures from before c's closing.
	cQueue := fleet.DefaultExchange + "." + instC
	send := func(body []byte) {
		e.publish(cQueue, amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Transient, Body: body})
	}
	ghost := "it-" + e.id + "-ghost"
	staleFailures, _ := fleet.Message{Version: fleet.Version, Instance: ghost, Origin: ghost, Breaker: name,
		Kind: fleet.KindFailures, Count: 50, Reason: "HTTP 500", At: old.At}.Marshal()
	send(oldBody)
	send(staleFailures)
	time.Sleep(1500 * time.Millisecond)
	if st := bc.State(); st != breaker.Closed {
		t.Fatalf("c is %s after stale news: it followed an event from before its last transition", st)
	}
	if l := trC.list(); len(l) != before {
		t.Fatalf("c changed state on stale news: %+v", l[before:])
	}

	// Fresh news still reaches it: the path the stale news took works.
	fresh, _ := fleet.Message{Version: fleet.Version, Instance: ghost, Origin: ghost, Breaker: name,
		Kind: fleet.KindOpen, Reason: "fresh", At: time.Now()}.Marshal()
	send(fresh)
	eventually(t, 5*time.Second, "c opened by a fresh opening", func() bool { return bc.State() == breaker.Open })
	if tr, _ := trC.waitTo(t, before, breaker.Open); tr.Origin != ghost {
		t.Errorf("c's opening has origin %q, want %q", tr.Origin, ghost)
	}
}

// TestRetryBudgetBoundsRetriesAndLosesNothing sends 200 tasks to a
// downstream that fails every other call, with five in-process retries
// allowed per delivery and a small budget (a tenth of the calls plus one a
// second over 10s). The retries the downstream sees stay within the
// budget, the budget's refusals are counted and reported as pain, and
// every task is answered or dead-lettered.
func TestRetryBudgetBoundsRetriesAndLosesNothing(t *testing.T) {
	const (
		n            = 200
		ratio        = 0.1
		minPerSecond = 1.0
		window       = 10 * time.Second
		// A new delivery comes after a redelivery delay (at least 300ms); an
		// in-process retry after at most 20ms of backoff.
		newDelivery = 250 * time.Millisecond
	)
	e := newEnv(t)
	in := e.inspector()
	var calls atomic.Int64
	type seen struct {
		last  time.Time
		first int // first attempts of its deliveries
		all   int
	}
	var mu sync.Mutex
	byTask := map[string]*seen{}
	var firstReq, lastReq time.Time
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		id := r.Header.Get("X-Correlation-ID")
		mu.Lock()
		s := byTask[id]
		if s == nil {
			s = &seen{}
			byTask[id] = s
		}
		if s.all == 0 || now.Sub(s.last) > newDelivery {
			s.first++
		}
		s.all++
		s.last = now
		if firstReq.IsZero() {
			firstReq = now
		}
		lastReq = now
		mu.Unlock()
		if calls.Add(1)%2 == 0 {
			status(http.StatusInternalServerError)(w, r)
			return
		}
		echo(w, r)
	})
	q := e.name("it.budget")
	cfg := e.loadConfig(fleetConfig{
		URL: ds.URL, Queue: q, Breaker: "downstream", BreakerFields: "failure_threshold: 10000",
		Backoff:    "initial: 5ms, max: 20ms, multiplier: 2, jitter: full, max_retries: 5",
		Budget:     fmt.Sprintf("ratio: %v, min_per_second: %v, window: %s", ratio, minPerSecond, window),
		Redelivery: "300ms, 600ms",
	}.yaml())
	events := e.events(cfg)
	run := e.startRelay(cfg)
	l := e.ledger("retry budget: 200 tasks, every other call failing", in)
	l.publishNow(e.url, q, 0, n, func(i int) amqp.Publishing { return l.task(i, fmt.Appendf(nil, "task %d", i)) })
	tl := l.settle(60*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	l.check(tl, 0)

	mu.Lock()
	var firsts, requests int
	for _, s := range byTask {
		firsts += s.first
		requests += s.all
	}
	span := lastReq.Sub(firstReq)
	mu.Unlock()
	retries := requests - firsts
	// Each window holds at most ratio × its calls + min_per_second × its
	// seconds of retries; the run spans ceil(span/window) windows. Margin
	// 2: the budget's window moves in tenths, so a retry at a window's
	// edge may be let through against calls that then leave it.
	windows := math.Ceil(max(span.Seconds(), 1e-9) / window.Seconds())
	bound := ratio*float64(firsts) + minPerSecond*window.Seconds()*windows + 2
	exhausted := counter(run, "relay_retry_budget_exhausted_total", "target", "svc")
	counted := counter(run, "relay_task_retries_total", "queue", q)
	t.Logf("budget | %d requests: %d first attempts, %d retries (the relay counted %d) over %s; bound %.1f; refusals %v; answered %d, dead-lettered %d",
		requests, firsts, retries, int(counted), span.Round(time.Millisecond), bound, exhausted, tl.Answered, tl.DeadLettered)
	if float64(retries) > bound {
		t.Errorf("%d in-process retries for %d calls, over the budget's %.1f", retries, firsts, bound)
	}
	if exhausted == 0 {
		t.Errorf("relay_retry_budget_exhausted_total{target=svc} is 0; the budget never bound")
	}
	if firsts < n {
		t.Errorf("%d first attempts for %d tasks", firsts, n)
	}
	eventually(t, 10*time.Second, "pain event target.svc.retry_budget_exhausted", func() bool {
		for _, m := range events.all() {
			if m.RoutingKey == "target.svc.retry_budget_exhausted" && m.Exchange == cfg.Algedonic.PainExchange {
				return true
			}
		}
		return false
	})
}

// TestQueueBacklogFollowsTheQueueAndReadsZeroWhileOpen: with the queue's
// intake paused, relay_queue_backlog follows the tasks piling up; once
// the breaker is open (and the pause lifted, so only the breaker holds
// the intake), it reads 0 however many tasks wait; after the breaker
// closes, every task is answered.
func TestQueueBacklogFollowsTheQueueAndReadsZeroWhileOpen(t *testing.T) {
	// The poller reads every 5s; a read takes well under a second.
	const within = 6500 * time.Millisecond
	e := newEnv(t)
	in := e.inspector()
	ds := newDownstream(t, echo)
	q := e.name("it.backlog")
	cfg := e.loadConfig(fleetConfig{URL: ds.URL, Queue: q, Breaker: "downstream", BreakerFields: "reset_timeout: 500ms", Backoff: "max_retries: 0"}.yaml())
	cfg.HTTP.AdminToken = adminToken
	run := e.startRelay(cfg)
	backlog := func() float64 { return gauge(run, "relay_queue_backlog", "queue", q) }
	l := e.ledger("relay_queue_backlog", in)
	mk := func(i int) amqp.Publishing { return l.task(i, fmt.Appendf(nil, "task %d", i)) }

	if code, body := run.admin(t, "/admin/queues/"+q+"/pause", adminToken); code != http.StatusOK {
		t.Fatalf("pause: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "no consumer while paused", func() bool { _, c := in.depth(q); return c == 0 })
	for _, step := range []struct{ from, to int }{{0, 30}, {30, 50}} {
		l.publishNow(e.url, q, step.from, step.to, mk)
		published := time.Now()
		eventually(t, within, fmt.Sprintf("relay_queue_backlog at %d", step.to), func() bool { return backlog() == float64(step.to) })
		t.Logf("backlog | relay_queue_backlog reached %d %s after the tasks were published", step.to, time.Since(published).Round(time.Millisecond))
	}

	b := run.r.Breaker("downstream")
	b.ForceOpen()
	if code, body := run.admin(t, "/admin/queues/"+q+"/resume", adminToken); code != http.StatusOK {
		t.Fatalf("resume: %d %s", code, body)
	}
	l.publishNow(e.url, q, 50, 60, mk)
	opened := time.Now()
	eventually(t, within, "relay_queue_backlog 0 while the breaker is open", func() bool { return backlog() == 0 })
	t.Logf("backlog | relay_queue_backlog read 0 %s after the breaker opened", time.Since(opened).Round(time.Millisecond))
	if m, _ := in.depth(q); m != 60 {
		t.Errorf("%d tasks waiting while the breaker is open, want 60", m)
	}
	b.Reset()
	l.check(l.settle(30*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...), 0)
}

// TestQueueBacklogAfterAReload reloads a configuration that adds a queue
// and changes another's entry: relay_queue_backlog follows both queues
// afterwards, and reads 0 for both while their breaker is open.
func TestQueueBacklogAfterAReload(t *testing.T) {
	const within = 6500 * time.Millisecond
	e := newEnv(t)
	in := e.inspector()
	ds := newDownstream(t, echo)
	q1, q2 := e.name("it.backlog.kept"), e.name("it.backlog.added")
	withToken := func(c fleetConfig) string {
		return strings.Replace(e.baseYAML(), "  listen: 127.0.0.1:0\n", "  listen: 127.0.0.1:0\n  admin_token: "+adminToken+"\n", 1) + c.yaml()
	}
	c := fleetConfig{URL: ds.URL, Queue: q1, Breaker: "downstream", BreakerFields: "reset_timeout: 500ms", Backoff: "max_retries: 0"}
	path := filepath.Join(t.TempDir(), "relay.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(withToken(c))
	run, _ := e.startRelayFrom(path)
	// The reload changes q1's redelivery and adds q2.
	c.Redelivery = "5s"
	write(strings.Replace(withToken(c), "outbound: []\n", "  - {queue: "+q2+", target: svc, redelivery: [10s]}\noutbound: []\n", 1))
	e.own([]string{q2, q2 + ".dlq", relay.DelayQueueName(q2, 10*time.Second), relay.DelayQueueName(q1, 5*time.Second)}, nil)
	if problems, err := run.r.Reload(); err != nil {
		t.Fatalf("reload: %v %v", problems, err)
	}
	backlog := func(q string) float64 { return gauge(run, "relay_queue_backlog", "queue", q) }
	l := e.ledger("relay_queue_backlog after a reload", in)
	mk := func(i int) amqp.Publishing { return l.task(i, fmt.Appendf(nil, "task %d", i)) }
	want := map[string]int{q1: 10, q2: 20}
	for _, q := range []string{q1, q2} {
		if code, body := run.admin(t, "/admin/queues/"+q+"/pause", adminToken); code != http.StatusOK {
			t.Fatalf("pause %s: %d %s", q, code, body)
		}
		eventually(t, 10*time.Second, "no consumer on "+q+" while paused", func() bool { _, c := in.depth(q); return c == 0 })
	}
	l.publishNow(e.url, q1, 0, want[q1], mk)
	l.publishNow(e.url, q2, 100, 100+want[q2], mk)
	for _, q := range []string{q1, q2} {
		eventually(t, within, fmt.Sprintf("relay_queue_backlog of %s at %d", q, want[q]), func() bool { return backlog(q) == float64(want[q]) })
	}
	run.r.Breaker("downstream").ForceOpen()
	for _, q := range []string{q1, q2} {
		if code, body := run.admin(t, "/admin/queues/"+q+"/resume", adminToken); code != http.StatusOK {
			t.Fatalf("resume %s: %d %s", q, code, body)
		}
	}
	for _, q := range []string{q1, q2} {
		eventually(t, within, "relay_queue_backlog of "+q+" 0 while the breaker is open", func() bool { return backlog(q) == 0 })
		if m, _ := in.depth(q); m != want[q] {
			t.Errorf("%d tasks waiting in %s while the breaker is open, want %d", m, q, want[q])
		}
	}
	run.r.Breaker("downstream").Reset()
	l.check(l.settle(30*time.Second, []string{q1 + ".dlq", q2 + ".dlq"}, q1, q2), 0)
}

// TestFleetShareFollowsReloads turns a breaker's share on and off by
// reloading two relays' configuration files, with no restart: unshared,
// an opening stays with its relay; shared, it opens the other relay's
// breaker of that name; unshared again at one relay, neither hears of the
// other; shared again, they act as one once more.
func TestFleetShareFollowsReloads(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, echo)
	name := "fleet_" + e.id
	q := e.name("it.fleet.reshare")
	dir := t.TempDir()
	members := []string{"a", "b"}
	paths := map[string]string{}
	write := func(member string, share bool) {
		t.Helper()
		c := fleetConfig{URL: ds.URL, Queue: q, Breaker: name,
			BreakerFields: fmt.Sprintf("failure_threshold: 5, reset_timeout: 60s, share: %t", share)}
		yaml := strings.Replace(e.baseYAML(), "instance: it-"+e.id, "instance: it-"+e.id+"-"+member, 1) + c.yaml()
		paths[member] = filepath.Join(dir, member+".yaml")
		if err := os.WriteFile(paths[member], []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runs := map[string]*running{}
	for _, m := range members {
		write(m, false)
		runs[m], _ = e.startRelayFrom(paths[m])
	}
	br := func(m string) *breaker.Breaker { return runs[m].r.Breaker(name) }
	reload := func(m string, share bool) {
		t.Helper()
		write(m, share)
		if problems, err := runs[m].r.Reload(); err != nil {
			t.Fatalf("reload of %s: %v %v", m, problems, err)
		}
		if got := runs[m].r.Breaker(name); got != br(m) {
			t.Fatalf("reload of %s replaced the breaker", m)
		}
		_, body := runs[m].get(t, "/health")
		var h struct {
			Breakers map[string]struct {
				Shared bool `json:"shared"`
			} `json:"circuit_breakers"`
		}
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("/health of %s: %v", m, err)
		}
		if got := h.Breakers[name].Shared; got != share {
			t.Fatalf("/health of %s after the reload: %s shared %t, want %t", m, name, got, share)
		}
	}
	// opens forces from's breaker open and reports whether to's follows
	// within wait; both are closed again after.
	opens := func(from, to string, wait time.Duration) bool {
		t.Helper()
		br(from).ForceOpen()
		deadline := time.Now().Add(wait)
		followed := false
		for time.Now().Before(deadline) {
			if br(to).State() == breaker.Open {
				followed = true
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, m := range members {
			br(m).Reset()
		}
		return followed
	}

	if opens("a", "b", time.Second) {
		t.Fatal("not shared: a's opening opened b")
	}
	reload("a", true)
	reload("b", true)
	if !opens("a", "b", 5*time.Second) {
		t.Fatal("shared by reloads: a's opening did not open b within 5s")
	}
	if !opens("b", "a", 5*time.Second) {
		t.Fatal("shared by reloads: b's opening did not open a within 5s")
	}
	reload("a", false)
	if opens("a", "b", time.Second) {
		t.Fatal("a unshared: its opening still opened b")
	}
	if opens("b", "a", time.Second) {
		t.Fatal("a unshared: b's opening still opened a")
	}
	reload("a", true)
	if !opens("a", "b", 5*time.Second) {
		t.Fatal("a shared again: its opening did not open b within 5s")
	}
	if !opens("b", "a", 5*time.Second) {
		t.Fatal("a shared again: b's opening did not open a within 5s")
	}
}
