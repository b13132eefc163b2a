package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/relay"
)

const adminToken = "it-admin-token"

// startRelayFrom runs a relay in process from the configuration file at
// path, which Reload reads again.
func (e *env) startRelayFrom(path string) (*running, *config.Config) {
	e.t.Helper()
	src := config.Source{Path: path, Environ: func() []string { return nil }}
	cfg, err := src.Load()
	if err != nil {
		e.t.Fatalf("test configuration is invalid:\n%v", err)
	}
	e.ownConfig(cfg)
	r, err := relay.New(cfg, relay.Options{Logger: testLogger(e.t), Source: src})
	if err != nil {
		e.t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- r.Run(ctx) }()
	e.t.Cleanup(func() { run.stop(e.t) })
	eventually(e.t, 15*time.Second, "relay ready", r.Ready)
	return run, cfg
}

// ownConfig records cfg's queues and exchanges for cleanup.
func (e *env) ownConfig(cfg *config.Config) {
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
}

// admin posts to an admin endpoint with the token (none when "") and
// returns the status and the body.
func (run *running) admin(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+run.r.Addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func breakerState(t *testing.T, run *running, name string) string {
	t.Helper()
	_, body := run.get(t, "/health")
	var h struct {
		CircuitBreakers map[string]struct {
			State string `json:"state"`
		} `json:"circuit_breakers"`
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/health: %v: %s", err, body)
	}
	return h.CircuitBreakers[name].State
}

// eventBy finds an event with routing key key whose details.by is
// "operator".
func eventBy(t *testing.T, events *replies, key string) bool {
	t.Helper()
	for _, m := range events.all() {
		if m.RoutingKey != key {
			continue
		}
		var ev struct {
			Details map[string]any `json:"details"`
		}
		if json.Unmarshal(m.Body, &ev) == nil && ev.Details["by"] == "operator" {
			return true
		}
	}
	return false
}

// TestAdminEndpoints drives every admin endpoint against a running relay:
// the token rules, unknown names, and each action's effect on /health, on
// the queue's consumers at the broker and on the events published.
func TestAdminEndpoints(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	ds := newDownstream(t, echo)
	q := e.name("it.admin")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}}.yaml())
	cfg.HTTP.AdminToken = adminToken
	run := e.startRelay(cfg)
	events := e.events(cfg)

	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/admin/breakers/downstream/open", "", http.StatusUnauthorized},
		{"/admin/breakers/downstream/open", "wrong", http.StatusForbidden},
		{"/admin/breakers/nope/open", adminToken, http.StatusNotFound},
		{"/admin/queues/nope/pause", adminToken, http.StatusNotFound},
	} {
		if code, body := run.admin(t, c.path, c.token); code != c.want {
			t.Errorf("POST %s (token %q): %d %s, want %d", c.path, c.token, code, body, c.want)
		}
	}
	if st := breakerState(t, run, "downstream"); st != "closed" {
		t.Fatalf("a refused request changed the breaker: %s", st)
	}

	// Open: held open through reset timeouts (500ms), intake paused.
	if code, body := run.admin(t, "/admin/breakers/downstream/open", adminToken); code != http.StatusOK || !strings.Contains(body, `"state":"open"`) {
		t.Fatalf("open: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "no consumer while forced open", func() bool { _, c := in.depth(q); return c == 0 })
	time.Sleep(1500 * time.Millisecond)
	if st := breakerState(t, run, "downstream"); st != "open" {
		t.Fatalf("forced open breaker is %s after three reset timeouts", st)
	}
	eventually(t, 10*time.Second, "breaker open event by operator", func() bool { return eventBy(t, events, "breaker.downstream.open") })

	// Close: consuming again.
	if code, body := run.admin(t, "/admin/breakers/downstream/close", adminToken); code != http.StatusOK {
		t.Fatalf("close: %d %s", code, body)
	}
	if st := breakerState(t, run, "downstream"); st != "closed" {
		t.Fatalf("closed breaker is %s", st)
	}
	eventually(t, 10*time.Second, "consuming after close", func() bool { _, c := in.depth(q); return c == 1 })
	eventually(t, 10*time.Second, "breaker closed event by operator", func() bool { return eventBy(t, events, "breaker.downstream.closed") })

	// Pause: tasks wait in the broker; resume: they are answered.
	if code, body := run.admin(t, "/admin/queues/"+q+"/pause", adminToken); code != http.StatusOK || !strings.Contains(body, "paused") {
		t.Fatalf("pause: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "no consumer while paused", func() bool { _, c := in.depth(q); return c == 0 })
	l := e.ledger("admin pause and resume", in)
	l.publishNow(e.url, q, 0, 20, func(i int) amqp.Publishing { return l.task(i, []byte("paused")) })
	time.Sleep(500 * time.Millisecond)
	if m, _ := in.depth(q); m != 20 {
		t.Fatalf("%d tasks waiting in the paused queue, want 20", m)
	}
	eventually(t, 10*time.Second, "queue paused event", func() bool { return eventBy(t, events, "queue."+routingWord(q)+".paused") })
	if code, body := run.admin(t, "/admin/queues/"+q+"/resume", adminToken); code != http.StatusOK {
		t.Fatalf("resume: %d %s", code, body)
	}
	tl := l.settle(30*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	l.check(tl, 0)
	eventually(t, 10*time.Second, "queue resumed event", func() bool { return eventBy(t, events, "queue."+routingWord(q)+".resumed") })
}

// TestAdminOffWithoutAToken checks that every admin path answers 404
// when no token is configured.
func TestAdminOffWithoutAToken(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.admin.off")
	run := e.startRelay(e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}}.yaml()))
	for _, p := range []string{"/admin/breakers/downstream/open", "/admin/queues/" + q + "/pause", "/admin/reload"} {
		for _, tok := range []string{"", "anything"} {
			if code, _ := run.admin(t, p, tok); code != http.StatusNotFound {
				t.Errorf("POST %s (token %q) = %d without a configured token, want 404", p, tok, code)
			}
		}
	}
	if st := breakerState(t, run, "downstream"); st != "closed" {
		t.Fatalf("breaker %s", st)
	}
}

func routingWord(s string) string { return strings.ReplaceAll(s, ".", "_") }

// reloadYAML is a reload test's configuration: the work queues queues,
// with threshold and pool size as given.
func reloadYAML(e *env, url string, queues []string, threshold, pool int) string {
	var b strings.Builder
	b.WriteString(e.baseYAML())
	fmt.Fprintf(&b, `breakers:
  defaults: {failure_threshold: %d, success_threshold: 2, reset_timeout: 500ms, half_open_timeout: 5s, window_size: 60s, timeout: 10s}
  downstream: {}
  spare: {}
  amqp: {}
bulkheads:
  pool: {size: %d, overflow: 2, timeout: 5s}
backoff:
  defaults: {initial: 10ms, max: 50ms, multiplier: 2, jitter: full, max_retries: 2}
  svc: {}
targets:
  svc: {url: %q, timeout: 2s, breaker: downstream, bulkhead: pool, backoff: svc}
work:
`, threshold, pool, url)
	for _, q := range queues {
		fmt.Fprintf(&b, "  - {queue: %s, target: svc, redelivery: [500ms]}\n", q)
	}
	b.WriteString("outbound: []\n")
	return b.String()
}

// TestReloadUnderLoad reloads the configuration ten times while 2,000
// tasks go through: thresholds and pool sizes change, a queue is added,
// one removed (and later added back, so its waiting tasks are answered),
// and one of the files is invalid. Every task is answered exactly as
// without reloads, the breaker a reload keeps keeps its state, and the
// invalid file is refused with its problems while the old configuration
// runs on.
func TestReloadUnderLoad(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	ds := newDownstream(t, paced(2*time.Millisecond))
	q1, q2, q3 := e.name("it.reload.a"), e.name("it.reload.b"), e.name("it.reload.c")
	for _, q := range []string{q3} { // declared before the relay knows it
		e.own([]string{q, q + ".dlq", relay.DelayQueueName(q, 500*time.Millisecond)}, nil)
		if _, err := e.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "relay.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadYAML(e, ds.URL, []string{q1, q2}, 100, 4))
	run, _ := e.startRelayFrom(path)
	spare := run.r.Breaker("spare")
	spare.ForceOpen()

	l := e.ledger("2,000 tasks through ten reloads (thresholds, pools, a queue added and one removed, one invalid file)", in)
	const n = 2000
	published := make(chan error, 1)
	go func() {
		published <- l.publishRouted(e.url, 0, n, time.Millisecond, func(i int) (string, amqp.Publishing) {
			return []string{q1, q2, q3}[i%3], l.task(i, []byte(fmt.Sprint("task ", i)))
		})
	}()
	wait := func() error { return <-published }
	steps := []struct {
		yaml    string
		invalid bool
	}{
		{reloadYAML(e, ds.URL, []string{q1, q2}, 50, 8), false},
		{reloadYAML(e, ds.URL, []string{q1, q2}, 50, 2), false},
		{reloadYAML(e, ds.URL, []string{q1, q2, q3}, 80, 6), false}, // q3 added
		{reloadYAML(e, ds.URL, []string{q1, q3}, 80, 6), false},     // q2 removed
		{reloadYAML(e, ds.URL, []string{q1, q3}, 30, 3), false},
		{strings.Replace(reloadYAML(e, ds.URL, []string{q1, q3}, 30, 3), "timeout: 2s", "timeout: 2", 1), true},
		{reloadYAML(e, ds.URL, []string{q1, q3}, 60, 12), false},
		{reloadYAML(e, ds.URL, []string{q1, q2, q3}, 60, 12), false}, // q2 back
		{reloadYAML(e, ds.URL, []string{q1, q2, q3}, 70, 5), false},
		{reloadYAML(e, ds.URL, []string{q1, q2, q3}, 100, 4), false},
	}
	for i, s := range steps {
		time.Sleep(300 * time.Millisecond)
		write(s.yaml)
		problems, err := run.r.Reload()
		if s.invalid {
			if err == nil || len(problems) == 0 || !strings.Contains(strings.Join(problems, "\n"), "targets.svc.timeout") {
				t.Fatalf("reload %d of an invalid file: %v %v, want refused naming targets.svc.timeout", i+1, problems, err)
			}
			if !run.r.Ready() {
				t.Fatalf("not ready after a refused reload")
			}
			continue
		}
		if err != nil {
			t.Fatalf("reload %d: %v %v", i+1, problems, err)
		}
		if st := spare.State().String(); st != "open" {
			t.Fatalf("reload %d: the forced-open breaker spare is %s", i+1, st)
		}
		switch i {
		case 3: // q2 removed: its state series go, q1's stay
			m := scrape(t, run)
			queueStateSeries(t, m, q2, false)
			queueStateSeries(t, m, q1, true)
		case 7: // q2 back
			queueStateSeries(t, scrape(t, run), q2, true)
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	all := []string{q1, q2, q3}
	var dlqs, idle []string
	for _, q := range all {
		dlqs = append(dlqs, q+".dlq")
		idle = append(idle, q, relay.DelayQueueName(q, 500*time.Millisecond))
	}
	tl := l.settle(90*time.Second, dlqs, idle...)
	if tl.DeadLettered != 0 {
		l.mu.Lock()
		for id := range l.dead {
			t.Logf("dead-lettered %s: %s", id, l.reasons[id])
		}
		l.mu.Unlock()
		t.Errorf("%d tasks dead-lettered; a reload must not fail tasks", tl.DeadLettered)
	}
	l.check(tl, 0)
}

// queueStateSeries checks that the series telling queue's present state
// (backlog, tasks in flight, target) are in m, or that none is.
func queueStateSeries(t *testing.T, m promText, queue string, want bool) {
	t.Helper()
	for _, name := range []string{"relay_queue_backlog", "relay_tasks_in_flight", "relay_work_queue_info"} {
		n := 0
		for _, s := range m {
			if s.name == name && s.labels["queue"] == queue {
				n++
			}
		}
		switch {
		case want && n != 1:
			t.Errorf("%s{queue=%q}: %d series, want 1", name, queue, n)
		case !want && n != 0:
			t.Errorf("%s{queue=%q} still in /metrics after the queue was removed", name, queue)
		}
	}
}

// TestSIGHUPReloadsAndNeverEndsTheProcess sends SIGHUP to the relay
// binary three times, once with an invalid file: the process keeps
// running and ready, and exits 0 on SIGTERM.
func TestSIGHUPReloadsAndNeverEndsTheProcess(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.sighup")
	fc := faultConfig{URL: ds.URL, Queues: []string{q}}
	e.loadConfig(fc.yaml())
	path := writeConfig(t, e, fc.yaml())
	p := startBinary(t, path)
	for i, content := range []string{
		e.baseYAML() + strings.Replace(fc.yaml(), "failure_threshold: 1000", "failure_threshold: 7", 1),
		e.baseYAML() + strings.Replace(fc.yaml(), "timeout: 2s", "timeout: 2", 1),
		e.baseYAML() + fc.yaml(),
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		want := "configuration reloaded"
		if i == 1 {
			want = "configuration reload refused"
		}
		eventually(t, 10*time.Second, "the relay logs "+want, func() bool { return strings.Count(p.log.String(), want) >= 1+i/2 })
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("SIGHUP %d ended the relay: %v", i+1, err)
		default:
		}
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("not ready after SIGHUP %d: %v", i+1, err)
		}
		resp.Body.Close()
	}
	if _, err := p.signal(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
