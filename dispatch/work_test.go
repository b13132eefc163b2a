package dispatch

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/retrybudget"
)

// The whole decision table of the work path, against a fake downstream,
// a real breaker and bulkhead, and no broker: status classes × in-process
// retries left or spent × redelivery step first, middle, last.
func TestDecideByStatusAndStep(t *testing.T) {
	type want struct {
		kind     Kind
		step     int
		attempts int
		status   int
		reason   string // a part of it
		calls    int
	}
	retryable := []struct {
		name   string
		a      answer
		status int
		reason string
	}{
		{"500", err500, 500, "HTTP 500 Internal Server Error from target svc: boom"},
		{"503", err503, 503, "HTTP 503"},
		{"408", err408, 408, "HTTP 408"},
		{"429", err429, 429, "HTTP 429"},
		{"429 Retry-After", err429RA, 429, "HTTP 429"},
		{"transport error", refused, 0, "request to target svc failed: connect: connection refused"},
		{"timeout", timedOut, 0, "no response from target svc within 1s"},
	}
	type row struct {
		name    string
		script  []answer
		retries int
		steps   int
		headers amqp.Table
		want    want
	}
	var rows []row
	for _, r := range retryable {
		rows = append(rows,
			row{r.name + ", retry succeeds", []answer{r.a, ok200}, 1, 2, nil,
				want{kind: Reply, attempts: 2, status: 200, calls: 2}},
			row{r.name + ", retries spent, first step", []answer{r.a}, 1, 2, nil,
				want{kind: Redeliver, step: 0, attempts: 2, status: r.status, reason: r.reason, calls: 2}},
			row{r.name + ", no retries, middle step", []answer{r.a}, 0, 3,
				with(passes(1), HeaderRedeliveries, int32(1), HeaderAttempts, int32(1)),
				want{kind: Redeliver, step: 1, attempts: 2, status: r.status, reason: r.reason, calls: 1}},
			row{r.name + ", retries spent, last step", []answer{r.a}, 1, 2,
				with(passes(2), HeaderRedeliveries, int32(2), HeaderAttempts, int32(4)),
				want{kind: DeadLetter, attempts: 6, status: r.status, reason: r.reason, calls: 2}},
			row{r.name + ", no redelivery steps", []answer{r.a}, 0, 0, nil,
				want{kind: DeadLetter, attempts: 1, status: r.status, reason: r.reason, calls: 1}},
		)
	}
	rows = append(rows,
		row{"2xx", []answer{ok200}, 3, 2, nil, want{kind: Reply, attempts: 1, status: 200, calls: 1}},
		row{"2xx counts on earlier attempts", []answer{ok200}, 3, 2, amqp.Table{HeaderAttempts: int32(3)},
			want{kind: Reply, attempts: 4, status: 200, calls: 1}},
		row{"other 4xx: dead at once, never retried", []answer{err404, ok200}, 3, 2, nil,
			want{kind: DeadLetter, attempts: 1, status: 404, reason: "HTTP 404 Not Found from target svc: no such thing", calls: 1}},
		row{"response over the size limit", []answer{oversized, ok200}, 3, 2, nil,
			want{kind: DeadLetter, attempts: 1, status: 200, reason: "with a body over the 64-byte limit", calls: 1}},
		row{"forged redeliveries without passes through the delay queues", []answer{err500}, 0, 2,
			amqp.Table{HeaderRedeliveries: int32(2)},
			want{kind: Redeliver, step: 0, attempts: 1, status: 500, reason: "HTTP 500", calls: 1}},
		row{"redeliveries claimed beyond the steps", []answer{err500}, 0, 2,
			with(passes(9), HeaderRedeliveries, int32(9)),
			want{kind: DeadLetter, attempts: 1, status: 500, reason: "HTTP 500", calls: 1}},
		row{"absurd attempts are bounded", []answer{ok200}, 0, 2, amqp.Table{HeaderAttempts: int64(1 << 40)},
			want{kind: Reply, attempts: 1, status: 200, calls: 1}},
	)
	for _, c := range rows {
		t.Run(c.name, func(t *testing.T) {
			var steps []time.Duration
			for i := range c.steps {
				steps = append(steps, time.Duration(i+1)*time.Second)
			}
			if steps == nil {
				steps = []time.Duration{}
			}
			r := newRig(t, rigOpts{script: c.script, retries: c.retries, redelivery: steps})
			o := r.decide(c.headers)
			if o.Kind != c.want.kind || o.Step != c.want.step || o.Attempts != c.want.attempts || o.Status != c.want.status {
				t.Errorf("outcome %s step %d attempts %d status %d (%q); want %s step %d attempts %d status %d",
					o.Kind, o.Step, o.Attempts, o.Status, o.Reason, c.want.kind, c.want.step, c.want.attempts, c.want.status)
			}
			if !strings.Contains(o.Reason, c.want.reason) {
				t.Errorf("reason %q does not say %q", o.Reason, c.want.reason)
			}
			if n := r.ds.count(); n != c.want.calls {
				t.Errorf("%d requests, want %d", n, c.want.calls)
			}
		})
	}
}

func TestDecideHonoursRetryAfter(t *testing.T) {
	r := newRig(t, rigOpts{script: []answer{err429RA, ok200}, retries: 1})
	if o := r.decide(nil); o.Kind != Reply {
		t.Fatalf("outcome %s (%s)", o.Kind, o.Reason)
	}
	// Retry-After: 7 is capped by the policy's max of 1s; without it the
	// first delay is the policy's initial 10ms.
	if len(r.sl.waits) != 1 || r.sl.waits[0] != time.Second {
		t.Fatalf("waits %v, want [1s] (Retry-After 7s capped at max)", r.sl.waits)
	}
	r = newRig(t, rigOpts{script: []answer{err429, ok200}, retries: 1})
	r.decide(nil)
	if len(r.sl.waits) != 1 || r.sl.waits[0] != 10*time.Millisecond {
		t.Fatalf("waits %v without Retry-After, want [10ms]", r.sl.waits)
	}
}

func TestDecideRequestOverTheLimitIsNeverSent(t *testing.T) {
	r := newRig(t, rigOpts{script: []answer{notReached}})
	d := delivery(nil, newAcks())
	d.Body = []byte(strings.Repeat("x", 65))
	o := r.work.decide(context.Background(), &d)
	if o.Kind != DeadLetter || !strings.Contains(o.Reason, "task body of 65 bytes is over target svc's limit of 64 bytes") {
		t.Fatalf("outcome %s (%q)", o.Kind, o.Reason)
	}
	if r.ds.count() != 0 {
		t.Fatal("the downstream was called")
	}
}

// Breaker states: a task that never reached the downstream goes back
// untouched; a task whose attempt failed never does.
func TestDecideWithTheBreaker(t *testing.T) {
	t.Run("open before the first attempt: requeued untouched", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{notReached}, threshold: 2})
		r.failBreaker(2)
		o := r.decide(amqp.Table{HeaderAttempts: int32(3)})
		if o.Kind != Requeue || !strings.Contains(o.Reason, "breaker svc is open") {
			t.Fatalf("outcome %s (%q), want requeue", o.Kind, o.Reason)
		}
		if r.ds.count() != 0 {
			t.Fatal("the downstream was called through an open breaker")
		}
	})
	t.Run("its own failures open the breaker mid-retries: next step, attempts counted", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{err500}, threshold: 2, retries: 5})
		o := r.decide(nil)
		if o.Kind != Redeliver || o.Step != 0 || o.Attempts != 2 || o.Status != 500 {
			t.Fatalf("outcome %s step %d attempts %d status %d (%q); want redeliver step 0 after 2 attempts", o.Kind, o.Step, o.Attempts, o.Status, o.Reason)
		}
		if !strings.Contains(o.Reason, "HTTP 500") || !strings.Contains(o.Reason, "breaker svc is open") {
			t.Fatalf("reason %q", o.Reason)
		}
	})
	t.Run("same, on its last step: dead-lettered", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{err500}, threshold: 2, retries: 5})
		o := r.decide(with(passes(2), HeaderRedeliveries, int32(2)))
		if o.Kind != DeadLetter || o.Attempts != 2 {
			t.Fatalf("outcome %s attempts %d (%q)", o.Kind, o.Attempts, o.Reason)
		}
	})
	t.Run("a failed half-open probe: next step, never back to the head of the queue", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{err500}, threshold: 2, retries: 3})
		r.halfOpen()
		o := r.decide(nil)
		if o.Kind != Redeliver || o.Attempts != 1 || r.ds.count() != 1 {
			t.Fatalf("outcome %s attempts %d after %d calls (%q); want redeliver after the one probe", o.Kind, o.Attempts, r.ds.count(), o.Reason)
		}
		if st := r.br.State(); st != breaker.Open {
			t.Fatalf("breaker %s after a failed probe", st)
		}
	})
	t.Run("a successful half-open probe closes the breaker", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{ok200}, threshold: 2})
		r.halfOpen()
		if o := r.decide(nil); o.Kind != Reply {
			t.Fatalf("outcome %s", o.Kind)
		}
		if st := r.br.State(); st != breaker.Closed {
			t.Fatalf("breaker %s after a good probe", st)
		}
	})
	t.Run("half-open with the probe slots busy: waits for a slot", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{ok200}, threshold: 2})
		r.halfOpen()
		probe, err := r.br.Allow() // another task's probe
		if err != nil {
			t.Fatal(err)
		}
		r.sl.before = func(n int) {
			if n == 2 { // after two waits the other probe succeeds
				r.br.Done(probe, breaker.Success, nil)
			}
		}
		if o := r.decide(nil); o.Kind != Reply || o.Attempts != 1 {
			t.Fatalf("outcome %s attempts %d", o.Kind, o.Attempts)
		}
		if len(r.sl.waits) != 2 || r.sl.waits[0] != probeWait {
			t.Fatalf("waits %v, want two of %s", r.sl.waits, probeWait)
		}
	})
	t.Run("half-open with a probe slot free after its own failed attempt: next step, the probe left to others", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{err500, ok200}, threshold: 100, retries: 2})
		r.sl.before = func(n int) {
			if n == 1 { // during the backoff wait the breaker goes half-open
				r.halfOpen()
			}
		}
		o := r.decide(nil)
		if o.Kind != Redeliver || o.Attempts != 1 || r.ds.count() != 1 {
			t.Fatalf("outcome %s attempts %d after %d calls (%q); want redeliver after the one call, no retry as a probe", o.Kind, o.Attempts, r.ds.count(), o.Reason)
		}
		if !strings.Contains(o.Reason, "HTTP 500") || !strings.Contains(o.Reason, "breaker svc is half_open") {
			t.Fatalf("reason %q", o.Reason)
		}
		if st := r.br.State(); st != breaker.HalfOpen {
			t.Fatalf("breaker %s, want still half_open: its probe is for a task that has not failed", st)
		}
	})
	t.Run("a retry while the breaker stays closed is made", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{err500, ok200}, threshold: 100, retries: 2})
		if o := r.decide(nil); o.Kind != Reply || o.Attempts != 2 || r.ds.count() != 2 {
			t.Fatalf("outcome %s attempts %d after %d calls (%q)", o.Kind, o.Attempts, r.ds.count(), o.Reason)
		}
	})
	t.Run("probe slots busy after its own failed attempt: next step", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{err500}, threshold: 100, retries: 2})
		r.sl.before = func(n int) {
			if n == 1 { // during the backoff wait the breaker goes half-open, its probe taken
				r.halfOpen()
				if _, err := r.br.Allow(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if o := r.decide(nil); o.Kind != Redeliver || o.Attempts != 1 {
			t.Fatalf("outcome %s attempts %d (%q)", o.Kind, o.Attempts, o.Reason)
		}
	})
}

func TestDecideWhileStopping(t *testing.T) {
	t.Run("stopped before it starts: requeued untouched", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{notReached}})
		r.cancel()
		if o := r.decide(nil); o.Kind != Requeue || o.Reason != "shutting down" {
			t.Fatalf("outcome %s (%q)", o.Kind, o.Reason)
		}
		if r.ds.count() != 0 {
			t.Fatal("called while stopping")
		}
	})
	t.Run("stopped during a backoff wait after a failure: next step, attempt counted", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{err503, ok200}, retries: 3})
		r.sl.before = func(int) { r.cancel() }
		o := r.decide(nil)
		if o.Kind != Redeliver || o.Attempts != 1 || o.Status != 503 {
			t.Fatalf("outcome %s attempts %d status %d; want redeliver after 1", o.Kind, o.Attempts, o.Status)
		}
	})
	t.Run("stopped while waiting for a probe slot, never having called: requeued", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{notReached}, threshold: 2})
		r.halfOpen()
		if _, err := r.br.Allow(); err != nil {
			t.Fatal(err)
		}
		r.sl.before = func(int) { r.cancel() }
		if o := r.decide(nil); o.Kind != Requeue {
			t.Fatalf("outcome %s", o.Kind)
		}
	})
	t.Run("in-flight work given up, never having called: requeued", func(t *testing.T) {
		r := newRig(t, rigOpts{script: []answer{notReached}, poolSize: 1})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d := delivery(nil, newAcks())
		// A full pool makes the attempt wait for a slot, which the ended
		// context ends.
		h, _ := r.pool.Checkout(context.Background())
		defer r.pool.Checkin(h)
		if o := r.work.decide(ctx, &d); o.Kind != Requeue {
			t.Fatalf("outcome %s (%q)", o.Kind, o.Reason)
		}
	})
}

func TestDecidePoolRejectionSpendsNoAttempt(t *testing.T) {
	r := newRig(t, rigOpts{script: []answer{notReached}, poolSize: 1, retries: 2})
	h, err := r.pool.Checkout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r.pool.Checkin(h)
	o := r.decide(amqp.Table{HeaderAttempts: int32(1)})
	if o.Kind != Redeliver || o.Attempts != 1 {
		t.Fatalf("outcome %s attempts %d (%q); want redeliver with the attempt count unchanged", o.Kind, o.Attempts, o.Reason)
	}
	if !strings.Contains(o.Reason, "bulkhead pool rejected it") {
		t.Fatalf("reason %q", o.Reason)
	}
	if len(r.sl.waits) != 2 {
		t.Fatalf("%d retries of a pool rejection, want 2", len(r.sl.waits))
	}
}

func TestDecidePoolRejectionOnTheLastStepGoesBackUntouched(t *testing.T) {
	r := newRig(t, rigOpts{script: []answer{notReached}, poolSize: 1, retries: 2})
	h, err := r.pool.Checkout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r.pool.Checkin(h)
	o := r.decide(with(passes(2), HeaderRedeliveries, int32(2)))
	if o.Kind != Requeue {
		t.Fatalf("outcome %s (%q); want requeued: a task our own pool turned away is never dead-lettered for it", o.Kind, o.Reason)
	}
	if !strings.Contains(o.Reason, "bulkhead pool rejected it") || !strings.Contains(o.Reason, "never reached its downstream") {
		t.Fatalf("reason %q", o.Reason)
	}
}

func TestDecideDeliveryOfAnotherAcknowledgerIsLive(t *testing.T) {
	// Only a delivery that came through broker.Consumer can be stale (its
	// channel died); a delivery with another acknowledger is worked on.
	r := newRig(t, rigOpts{script: []answer{ok200}})
	if o := r.decide(nil); o.Kind != Reply {
		t.Fatalf("a live delivery: %s", o.Kind)
	}
}

// The same downstream error through every redelivery step ends in the
// dead-letter queue after retries+1 attempts per step: the livelock of a
// task the downstream always fails cannot arise.
func TestAlwaysFailingTaskReachesTheDeadLetterQueue(t *testing.T) {
	r := newRig(t, rigOpts{script: []answer{err500}, threshold: 3, retries: 1})
	h := amqp.Table{}
	for pass := 0; ; pass++ {
		if pass > 5 {
			t.Fatal("never dead-lettered")
		}
		// Between deliveries the breaker half-opens again; the task is
		// its probe.
		if r.br.State() == breaker.Open {
			r.clk.Advance(2 * time.Minute)
		}
		o := r.decide(h)
		if o.Kind == Requeue {
			t.Fatalf("pass %d: requeued untouched (%q): the task would hold its queue hostage", pass, o.Reason)
		}
		if o.Kind == DeadLetter {
			if pass != 2 {
				t.Fatalf("dead-lettered on pass %d, want after its 2 redeliveries", pass)
			}
			if o.Attempts < 3 {
				t.Fatalf("attempts %d", o.Attempts)
			}
			return
		}
		h = with(passes(o.Step+1), HeaderRedeliveries, int32(o.Step+1), HeaderAttempts, int32(o.Attempts))
	}
}

func TestDecideRetryBudgetSpent(t *testing.T) {
	r := newRig(t, rigOpts{script: []answer{err500, ok200}, retries: 3})
	budget, err := retrybudget.New(retrybudget.Settings{Ratio: 0.0001, MinPerSecond: 0.0001, Window: time.Second}, retrybudget.WithClock(r.clk))
	if err != nil {
		t.Fatal(err)
	}
	tg := r.work.Target()
	tg.budget = budget
	var told []string
	tg.exhausted = func(target string, s retrybudget.Snapshot) {
		told = append(told, fmt.Sprintf("%s %d", target, s.Denied))
	}
	o := r.decide(nil)
	if o.Kind != Redeliver || o.Attempts != 1 || !strings.Contains(o.Reason, "retry budget of target svc spent") {
		t.Fatalf("outcome %s attempts %d (%q); want the next step without a retry", o.Kind, o.Attempts, o.Reason)
	}
	if r.ds.count() != 1 || len(r.sl.waits) != 0 {
		t.Fatalf("%d requests, %d waits: the spent budget allowed a retry", r.ds.count(), len(r.sl.waits))
	}
	if len(told) != 1 || told[0] != "svc 1" {
		t.Fatalf("told %v", told)
	}
	if got := testutil.ToFloat64(tg.m.BudgetExhausted); got != 1 {
		t.Fatalf("relay_retry_budget_exhausted_total = %v", got)
	}
	// A budget with room lets the retry through.
	r = newRig(t, rigOpts{script: []answer{err500, ok200}, retries: 3})
	if r.work.Target().budget, err = retrybudget.New(retrybudget.Settings{}, retrybudget.WithClock(r.clk)); err != nil {
		t.Fatal(err)
	}
	if o := r.decide(nil); o.Kind != Reply || o.Attempts != 2 {
		t.Fatalf("outcome %s attempts %d with a budget of room", o.Kind, o.Attempts)
	}
}
