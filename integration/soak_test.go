package integration

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// soakFaults are the faults the soak draws from.
var soakFaults = []string{"cut", "sigkill", "sigterm", "outage", "latency", "bad-burst", "memory-alarm"}

// TestSoakRandomFaults runs the relay binary under a steady stream of
// tasks (1 in 50 of them always failing) while faults drawn at random
// strike one after another: broker connections cut, the relay killed with
// SIGKILL or stopped with SIGTERM and started again, downstream outages
// and latency, bursts of bad tasks, and memory alarms when the tests have
// a broker node of their own. At the end every task must be answered or
// dead-lettered (bad ones dead-lettered), none lost, with duplicates
// bounded by the prefetch per fault that can cause them.
//
// It runs for two minutes; RELAY_TEST_SOAK sets another duration;
// RELAY_TEST_SOAK_SEED replays a run: the seed is printed at the start.
func TestSoakRandomFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("the randomized fault soak runs for minutes; not with -short")
	}
	dur := 2 * time.Minute
	if s := os.Getenv("RELAY_TEST_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("RELAY_TEST_SOAK: %v", err)
		}
		dur = d
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RELAY_TEST_SOAK_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RELAY_TEST_SOAK_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("soak seed %d for %s (replay with RELAY_TEST_SOAK_SEED=%d)", seed, dur, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	e := newEnv(t)
	in := e.inspector()
	px := newFaultProxy(t, e.url)
	const (
		normal = iota
		outage
		slow
	)
	var mode atomic.Int32
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("X-Correlation-ID"), "bad-") {
			status(http.StatusInternalServerError)(w, r)
			return
		}
		switch mode.Load() {
		case outage:
			hangUp(w, r)
		case slow:
			paced(300*time.Millisecond)(w, r)
		default:
			paced(5*time.Millisecond)(w, r)
		}
	})
	q := e.name("it.soak")
	fc := faultConfig{
		URL: ds.URL, Queues: []string{q}, Timeout: "1s",
		// Opening by failure rate, as a relay whose tasks include some
		// that always fail should be configured: with a count threshold
		// of 5, every always-failing task (2 attempts on each of its 3
		// deliveries) opens the breaker once by itself, which at 1 in 50
		// of 200 tasks a second keeps it open nearly all the time and
		// leaves the backlog to drain at the two probes per reset_timeout
		// (the hostage tests cover a count threshold with a few such
		// tasks). Outages still open it: every call fails then.
		Breaker: "failure_threshold: 10000, failure_rate_threshold: 0.5, minimum_calls: 20, window_size: 10s, reset_timeout: 1s",
		Backoff: "max_retries: 1", Redelivery: "500ms, 1s",
	}
	cfg := e.loadConfig(fc.yaml())
	path := writeConfig(t, e, fc.yaml())
	if _, err := e.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	l := e.ledger(fmt.Sprintf("randomized soak, %s, seed %d", dur, seed), in)
	bad := func(i int) bool {
		h := fnv.New64a()
		fmt.Fprint(h, seed, i)
		return h.Sum64()%50 == 0
	}
	task := func(i int) amqp.Publishing {
		m := l.task(i, []byte(fmt.Sprint("task ", i)))
		if bad(i) {
			m.CorrelationId = "bad-" + m.CorrelationId
		}
		return m
	}

	relayEnv := []string{"RELAY_AMQP_URL=" + px.url(e.url), "RELAY_SHUTDOWN_TIMEOUT=5s"}
	p := startBinary(t, path, relayEnv...)

	stopPublishing := make(chan struct{})
	published := make(chan error, 1)
	go func() {
		next := 0
		for {
			select {
			case <-stopPublishing:
				published <- nil
				return
			default:
			}
			if err := l.publish(e.url, q, next, next+20, 0, task); err != nil {
				published <- err
				return
			}
			next += 20
			time.Sleep(100 * time.Millisecond)
		}
	}()

	node := os.Getenv("RELAY_TEST_RABBITMQ_NODE")
	ctlPath, _ := exec.LookPath("rabbitmqctl")
	if node != "" && ctlPath != "" {
		// Once for the whole soak: the lock is held until the test ends,
		// and a second flock of it from this process would wait forever.
		alarmLock(t)
	}
	faults := map[string]int{}
	redoing := 0 // faults that can redo the tasks in hand
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		f := soakFaults[rng.IntN(len(soakFaults))]
		switch f {
		case "cut":
			px.cut(time.Duration(100+rng.IntN(700)) * time.Millisecond)
			redoing++
		case "sigkill":
			_, err := p.signal(syscall.SIGKILL, 10*time.Second)
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("SIGKILL: relay ended with %v", err)
			}
			p = startBinary(t, path, relayEnv...)
			redoing++
		case "sigterm":
			if _, err := p.signal(syscall.SIGTERM, 30*time.Second); err != nil {
				t.Fatalf("SIGTERM: relay exited with %v, want 0", err)
			}
			p = startBinary(t, path, relayEnv...)
			redoing++ // work given up at shutdown_timeout comes again
		case "outage", "latency":
			m := int32(outage)
			if f == "latency" {
				m = slow
			}
			mode.Store(m)
			time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
			mode.Store(normal)
		case "bad-burst":
			start := 10_000_000 + faults[f]*10
			if err := l.publish(e.url, q, start, start+5, 0, func(i int) amqp.Publishing {
				m := l.task(i, []byte("bad"))
				m.CorrelationId = "bad-" + m.CorrelationId
				return m
			}); err != nil {
				t.Fatal(err)
			}
		case "memory-alarm":
			if node == "" || ctlPath == "" {
				f = "memory-alarm (skipped: the tests have no broker node of their own)"
				break
			}
			ctl(t, ctlPath, "-n", node, "set_vm_memory_high_watermark", "0.0000001")
			time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
			ctl(t, ctlPath, "-n", node, "set_vm_memory_high_watermark", "0.4")
			redoing++
		}
		faults[f]++
	}
	close(stopPublishing)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	mode.Store(normal)
	tl := l.settle(3*time.Minute, deadLetterQueues(cfg), settledQueues(cfg)...)
	if _, err := p.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("final SIGTERM: relay exited with %v", err)
	}
	t.Logf("soak faults: %v", faults)
	// Every bad task dead-lettered. A good task may be too, when an
	// outage outlasts its redelivery steps; it must say why.
	l.mu.Lock()
	goodDead := 0
	for id := range l.published {
		switch {
		case strings.HasPrefix(id, "bad-") && l.dead[id] == 0:
			t.Errorf("bad task %s was not dead-lettered", id)
		case !strings.HasPrefix(id, "bad-") && l.dead[id] != 0:
			goodDead++
			if l.reasons[id] == "" {
				t.Errorf("good task %s dead-lettered without a reason", id)
			}
		}
	}
	l.mu.Unlock()
	t.Logf("good tasks dead-lettered by outages longer than their redelivery steps: %d", goodDead)
	l.check(tl, max(1, redoing)*cfg.Work[0].Prefetch)
}
