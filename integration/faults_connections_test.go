package integration

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/relay"
)

// relayConnPrefix is the start of the connection_name of every broker
// connection of the relay configured by e.
func relayConnPrefix(e *env) string { return "relay it-" + e.id + " " }

// waitProgress waits until at least more replies than before have come.
func waitProgress(t *testing.T, l *ledger, before, more int) int {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d more replies", more), func() bool { return l.rep.count() >= before+more })
	return l.rep.count()
}

// TestFaultsConnectionsCut cuts the relay's broker connections mid-stream,
// three times at the TCP level (toxiproxy drops them and refuses new ones
// for a moment) and twice from the broker's side (rabbitmqctl
// close_connection), while tasks keep coming.
func TestFaultsConnectionsCut(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	px := newFaultProxy(t, e.url)
	ds := newDownstream(t, paced(10*time.Millisecond))
	q := e.name("it.faults.cut")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}}.yaml())
	cfg.AMQP.URL = px.url(e.url)
	run := e.startRelay(cfg)
	l := e.ledger("broker connections cut mid-stream (3 TCP cuts, 2 broker-side closes)", in)
	body := func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) }

	// Tasks keep coming from a publisher of their own through every
	// fault; on top, each fault strikes with a backlog in hand.
	wait := l.publishInBackground(e.url, q, 100000, 100300, 20*time.Millisecond, body)
	next := 0
	l.backlog(e.url, q, &next, 100, 150, body)
	seen := waitProgress(t, l, 0, 20)
	cuts := 0
	for range 3 {
		l.backlog(e.url, q, &next, 100, 150, body)
		px.cut(300 * time.Millisecond)
		cuts++
		eventually(t, 30*time.Second, "relay ready after a cut", run.r.Ready)
		seen = waitProgress(t, l, seen, 20)
	}

	if path, whyNot := rabbitmqctl(t, e.url); path == "" {
		t.Logf("broker-side closes skipped: %s", whyNot)
	} else {
		for range 2 {
			eventually(t, 30*time.Second, "the broker lists the relay's two connections", func() bool {
				return len(brokerConnections(t, path, relayConnPrefix(e))) == 2
			})
			l.backlog(e.url, q, &next, 100, 150, body)
			if n := closeBrokerConnections(t, path, relayConnPrefix(e)); n != 2 {
				t.Fatalf("closed %d relay connections, want 2 (publish and consume)", n)
			}
			cuts++
			eventually(t, 30*time.Second, "relay ready after close_connection", run.r.Ready)
			seen = waitProgress(t, l, seen, 20)
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}

	l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	run.stop(t)
	if m, c := in.depth(q); m != 0 || c != 0 {
		t.Fatalf("after stop: %d tasks left unacked in %s, %d consumers", m, q, c)
	}
	l.collectDead(q + ".dlq")
	// At most the tasks in hand (prefetch) are redone per cut.
	l.check(l.tally(), cuts*cfg.Work[0].Prefetch)
}

// TestFaultsSlowBrokerLinkAndResetWhileUnconfirmed runs traffic through
// added latency and a bandwidth limit, then resets the connections while
// replies wait for their confirms, then black-holes the link.
func TestFaultsSlowBrokerLinkAndResetWhileUnconfirmed(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	px := newFaultProxy(t, e.url)
	ds := newDownstream(t, echo)
	q := e.name("it.faults.slowlink")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}}.yaml())
	cfg.AMQP.URL = px.url(e.url)
	cfg.AMQP.Heartbeat = time.Second // so a black-holed link is noticed in seconds
	run := e.startRelay(cfg)
	l := e.ledger("broker latency 100ms±50ms and 32 KB/s; resets while replies are unconfirmed; a black-holed link", in)
	body := func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprintf("%0200d", i))) }

	lat := []string{
		px.toxic(`{"name":"lat_down","type":"latency","stream":"downstream","attributes":{"latency":100,"jitter":50}}`),
		px.toxic(`{"name":"lat_up","type":"latency","stream":"upstream","attributes":{"latency":100,"jitter":50}}`),
	}
	bw := []string{
		px.toxic(`{"name":"bw_down","type":"bandwidth","stream":"downstream","attributes":{"rate":32}}`),
		px.toxic(`{"name":"bw_up","type":"bandwidth","stream":"upstream","attributes":{"rate":32}}`),
	}
	const n1 = 120
	l.publishNow(e.url, q, 0, n1, body)
	eventually(t, 60*time.Second, "every task through the slow link answered", func() bool { return l.tally().Lost == 0 })
	for _, name := range bw {
		px.remove(name)
	}
	px.remove(lat[1])

	// Confirms now come back 300ms late: at any moment many replies are
	// published but unconfirmed. Reset every connection in that state.
	px.remove(lat[0])
	px.toxic(`{"name":"lat_down","type":"latency","stream":"downstream","attributes":{"latency":300}}`)
	const n2 = 150
	l.publishNow(e.url, q, n1, n1+n2, body)
	seen := waitProgress(t, l, l.rep.count(), 10)
	resets := 0
	next := n1 + n2
	for range 2 {
		l.backlog(e.url, q, &next, 40, 60, body)
		reset := px.toxic(`{"name":"reset","type":"reset_peer","stream":"downstream","attributes":{"timeout":0}}`)
		eventually(t, 30*time.Second, "relay notices the reset", func() bool { return !run.r.Ready() })
		px.remove(reset)
		resets++
		eventually(t, 30*time.Second, "relay ready after the reset", run.r.Ready)
		seen = waitProgress(t, l, seen, 10)
	}
	px.remove("lat_down")

	// A black hole: the link stays open but nothing gets through, no
	// reset, no FIN. Only heartbeats can tell; the relay must not wait
	// for confirms forever.
	l.backlog(e.url, q, &next, 100, 100, body)
	seen = waitProgress(t, l, seen, 10)
	hole := []string{
		px.toxic(`{"name":"hole_down","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`),
		px.toxic(`{"name":"hole_up","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`),
	}
	eventually(t, 30*time.Second, "relay notices the black hole", func() bool { return !run.r.Ready() })
	for _, name := range hole {
		px.remove(name)
	}
	resets++
	eventually(t, 60*time.Second, "relay ready after the black hole", run.r.Ready)

	l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	run.stop(t)
	if m, _ := in.depth(q); m != 0 {
		t.Fatalf("after stop: %d tasks left unacked in %s", m, q)
	}
	l.check(l.tally(), resets*cfg.Work[0].Prefetch)
}

// TestFaultsOneConsumerPerQueueAfterManyReconnects cuts the connections
// of a relay with several work queues and an outbound queue again and
// again, one breaker opening and closing meanwhile, and then counts the
// consumers and connections the broker shows: exactly one consumer per
// queue and two connections, none leaked.
func TestFaultsOneConsumerPerQueueAfterManyReconnects(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	px := newFaultProxy(t, e.url)
	ds := newDownstream(t, paced(5*time.Millisecond))
	var failing atomic.Bool
	failing.Store(true)
	flaky := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			status(503)(w, r)
			return
		}
		echo(w, r)
	})
	queues := []string{e.name("it.faults.many.a"), e.name("it.faults.many.b"), e.name("it.faults.many.c")}
	fq := e.name("it.faults.many.flaky")
	oq := e.name("it.faults.many.out")
	x := e.name("it.faults.many.x")
	dest := e.name("it.faults.many.dest")
	e.own([]string{dest}, []string{x})
	if err := e.ch.ExchangeDeclare(x, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ch.QueueDeclare(dest, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.ch.QueueBind(dest, "#", x, false, nil); err != nil {
		t.Fatal(err)
	}
	cfg := e.loadConfig(faultConfig{
		URL: ds.URL, Queues: queues, Outbound: oq, Exchanges: []string{x},
		// The flaky target's breaker opens after 3 failures and probes
		// after 300ms, so intake pauses and resumes between the cuts.
		ExtraBreakers: "  flaky: {failure_threshold: 3, reset_timeout: 300ms}\n",
		ExtraTargets:  fmt.Sprintf("  flaky: {url: %q, timeout: 2s, breaker: flaky, bulkhead: pool, backoff: downstream}\n", flaky.URL),
		ExtraWork:     fmt.Sprintf("  - {queue: %s, target: flaky, redelivery: [500ms, 1s, 2s]}\n", fq),
	}.yaml())
	cfg.AMQP.URL = px.url(e.url)
	run := e.startRelay(cfg)
	l := e.ledger("many reconnects: 4 work queues and 1 outbound queue, 6 cuts, a breaker cycling", in)

	const perQueue = 60
	var waits []func() error
	for k, q := range append(append([]string(nil), queues...), fq) {
		from := k * perQueue
		waits = append(waits, l.publishInBackground(e.url, q, from, from+perQueue, 20*time.Millisecond, func(i int) amqp.Publishing {
			return l.task(i, []byte(fmt.Sprint("task ", i)))
		}))
	}
	from := len(waits) * perQueue
	waits = append(waits, l.publishInBackground(e.url, oq, from, from+perQueue, 20*time.Millisecond, func(i int) amqp.Publishing {
		m := l.task(i, []byte(fmt.Sprint("event ", i)))
		m.ReplyTo = ""
		m.Headers = amqp.Table{relay.HeaderExchange: x, relay.HeaderRoutingKey: "ev"}
		return m
	}))

	const cuts = 6
	for k := range cuts {
		time.Sleep(200 * time.Millisecond)
		if k == 2 {
			failing.Store(false)
		}
		px.cut(100 * time.Millisecond)
		eventually(t, 30*time.Second, "relay ready after a cut", run.r.Ready)
	}
	for _, w := range waits {
		if err := w(); err != nil {
			t.Fatal(err)
		}
	}
	flakyBreaker := run.r.Breaker("flaky")
	eventually(t, 30*time.Second, "flaky breaker closed", func() bool { return flakyBreaker.State().String() == "closed" })
	l.dests = []string{dest}
	tl := l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)

	for _, q := range append(append(append([]string(nil), queues...), fq), oq) {
		eventually(t, 10*time.Second, "one consumer on "+q, func() bool { _, c := in.depth(q); return c == 1 })
		// And it stays one: no leaked consumer shows up late.
		if _, c := in.depth(q); c != 1 {
			t.Fatalf("%d consumers on %s after %d reconnects, want 1", c, q, cuts)
		}
	}
	if path, whyNot := rabbitmqctl(t, e.url); path == "" {
		t.Logf("connection count skipped: %s", whyNot)
	} else {
		var conns []string
		eventually(t, 30*time.Second, "the broker lists the relay's two connections", func() bool {
			conns = brokerConnections(t, path, relayConnPrefix(e))
			return len(conns) == 2
		})
		// And it stays two: no leaked connection shows up late.
		time.Sleep(time.Second)
		if conns = brokerConnections(t, path, relayConnPrefix(e)); len(conns) != 2 {
			t.Fatalf("broker shows %d relay connections after %d reconnects, want 2: %v", len(conns), cuts, conns)
		}
	}
	run.stop(t)
	l.check(tl, cuts*cfg.AMQP.Prefetch*(len(queues)+2))
}

// TestFaultsStopWhileBrokerUnreachable stops the relay while its broker
// cannot be reached, tasks in hand: it must return soon after
// shutdown_timeout (their outcomes cannot be published, so they go back),
// and a new relay finishes them once the broker is back.
func TestFaultsStopWhileBrokerUnreachable(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	px := newFaultProxy(t, e.url)
	ds := newDownstream(t, paced(100*time.Millisecond))
	q := e.name("it.faults.unreachable")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}}.yaml())
	cfg.AMQP.URL = px.url(e.url)
	cfg.ShutdownTimeout = time.Second
	run := e.startRelay(cfg)
	l := e.ledger("relay stopped while the broker is unreachable, then restarted", in)
	l.publishNow(e.url, q, 0, 300, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) })
	waitProgress(t, l, 0, 20)

	px.p.Stop()
	eventually(t, 30*time.Second, "relay notices the broker is gone", func() bool { return !run.r.Ready() })
	// shutdown_timeout, then a bounded wind-down (signals get 3s to flush).
	limit := cfg.ShutdownTimeout + 6*time.Second
	took, ok := run.stopWithin(t, limit)
	if !ok {
		t.Fatalf("relay stopped while the broker is unreachable has not returned after %s", limit)
	}
	t.Logf("stopped while unreachable: Run returned after %s", took.Round(time.Millisecond))
	if err := px.p.Start(); err != nil {
		t.Fatal(err)
	}

	run = e.startRelay(cfg)
	tl := l.settle(60*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	run.stop(t)
	if m, _ := in.depth(q); m != 0 {
		t.Fatalf("after stop: %d tasks left unacked in %s", m, q)
	}
	l.check(tl, cfg.Work[0].Prefetch)
}
