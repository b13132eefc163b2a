package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/clock"
)

// answer is one way a fake downstream answers a request.
type answer struct {
	status     int
	retryAfter string
	body       string
	err        error // a transport error instead of a response
}

var (
	ok200      = answer{status: 200, body: `{"ok":true}`}
	err500     = answer{status: 500, body: "boom"}
	err503     = answer{status: 503}
	err408     = answer{status: 408}
	err429     = answer{status: 429}
	err429RA   = answer{status: 429, retryAfter: "7"}
	err404     = answer{status: 404, body: "no such thing"}
	oversized  = answer{status: 200, body: strings.Repeat("x", 100)}
	refused    = answer{err: errors.New("connect: connection refused")}
	timedOut   = answer{err: timeoutError{}}
	notReached = answer{} // the downstream must not be called
)

// timeoutError is a transport error that says it is a timeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// downstream answers each request with the next answer of a script (the
// last one again once the script is spent) and counts the requests.
type downstream struct {
	mu      sync.Mutex
	script  []answer
	calls   int
	onCall  func(n int) // called with the request's number before it is answered
	headers []http.Header
}

func (d *downstream) RoundTrip(req *http.Request) (*http.Response, error) {
	d.mu.Lock()
	d.calls++
	n := d.calls
	a := d.script[min(n-1, len(d.script)-1)]
	d.headers = append(d.headers, req.Header.Clone())
	on := d.onCall
	d.mu.Unlock()
	if on != nil {
		on(n)
	}
	if a.err != nil {
		return nil, a.err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	return &http.Response{StatusCode: a.status, Header: h, Body: io.NopCloser(strings.NewReader(a.body)), Request: req}, nil
}

func (d *downstream) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// publishing is one message a fake publisher was handed.
type publishing struct {
	exchange, key string
	msg           amqp.Publishing
}

// publisher records what it publishes and confirms it with fail's answer
// (nil: every publish confirmed).
type publisher struct {
	mu   sync.Mutex
	sent []publishing
	fail func(p publishing) error
}

func (p *publisher) Publish(_ context.Context, exchange, key string, _ bool, msg amqp.Publishing) (*broker.Confirmation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pub := publishing{exchange, key, msg}
	p.sent = append(p.sent, pub)
	var err error
	if p.fail != nil {
		err = p.fail(pub)
	}
	return broker.Resolved(err), nil
}

func (p *publisher) to(key string) []publishing {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []publishing
	for _, s := range p.sent {
		if s.key == key {
			out = append(out, s)
		}
	}
	return out
}

func (p *publisher) all() []publishing {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]publishing(nil), p.sent...)
}

// acks records how a delivery was settled: an amqp.Acknowledger.
type acks struct {
	mu      sync.Mutex
	acked   []uint64
	nacked  []uint64
	settled chan struct{}
}

func newAcks() *acks { return &acks{settled: make(chan struct{}, 1024)} }

func (a *acks) Ack(tag uint64, _ bool) error {
	a.mu.Lock()
	a.acked = append(a.acked, tag)
	a.mu.Unlock()
	a.settled <- struct{}{}
	return nil
}

func (a *acks) Nack(tag uint64, _, _ bool) error {
	a.mu.Lock()
	a.nacked = append(a.nacked, tag)
	a.mu.Unlock()
	a.settled <- struct{}{}
	return nil
}

func (a *acks) Reject(tag uint64, requeue bool) error { return a.Nack(tag, false, requeue) }

func (a *acks) counts() (acked, nacked int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked), len(a.nacked)
}

// sleeps records the waits decide asks for and returns at once, or with
// stop's error once stop has ended (as backoff.Sleep does).
type sleeps struct {
	mu     sync.Mutex
	waits  []time.Duration
	before func(n int) // called with the wait's number before it returns
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	n := len(s.waits)
	before := s.before
	s.mu.Unlock()
	if before != nil {
		before(n)
	}
	return ctx.Err()
}

// rig is a work queue "q" with two redelivery steps in front of a fake
// downstream, with a breaker that opens after threshold failures.
type rig struct {
	t      *testing.T
	ds     *downstream
	pub    *publisher
	sl     *sleeps
	clk    *clock.Fake
	br     *breaker.Breaker
	pool   *bulkhead.Bulkhead
	work   *Work
	stop   context.Context
	cancel context.CancelFunc
}

type rigOpts struct {
	script     []answer
	threshold  int // breaker failure threshold; zero: 100
	retries    int // in-process retries
	redelivery []time.Duration
	poolSize   int // zero: 4
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	if o.threshold == 0 {
		o.threshold = 100
	}
	if o.poolSize == 0 {
		o.poolSize = 4
	}
	if o.redelivery == nil {
		o.redelivery = []time.Duration{time.Second, 2 * time.Second}
	}
	r := &rig{t: t, ds: &downstream{script: o.script}, pub: &publisher{}, sl: &sleeps{}, clk: clock.NewFake(time.Unix(1_700_000_000, 0))}
	var err error
	r.br, err = breaker.New("svc", breaker.Settings{
		FailureThreshold: o.threshold, SuccessThreshold: 1, ResetTimeout: time.Minute,
		HalfOpenTimeout: time.Minute, WindowSize: time.Minute, Timeout: time.Minute,
	}, breaker.WithClock(r.clk))
	if err != nil {
		t.Fatal(err)
	}
	r.pool, err = bulkhead.New("pool", bulkhead.Settings{Size: o.poolSize, MaxWaiting: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.pool.Close)
	tg := NewTarget(TargetSpec{
		Name: "svc", URL: "http://svc.test/", Method: http.MethodPost, Timeout: time.Second,
		MaxRequestBytes: 64, MaxResponseBytes: 64, Client: &http.Client{Transport: r.ds},
		Guard:   Guard{Breaker: r.br, Bulkhead: r.pool},
		Backoff: backoff.Policy{Initial: 10 * time.Millisecond, Max: time.Second, Jitter: backoff.None, MaxRetries: o.retries},
	})
	r.work = NewWork(WorkSpec{Queue: "q", Target: tg, Redelivery: o.redelivery, Prefetch: 8, Publisher: r.pub, Sleep: r.sl.sleep})
	r.stop, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(r.cancel)
	r.work.stop = r.stop
	return r
}

// delivery is a task with the given headers, on a fake channel.
func delivery(h amqp.Table, ack amqp.Acknowledger) amqp.Delivery {
	return amqp.Delivery{
		Acknowledger: ack, DeliveryTag: 1, Headers: h, Body: []byte(`{"job":1}`),
		ContentType: "application/json", CorrelationId: "c-1", MessageId: "m-1", ReplyTo: "replies",
	}
}

// decide runs decide on a task with headers h.
func (r *rig) decide(h amqp.Table) Outcome {
	d := delivery(h, newAcks())
	return r.work.decide(context.Background(), &d)
}

// failBreaker records n failures on the breaker, as other tasks' calls
// would.
func (r *rig) failBreaker(n int) {
	for range n {
		p, err := r.br.Allow()
		if err != nil {
			r.t.Fatalf("failBreaker: %v", err)
		}
		r.br.Done(p, breaker.Failure, fmt.Errorf("HTTP 500"))
	}
}

// halfOpen opens the breaker and moves its clock past reset_timeout.
func (r *rig) halfOpen() {
	for r.br.State() != breaker.Open {
		r.failBreaker(1)
	}
	r.clk.Advance(r.br.Settings().ResetTimeout + time.Second)
	if st := r.br.State(); st != breaker.HalfOpen {
		r.t.Fatalf("breaker %s, want half_open", st)
	}
}

// passes is an x-death header recording n passes through q's first delay
// queue.
func passes(n int) amqp.Table {
	return amqp.Table{"x-death": []any{amqp.Table{"queue": "q.delay.1s", "reason": "expired", "count": int64(n), "exchange": ""}}}
}

func with(t amqp.Table, kv ...any) amqp.Table {
	out := amqp.Table{}
	for k, v := range t {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func testLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
