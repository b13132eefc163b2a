package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/relay"
)

// TestOneBadTaskNeverHoldsItsQueueHostage publishes tasks the downstream
// always fails among a steady stream of good ones. Each bad task must
// spend its attempts and reach the dead-letter queue after its
// redelivery steps, and every good task must be answered: a failed
// attempt is an attempt, so the bad task never goes back to the head of
// the queue to be the next half-open probe, forever.
func TestOneBadTaskNeverHoldsItsQueueHostage(t *testing.T) {
	cases := []struct {
		name string
		bad  int
		// fail is how the downstream treats a bad task.
		fail http.HandlerFunc
	}{
		{"one always-500 task", 1, status(http.StatusInternalServerError)},
		{"one always-timing-out task", 1, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}},
		{"five always-500 tasks at once", 5, status(http.StatusInternalServerError)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			in := e.inspector()
			ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(r.Body)
				r.Body = readCloser{&buf}
				if strings.HasPrefix(buf.String(), "bad") {
					c.fail(w, r)
					return
				}
				echo(w, r)
			})
			q := e.name("it.hostage")
			// The configuration: threshold 5, one in-process
			// retry, redelivery [1s, 2s] (reset shorter, to keep it quick).
			cfg := e.loadConfig(faultConfig{
				URL: ds.URL, Queues: []string{q}, Timeout: "300ms",
				Breaker: "failure_threshold: 5, reset_timeout: 1s", Backoff: "max_retries: 1", Redelivery: "1s, 2s",
			}.yaml())
			run := e.startRelay(cfg)
			l := e.ledger("hostage: "+c.name+" among rounds of good tasks", in)
			l.publishNow(e.url, q, 0, c.bad, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("bad ", i))) })
			next := 1000
			for range 6 {
				l.publishNow(e.url, q, next, next+50, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("good ", i))) })
				next += 50
				time.Sleep(time.Second)
			}
			tl := l.settle(60*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
			for i := range c.bad {
				reason := l.reason(l.id(i))
				if reason == "" {
					t.Errorf("bad task %d was answered, not dead-lettered", i)
				}
			}
			if tl.DeadLettered != c.bad {
				t.Errorf("%d dead-lettered, want the %d bad tasks only", tl.DeadLettered, c.bad)
			}
			opens := breakerOpenings(t, run)
			// A bad delivery (3 per bad task: first, and one per step)
			// can open the breaker at most twice: once on its failures,
			// once as a failed probe.
			if bound := float64(2 * 3 * c.bad); opens > bound {
				t.Errorf("the breaker opened %v times, more than %v", opens, bound)
			}
			t.Logf("breaker openings: %v; downstream requests: %d", opens, len(ds.requests()))
			run.stop(t)
			l.check(tl, 0)
		})
	}
}

// TestBadTaskDeadLetterCarriesItsAttempts checks the bad task's dead
// letter: its reason and its attempts over every delivery.
func TestBadTaskDeadLetterCarriesItsAttempts(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, status(http.StatusInternalServerError))
	q := e.name("it.hostage.attempts")
	cfg := e.loadConfig(faultConfig{
		URL: ds.URL, Queues: []string{q},
		Breaker: "failure_threshold: 1000", Backoff: "max_retries: 1", Redelivery: "300ms, 600ms",
	}.yaml())
	run := e.startRelay(cfg)
	defer run.stop(t)
	e.publish(q, amqp.Publishing{Body: []byte("bad"), MessageId: "bad-1"})
	var dead []amqp.Delivery
	eventually(t, 30*time.Second, "the task dead-lettered", func() bool {
		dead = append(dead, e.take(q+".dlq")...)
		return len(dead) > 0
	})
	h := dead[0].Headers
	if got := headerInt(h, relay.HeaderAttempts); got != 6 {
		t.Errorf("x-relay-attempts = %d, want 6 (2 per delivery, 3 deliveries)", got)
	}
	if got := fmt.Sprint(h[relay.HeaderError]); !strings.Contains(got, "HTTP 500") {
		t.Errorf("x-relay-error = %q", got)
	}
	if n := len(ds.requests()); n != 6 {
		t.Errorf("%d requests, want 6", n)
	}
}

// TestIntakeCyclesNeverOvershootThePrefetch cycles a queue's intake
// twenty times under load, ten times by opening and closing its breaker
// and ten times by cutting the broker connections. Tasks in hand
// (relay_tasks_in_flight) never exceed the prefetch, and each cut redoes
// at most the prefetch.
func TestIntakeCyclesNeverOvershootThePrefetch(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	px := newFaultProxy(t, e.url)
	ds := newDownstream(t, paced(20*time.Millisecond))
	q := e.name("it.intake.cycles")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}, Breaker: "success_threshold: 2, reset_timeout: 200ms"}.yaml())
	const prefetch = 8
	cfg.Work[0].Prefetch = prefetch
	cfg.AMQP.URL = px.url(e.url)
	run := e.startRelay(cfg)
	l := e.ledger("intake cycled 20 times under load (10 breaker openings, 10 connection cuts)", in)
	body := func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) }

	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			if v := int64(inFlight(run, q)); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	next := 0
	b := run.r.Breaker("downstream")
	seen := 0
	for i := range 20 {
		l.backlog(e.url, q, &next, 60, 100, body)
		if i%2 == 0 {
			b.ForceOpen()
			time.Sleep(100 * time.Millisecond)
			b.Reset()
		} else {
			px.cut(200 * time.Millisecond)
			eventually(t, 30*time.Second, "relay ready after a cut", run.r.Ready)
		}
		seen = waitProgress(t, l, seen, 10)
	}
	close(stop)
	sampler.Wait()
	tl := l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	run.stop(t)
	t.Logf("peak relay_tasks_in_flight %d with a prefetch of %d", peak.Load(), prefetch)
	if p := peak.Load(); p > prefetch {
		t.Errorf("relay_tasks_in_flight peaked at %d, over the prefetch of %d", p, prefetch)
	}
	l.check(tl, 10*prefetch)
}

// inFlight reads relay_tasks_in_flight{queue=q} from the relay's registry.
func inFlight(run *running, q string) float64 {
	return gauge(run, "relay_tasks_in_flight", "queue", q)
}

// breakerOpenings reads the downstream breaker's openings from the relay's
// registry.
func breakerOpenings(t *testing.T, run *running) float64 {
	t.Helper()
	mfs, err := run.r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "relay_breaker_transitions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "breaker") == "downstream" && label(m, "to") == "open" {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func gauge(run *running, name, key, value string) float64 {
	mfs, err := run.r.Registry().Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, key) == value {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

type readCloser struct{ *bytes.Buffer }

func (readCloser) Close() error { return nil }
