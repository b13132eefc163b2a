package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
	"github.com/vsm-relay/relay/relay"
)

// newEnvAt is newEnv on a broker of the test's choosing (a node of the
// private cluster).
func newEnvAt(t *testing.T, url string) *env {
	t.Helper()
	e := &env{t: t, url: url, id: strings.TrimPrefix(testbroker.Unique(""), ".")}
	e.ch = testbroker.Channel(t, url)
	t.Cleanup(e.cleanup)
	return e
}

// closedURL is an AMQP URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "amqp://guest:guest@" + addr + "/"
}

// A node list whose first node is down: the relay connects to the next
// one at once, not after a reconnect backoff.
func TestClusterFirstNodeDownNextNodeAtOnce(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.nodes")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}}.yaml())
	cfg.AMQP.URL = closedURL(t) + "," + e.url
	cfg.AMQP.Reconnect.Initial, cfg.AMQP.Reconnect.Max = 10*time.Second, 20*time.Second
	start := time.Now()
	run := e.startRelay(cfg)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("ready after %s: the relay waited a backoff (10s) before trying the next node", took)
	}
	_, body := run.get(t, "/health")
	if !strings.Contains(body, `"node":"`+brokerAddr(t, e.url)+`"`) {
		t.Errorf("/health does not name the node %s: %s", brokerAddr(t, e.url), body)
	}
}

// A queue that exists as a classic queue while the configuration asks for
// a quorum one stops the relay at start, naming the queue, both types and
// the key.
func TestQueueOfAnotherTypeIsAStartUpError(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.qtype")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}}.yaml())
	cfg.Work[0].QueueType = "quorum"
	if _, err := e.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(cfg, relay.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if err == nil {
		t.Fatal("the relay ran on a classic queue configured as quorum")
	}
	for _, want := range []string{q, "classic", "quorum", "work[0].queue_type"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start-up error %q does not name %q", err, want)
		}
	}
}

// A task that kills the relay each time it is worked on ends in the
// dead-letter queue after the delivery limit, with a reason that says so,
// while the other tasks flow; for both queue types.
func TestDeliveryLimitStopsATaskThatKillsTheRelay(t *testing.T) {
	for _, qt := range []string{"classic", "quorum"} {
		t.Run(qt, func(t *testing.T) {
			e := newEnv(t)
			in := e.inspector()
			var current atomic.Pointer[proc]
			ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.Header.Get("X-Correlation-ID"), "poison-") {
					if p := current.Load(); p != nil {
						_ = p.cmd.Process.Kill()
					}
					hangUp(w, r)
					return
				}
				echo(w, r)
			})
			q := e.name("it.poison." + qt)
			fc := faultConfig{URL: ds.URL, Queues: []string{q}}
			cfg := e.loadConfig(fc.yaml())
			path := writeConfig(t, e, fc.yaml())
			if _, err := e.ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": qt}); err != nil {
				t.Fatal(err)
			}
			env := []string{"RELAY_AMQP_QUEUE_TYPE=" + qt, "RELAY_AMQP_DELIVERY_LIMIT=3", "RELAY_AMQP_PREFETCH=1"}
			l := e.ledger("a task that kills the relay each time ("+qt+" queue, delivery limit 3)", in)
			poison := l.task(0, []byte("poison"))
			poison.CorrelationId = "poison-" + poison.CorrelationId
			l.publishNow(e.url, q, 0, 1, func(int) amqp.Publishing { return poison })
			l.publishNow(e.url, q, 1, 40, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) })

			deadline := time.Now().Add(90 * time.Second)
			restarts := 0
			for {
				p := startBinary(t, path, env...)
				current.Store(p)
				select {
				case err := <-p.done:
					p.done <- err
					restarts++
					if time.Now().After(deadline) {
						t.Fatalf("still crashing after %d restarts", restarts)
					}
					continue
				case <-time.After(5 * time.Second):
				}
				l.collectDead(q + ".dlq")
				if l.tally().Lost == 0 {
					_, _ = p.signal(syscall.SIGTERM, 20*time.Second)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("tasks without an outcome after %d restarts: %+v", restarts, l.tally())
				}
			}
			tl := l.settle(30*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
			reason := l.reason(poison.CorrelationId)
			if !strings.Contains(reason, "delivered 3 times without an outcome") {
				t.Errorf("the poison task's dead letter says %q, want the delivery limit", reason)
			}
			if tl.DeadLettered != 1 {
				t.Errorf("%d dead-lettered, want the poison task only", tl.DeadLettered)
			}
			if restarts != 3 {
				t.Errorf("the relay was killed %d times, want 3 (the delivery limit)", restarts)
			}
			t.Logf("relay killed %d times by the poison task", restarts)
			l.check(tl, restarts)
		})
	}
}

// A task handed back through fifteen breaker openings is still answered,
// not dead-lettered by the delivery limit: the relay's own hand-backs do
// not count as deliveries. The task waits for a bulkhead slot that a task
// of another queue holds; the breaker is forced open meanwhile, so when
// the slot comes the breaker turns the task away untouched.
//
// On a quorum queue the hand-back's copy, published as the breaker pauses
// intake, must wait for the consumer's cancel: sent to the consumer being
// cancelled, it would be returned by the broker and come back flagged
// redelivered (see broker.Consumer.AwaitCancels), and with a delivery
// limit of 2 the second such return dead-lettered it.
func TestHandBacksThroughFifteenBreakerOpeningsSpendNoDelivery(t *testing.T) {
	for _, qt := range []string{"classic", "quorum"} {
		t.Run(qt, func(t *testing.T) {
			e := newEnv(t)
			in := e.inspector()
			var mu sync.Mutex
			release := map[string]chan struct{}{}
			seen := make(chan string, 100)
			ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
				id := r.Header.Get("X-Correlation-ID")
				mu.Lock()
				ch := release[id]
				mu.Unlock()
				seen <- id
				if ch != nil {
					<-ch
				}
				echo(w, r)
			})
			q, blockers := e.name("it.handback."+qt), e.name("it.handback.blockers."+qt)
			// The blockers go to the same downstream through the same
			// pool, behind a breaker of their own.
			fc := faultConfig{
				URL: ds.URL, Queues: []string{q},
				ExtraBreakers: "  other: {}\n",
				ExtraTargets:  fmt.Sprintf("  svc2: {url: %q, timeout: 30s, breaker: other, bulkhead: pool, backoff: downstream}\n", ds.URL),
				ExtraWork:     "  - {queue: " + blockers + ", target: svc2, redelivery: [500ms]}\n",
			}
			yaml := strings.Replace(fc.yaml(), "pool: {size: 8, overflow: 2, timeout: 5s}", "pool: {size: 1, overflow: 0, timeout: 30s}", 1)
			cfg := e.loadConfig(yaml)
			cfg.AMQP.DeliveryLimit = 2
			for i := range cfg.Work {
				cfg.Work[i].QueueType, cfg.Work[i].DeliveryLimit = qt, 2
			}
			run := e.startRelay(cfg)
			t.Cleanup(func() {
				// A failed test must not leave the downstream's handlers
				// waiting: its server's Close waits for them.
				mu.Lock()
				defer mu.Unlock()
				for id, ch := range release {
					select {
					case <-ch:
					default:
						close(ch)
					}
					delete(release, id)
				}
			})
			b := run.r.Breaker("downstream")
			l := e.ledger("a task handed back through 15 breaker openings ("+qt+")", in)
			b.ForceOpen()
			eventually(t, 10*time.Second, "intake paused by the open breaker", func() bool { _, c := in.depth(q); return c == 0 })
			l.publishNow(e.url, q, 0, 1, func(i int) amqp.Publishing { return l.task(i, []byte("held back")) })
			const rounds = 15
			for i := 1; i <= rounds; i++ {
				// A blocker of the other queue takes the pool's one slot.
				id := l.id(1000 + i)
				gate := make(chan struct{})
				mu.Lock()
				release[id] = gate
				mu.Unlock()
				l.publishNow(e.url, blockers, 1000+i, 1000+i+1, func(n int) amqp.Publishing { return l.task(n, []byte("blocker")) })
				waitSeen(t, seen, id)
				b.Reset()
				// The task comes and waits for the slot, never flagged
				// redelivered: no hand-back ended as a delivery.
				eventually(t, 10*time.Second, "the task in hand", func() bool {
					if n := counter(run, "relay_redeliveries_total", "queue", q); n != 0 {
						t.Fatalf("round %d: the task came flagged redelivered (%v times so far): a hand-back spent a delivery", i, n)
					}
					return inFlight(run, q) == 1
				})
				time.Sleep(50 * time.Millisecond)
				b.ForceOpen()
				mu.Lock()
				close(gate)
				delete(release, id)
				mu.Unlock()
				eventually(t, 10*time.Second, fmt.Sprintf("hand-back %d", i), func() bool {
					return counter(run, "relay_tasks_total", "queue", q, "outcome", "requeued") >= float64(i)
				})
			}
			b.Reset()
			tl := l.settle(30*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
			if l.reason(l.id(0)) != "" {
				t.Fatalf("the task was dead-lettered: %s", l.reason(l.id(0)))
			}
			l.check(tl, 0)
		})
	}
}

func waitSeen(t *testing.T, seen <-chan string, id string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-seen:
			if got == id {
				return
			}
		case <-timeout:
			t.Fatalf("the downstream never saw %s", id)
		}
	}
}

func counter(run *running, name string, kv ...string) float64 {
	mfs, err := run.r.Registry().Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(kv); i += 2 {
				if label(m, kv[i]) != kv[i+1] {
					continue next
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// queueLeader returns the Erlang node that leads quorum queue q.
func queueLeader(t *testing.T, node, q string) string {
	t.Helper()
	out := testbroker.Ctl(t, node, "list_queues", "name", "leader", "--no-table-headers", "-q")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == q {
			return f[1]
		}
	}
	t.Fatalf("no leader for %s in:\n%s", q, out)
	return ""
}

// Three relays on quorum queues on a three-node cluster, under a steady
// stream of 3,000 tasks: one relay is killed with SIGKILL and the node
// that leads the work queue is stopped, mid-stream. Every task is answered,
// none lost; duplicates are bounded by the prefetch of the relays that
// died or moved; every relay left is consuming again within seconds of
// losing its node.
func TestClusterRelayKilledAndLeaderNodeStopped(t *testing.T) {
	urls := testbroker.ClusterURLs(t)
	nodes := testbroker.ClusterNodes(t)
	testbroker.LockCluster(t, true)

	// Declare the queue first, to learn its leader; the test's own
	// connections go to another node.
	probe := newEnvAt(t, urls[0])
	q := probe.name("it.cluster")
	probe.own([]string{q, q + ".dlq", relay.DelayQueueName(q, 500*time.Millisecond)}, nil)
	if _, err := probe.ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	leader := queueLeader(t, nodes[0], q)
	stable := -1
	for i, n := range nodes {
		if n != leader {
			stable = i
			break
		}
	}
	t.Logf("queue %s led by %s; the test talks to %s", q, leader, nodes[stable])
	e := newEnvAt(t, urls[stable])
	e.id = probe.id
	in := e.inspector()
	ds := newDownstream(t, paced(2*time.Millisecond))
	fc := faultConfig{URL: ds.URL, Queues: []string{q}}
	cfg := e.loadConfig(fc.yaml())
	path := writeConfig(t, e, fc.yaml())
	env := []string{"RELAY_AMQP_URL=" + strings.Join(urls, ","), "RELAY_AMQP_QUEUE_TYPE=quorum", "RELAY_AMQP_PREFETCH=16"}
	var procs []*proc
	for range 3 {
		procs = append(procs, startBinary(t, path, env...))
	}

	l := e.ledger("cluster: 3 relays, quorum queues, one relay SIGKILLed and the queue's leader node stopped mid-stream", in)
	const n = 3000
	published := l.publishInBackground(e.url, q, 0, n, time.Millisecond, func(i int) amqp.Publishing {
		return l.task(i, []byte(fmt.Sprint("task ", i)))
	})
	waitProgress(t, l, 0, 300)

	if _, err := procs[0].signal(syscall.SIGKILL, 10*time.Second); err == nil {
		t.Fatal("the relay exited 0 after SIGKILL")
	}
	stopped := time.Now()
	testbroker.Ctl(t, leader, "stop_app")
	t.Cleanup(func() {
		if _, err := exec.LookPath("rabbitmqctl"); err == nil {
			testbroker.Ctl(t, leader, "start_app")
		}
	})
	for i, p := range procs[1:] {
		eventually(t, 30*time.Second, fmt.Sprintf("relay %d ready again after the node stopped", i+2), func() bool {
			resp, err := http.Get("http://" + p.addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	t.Logf("both relays consuming again %s after the leader node stopped", time.Since(stopped).Round(time.Millisecond))
	if err := published(); err != nil {
		t.Fatal(err)
	}
	tl := l.settle(3*time.Minute, deadLetterQueues(cfg), settledQueues(cfg)...)
	testbroker.Ctl(t, leader, "start_app")
	for _, p := range procs[1:] {
		if _, err := p.signal(syscall.SIGTERM, 30*time.Second); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Errorf("relay exit: %v", err)
			}
		}
	}
	// The killed relay's tasks in hand, and those of the two relays whose
	// node went, may be answered twice.
	l.check(tl, 3*16)
}
