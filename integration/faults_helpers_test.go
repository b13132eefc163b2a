package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/testbroker"
	"github.com/vsm-relay/relay/relay"
)

// This file holds what the fault scenarios share: a toxiproxy between the
// relay and the broker, rabbitmqctl for faults only the broker can make, an
// inspector that polls queues on one connection, and a ledger that counts
// every task by its correlation id.

// faultProxy is a TCP proxy, run in the test process, between the relay
// and the broker; cutting it or adding toxics to it is how the scenarios
// hurt the relay's broker connections without touching anyone else's.
type faultProxy struct {
	t *testing.T
	p *toxiproxy.Proxy
}

func newFaultProxy(t *testing.T, brokerURL string) *faultProxy {
	t.Helper()
	upstream := brokerAddr(t, brokerURL)
	// Toxics log through zerolog's global logger.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "amqp", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("starting toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return &faultProxy{t: t, p: p}
}

// url is brokerURL with its host replaced by the proxy's address.
func (f *faultProxy) url(brokerURL string) string {
	return withHost(f.t, brokerURL, f.p.Listen)
}

// brokerAddr is the host:port a proxy in front of brokerURL dials.
func brokerAddr(t *testing.T, brokerURL string) string {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatalf("broker URL: %v", err)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "5672")
	}
	return u.Host
}

// withHost is brokerURL with its host:port replaced by addr.
func withHost(t *testing.T, brokerURL, addr string) string {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatalf("broker URL: %v", err)
	}
	u.Host = addr
	return u.String()
}

// cut drops every connection through the proxy and refuses new ones for
// down, then lets them in again.
func (f *faultProxy) cut(down time.Duration) {
	f.t.Helper()
	f.p.Stop()
	time.Sleep(down)
	if err := f.p.Start(); err != nil {
		f.t.Fatalf("restarting toxiproxy on %s: %v", f.p.Listen, err)
	}
}

// toxic adds a toxic described as in toxiproxy's HTTP API and returns its
// name, for remove.
func (f *faultProxy) toxic(spec string) string {
	f.t.Helper()
	w, err := f.p.Toxics.AddToxicJson(strings.NewReader(spec))
	if err != nil {
		f.t.Fatalf("adding toxic %s: %v", spec, err)
	}
	return w.Name
}

func (f *faultProxy) remove(name string) {
	f.t.Helper()
	if err := f.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		f.t.Fatalf("removing toxic %s: %v", name, err)
	}
}

// rabbitmqctl returns the path of rabbitmqctl when it can act on the
// test broker, or "" and why not: the tool is missing (a failure under
// CI=true, where CI installs it), the broker is not local, or it is not a
// private node named by RELAY_TEST_RABBITMQ_NODE (a failure under
// CI=true, where CI starts one). The faults made with it (memory alarms,
// connections closed by the broker) hit everyone on the broker, so they
// are never made on a broker others may share.
func rabbitmqctl(t *testing.T, brokerURL string) (path, whyNot string) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatalf("broker URL: %v", err)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" {
		return "", "rabbitmqctl acts on the local node; the test broker is " + h
	}
	if _, whyNot := testbroker.NodeName(); whyNot != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("a private broker node is needed under CI=true: %s", whyNot)
		}
		return "", whyNot
	}
	path, err = exec.LookPath("rabbitmqctl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("rabbitmqctl is needed under CI=true: %v", err)
		}
		return "", "rabbitmqctl is not installed"
	}
	return path, ""
}

// ctl runs rabbitmqctl against the test broker's node, unless args name
// one already (-n NODE first).
func ctl(t *testing.T, path string, args ...string) string {
	t.Helper()
	if node, _ := testbroker.NodeName(); node != "" && (len(args) == 0 || args[0] != "-n") {
		args = append([]string{"-n", node}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// brokerConnections returns the pids of the broker connections whose
// connection_name starts with prefix.
func brokerConnections(t *testing.T, path, prefix string) []string {
	t.Helper()
	out := ctl(t, path, "list_connections", "pid", "client_properties", "--no-table-headers", "-q")
	var pids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		pid, props, ok := strings.Cut(sc.Text(), "\t")
		if ok && strings.Contains(props, `{"connection_name","`+prefix) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// closeBrokerConnections has the broker close every connection whose
// name starts with prefix, and returns how many it closed.
func closeBrokerConnections(t *testing.T, path, prefix string) int {
	t.Helper()
	pids := brokerConnections(t, path, prefix)
	for _, pid := range pids {
		ctl(t, path, "close_connection", pid, "fault injection")
	}
	return len(pids)
}

// inspector polls queues on one connection of its own (the harness's
// depth dials a connection per call, too many for a polling loop).
type inspector struct {
	t    *testing.T
	mu   sync.Mutex
	conn *amqp.Connection
	ch   *amqp.Channel
}

func (e *env) inspector() *inspector {
	e.t.Helper()
	conn, err := amqp.Dial(e.url)
	if err != nil {
		e.t.Fatalf("dialling the broker: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return &inspector{t: e.t, conn: conn}
}

func (in *inspector) channel() *amqp.Channel {
	if in.ch == nil || in.ch.IsClosed() {
		ch, err := in.conn.Channel()
		if err != nil {
			in.t.Fatalf("inspector channel: %v", err)
		}
		in.ch = ch
	}
	return in.ch
}

// depth reports a queue's ready messages and consumers.
func (in *inspector) depth(queue string) (messages, consumers int) {
	in.t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	q, err := in.channel().QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		in.t.Fatalf("inspecting %s: %v", queue, err)
	}
	return q.Messages, q.Consumers
}

// empty reports whether every queue has no ready message.
func (in *inspector) empty(queues ...string) bool {
	for _, q := range queues {
		if m, _ := in.depth(q); m != 0 {
			return false
		}
	}
	return true
}

// drain takes (and acks) every message ready in queue.
func (in *inspector) drain(queue string) []amqp.Delivery {
	in.t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []amqp.Delivery
	for {
		m, ok, err := in.channel().Get(queue, true)
		if err != nil {
			in.t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

// ledger counts one scenario's tasks by correlation id: every task
// published must come out answered (a successful reply) or dead-lettered,
// at least once; more than once is a duplicate, counted.
type ledger struct {
	t        *testing.T
	scenario string
	prefix   string
	in       *inspector
	rep      *replies
	// dests are queues where outbound messages arrive: each one there
	// is an answer.
	dests []string

	mu        sync.Mutex
	published map[string]bool
	delivered map[string]int // outbound messages that reached their destination
	dead      map[string]int
	reasons   map[string]string
}

func (e *env) ledger(scenario string, in *inspector) *ledger {
	return &ledger{
		t: e.t, scenario: scenario, prefix: e.id + "-", in: in, rep: e.replyQueue(),
		published: map[string]bool{}, delivered: map[string]int{}, dead: map[string]int{}, reasons: map[string]string{},
	}
}

func (l *ledger) id(i int) string { return fmt.Sprintf("%s%d", l.prefix, i) }

// task is task i: correlation and message id of its own, replies to the
// ledger's queue.
func (l *ledger) task(i int, body []byte) amqp.Publishing {
	return amqp.Publishing{
		Body: body, ContentType: "text/plain", DeliveryMode: amqp.Persistent,
		CorrelationId: l.id(i), MessageId: l.id(i), ReplyTo: l.rep.queue,
	}
}

// publish publishes tasks from..to-1 (made by mk) to queue on a confirmed
// channel of the test's own, straight to the broker. It is safe to call
// from another goroutine: it returns its error instead of failing.
func (l *ledger) publish(brokerURL, queue string, from, to int, pace time.Duration, mk func(i int) amqp.Publishing) error {
	return l.publishRouted(brokerURL, from, to, pace, func(i int) (string, amqp.Publishing) { return queue, mk(i) })
}

// publishRouted is publish with each message's queue chosen by mk.
func (l *ledger) publishRouted(brokerURL string, from, to int, pace time.Duration, mk func(i int) (string, amqp.Publishing)) error {
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	var dcs []*amqp.DeferredConfirmation
	for i := from; i < to; i++ {
		queue, m := mk(i)
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, m)
		if err != nil {
			return err
		}
		dcs = append(dcs, dc)
		l.mu.Lock()
		l.published[m.CorrelationId] = true
		l.mu.Unlock()
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, dc := range dcs {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("publish nacked")
		}
	}
	return nil
}

// publishNow publishes tasks from..to-1 and fails the test on error.
func (l *ledger) publishNow(brokerURL, queue string, from, to int, mk func(i int) amqp.Publishing) {
	l.t.Helper()
	if err := l.publish(brokerURL, queue, from, to, 0, mk); err != nil {
		l.t.Fatalf("publishing tasks: %v", err)
	}
}

// backlog publishes batch more tasks to queue, numbered from *next, when
// fewer than min tasks are without an outcome, so that a fault always
// strikes with work in hand.
func (l *ledger) backlog(brokerURL, queue string, next *int, min, batch int, mk func(i int) amqp.Publishing) {
	l.t.Helper()
	if l.tally().Lost >= min {
		return
	}
	l.publishNow(brokerURL, queue, *next, *next+batch, mk)
	*next += batch
}

// publishInBackground publishes tasks paced over time while the test
// injects faults; wait returns the publisher's error.
func (l *ledger) publishInBackground(brokerURL, queue string, from, to int, pace time.Duration, mk func(i int) amqp.Publishing) (wait func() error) {
	done := make(chan error, 1)
	go func() { done <- l.publish(brokerURL, queue, from, to, pace, mk) }()
	return func() error { return <-done }
}

// collectDead takes every dead letter of the ledger's tasks from dlq.
func (l *ledger) collectDead(dlq string) {
	for _, m := range l.in.drain(dlq) {
		l.mu.Lock()
		l.dead[m.CorrelationId]++
		l.reasons[m.CorrelationId] = fmt.Sprint(m.Headers[relay.HeaderError])
		l.mu.Unlock()
	}
}

// collectDelivered takes every message of the ledger's that reached the
// destination queue q: for outbound messages, that is their answer.
func (l *ledger) collectDelivered(q string) {
	for _, m := range l.in.drain(q) {
		l.mu.Lock()
		l.delivered[m.CorrelationId]++
		l.mu.Unlock()
	}
}

// reason returns the x-relay-error of task id's dead letter.
func (l *ledger) reason(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reasons[id]
}

// tally is what came out of a scenario, by correlation id.
type tally struct {
	Published, Answered, DeadLettered, Duplicates, Lost, Unknown int
	lost, dups                                                   []string
}

func (l *ledger) tally() tally {
	answers := map[string]int{}
	for _, m := range l.rep.all() {
		if _, failed := m.Headers[relay.HeaderError]; failed {
			continue // the error reply that goes with a dead letter
		}
		answers[m.CorrelationId]++
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, n := range l.delivered {
		answers[id] += n
	}
	var t tally
	t.Published = len(l.published)
	for id := range l.published {
		a, d := answers[id], l.dead[id]
		switch {
		case a > 0:
			t.Answered++
		case d > 0:
			t.DeadLettered++
		default:
			t.Lost++
			t.lost = append(t.lost, id)
		}
		if a+d > 1 {
			t.Duplicates += a + d - 1
			t.dups = append(t.dups, id)
		}
	}
	for id := range answers {
		if !l.published[id] {
			t.Unknown++
		}
	}
	for id := range l.dead {
		if !l.published[id] {
			t.Unknown++
		}
	}
	sort.Strings(t.lost)
	sort.Strings(t.dups)
	return t
}

// settle waits until every published task has an outcome (collecting
// dead letters from dlqs) and every queue in idle holds no ready message.
func (l *ledger) settle(timeout time.Duration, dlqs []string, idle ...string) tally {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, q := range dlqs {
			l.collectDead(q)
		}
		for _, q := range l.dests {
			l.collectDelivered(q)
		}
		t := l.tally()
		if t.Lost == 0 && l.in.empty(idle...) {
			return t
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: after %s, %d of %d tasks have no outcome (first: %v); %s", l.scenario, timeout, t.Lost, t.Published, first(t.lost, 5), l.queueReport(idle))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *ledger) queueReport(queues []string) string {
	var b bytes.Buffer
	for _, q := range queues {
		m, c := l.in.depth(q)
		fmt.Fprintf(&b, "%s: %d ready, %d consumers; ", q, m, c)
	}
	return b.String()
}

// check asserts no loss and at most maxDup duplicates, and logs the
// scenario's row of the results table.
func (l *ledger) check(t tally, maxDup int) {
	l.t.Helper()
	l.t.Logf("faults | %s | published %d | answered %d | dead-lettered %d | duplicates %d",
		l.scenario, t.Published, t.Answered, t.DeadLettered, t.Duplicates)
	if os.Getenv("RELAY_TEST_LOG") != "" {
		l.t.Logf("duplicated: %v", t.dups)
	}
	if t.Published != t.Answered+t.DeadLettered {
		l.t.Errorf("%s: published %d != answered %d + dead-lettered %d (lost %v)", l.scenario, t.Published, t.Answered, t.DeadLettered, first(t.lost, 10))
	}
	if t.Unknown != 0 {
		l.t.Errorf("%s: %d outcomes for tasks never published", l.scenario, t.Unknown)
	}
	if t.Duplicates > maxDup {
		l.t.Errorf("%s: %d duplicates, more than the bound of %d", l.scenario, t.Duplicates, maxDup)
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// paced is an echo downstream that takes d per request, so tasks are in
// flight when a fault strikes.
func paced(d time.Duration) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		echo(w, r)
	}
}

// faultConfig is the configuration section of a fault scenario: one
// target, svc, behind breaker, bulkhead and backoff "downstream" for every
// work queue, and optionally one outbound queue.
type faultConfig struct {
	URL        string
	Queues     []string
	Timeout    string // the target's timeout; default 2s
	Breaker    string // fields of breaker downstream
	Backoff    string // fields of backoff downstream
	Redelivery string // default 500ms
	MaxResp    int    // default 1 MiB
	Outbound   string // an outbound queue, when set
	Exchanges  []string
	// Extra lines, indented as entries, for scenarios with more than one
	// target: breakers, targets and work entries.
	ExtraBreakers, ExtraTargets, ExtraWork string
}

func (c faultConfig) yaml() string {
	if c.Timeout == "" {
		c.Timeout = "2s"
	}
	if c.Redelivery == "" {
		c.Redelivery = "500ms"
	}
	if c.MaxResp == 0 {
		c.MaxResp = 1 << 20
	}
	var b strings.Builder
	fmt.Fprintf(&b, `breakers:
  defaults: {failure_threshold: 1000, success_threshold: 2, reset_timeout: 500ms, half_open_timeout: 5s, window_size: 60s, timeout: 10s}
  downstream: {%s}
  amqp: {}
%sbulkheads:
  pool: {size: 8, overflow: 2, timeout: 5s}
  out: {size: 4, overflow: 0, timeout: 5s}
backoff:
  defaults: {initial: 10ms, max: 50ms, multiplier: 2, jitter: full, max_retries: 2}
  downstream: {%s}
targets:
  svc: {url: %q, timeout: %s, breaker: downstream, bulkhead: pool, backoff: downstream, max_request_bytes: 4096, max_response_bytes: %d}
%swork:
`, c.Breaker, c.ExtraBreakers, c.Backoff, c.URL, c.Timeout, c.MaxResp, c.ExtraTargets)
	for _, q := range c.Queues {
		fmt.Fprintf(&b, "  - {queue: %s, target: svc, redelivery: [%s]}\n", q, c.Redelivery)
	}
	b.WriteString(c.ExtraWork)
	if c.Outbound == "" {
		b.WriteString("outbound: []\n")
	} else {
		fmt.Fprintf(&b, "outbound:\n  - {queue: %s, breaker: amqp, bulkhead: out, exchanges: [%s]}\n", c.Outbound, strings.Join(c.Exchanges, ", "))
	}
	return b.String()
}

// settledQueues lists the work queues, their delay queues and the
// outbound queues: the queues that hold no ready message once a scenario
// has settled.
func settledQueues(cfg *config.Config) []string {
	var qs []string
	for _, w := range cfg.Work {
		qs = append(qs, w.Queue)
		for _, d := range w.Redelivery {
			qs = append(qs, relay.DelayQueueName(w.Queue, d))
		}
	}
	for _, o := range cfg.Outbound {
		qs = append(qs, o.Queue)
	}
	return qs
}

// deadLetterQueues lists every work and outbound queue's dead-letter
// queue.
func deadLetterQueues(cfg *config.Config) []string {
	var qs []string
	for _, w := range cfg.Work {
		qs = append(qs, w.Queue+".dlq")
	}
	for _, o := range cfg.Outbound {
		qs = append(qs, o.Queue+".dlq")
	}
	return qs
}
