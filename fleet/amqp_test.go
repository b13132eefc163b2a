package fleet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/internal/testbroker"
)

func TestBindingKeys(t *testing.T) {
	cases := []struct {
		name     string
		breakers []string
		want     []string
	}{
		{"none: every breaker", nil, []string{"breaker.#"}},
		{"one per name", []string{"llm_api", "billing"}, []string{"breaker.llm_api", "breaker.billing"}},
		{"the same key once", []string{"llm_api", "llm_api"}, []string{"breaker.llm_api"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := BindingKeys(c.breakers)
			if !slices.Equal(got, c.want) {
				t.Fatalf("BindingKeys(%q) = %q, want %q", c.breakers, got, c.want)
			}
			for _, n := range c.breakers {
				k := Message{Breaker: n}.RoutingKey()
				if !slices.Contains(got, k) {
					t.Fatalf("no binding for %s's routing key %s", n, k)
				}
			}
		})
	}
}

func TestAMQPOptionsDefaults(t *testing.T) {
	cases := []struct {
		name            string
		in              AMQPOptions
		exchange, queue string
		ttl             time.Duration
	}{
		{"defaults", AMQPOptions{Instance: "relay-1"}, DefaultExchange, DefaultExchange + ".relay-1", DefaultTTL},
		{"exchange names the queue", AMQPOptions{Instance: "r", Exchange: "x"}, "x", "x.r", DefaultTTL},
		{"set", AMQPOptions{Instance: "r", Exchange: "x", Queue: "q", TTL: time.Second}, "x", "q", time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.in.withDefaults()
			if o.Exchange != c.exchange || o.Queue != c.queue || o.TTL != c.ttl || o.Logger == nil {
				t.Fatalf("withDefaults() = %+v, want exchange %s queue %s ttl %s", o, c.exchange, c.queue, c.ttl)
			}
		})
	}
}

func TestReceive(t *testing.T) {
	good, err := Message{Version: Version, Instance: "b", Breaker: name, Kind: KindOpen, At: start}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		body      []byte
		delivered bool
		logged    string
	}{
		{"a message", good, true, ""},
		{"not JSON", []byte("{"), false, "fleet message ignored"},
		{"another version", []byte(`{"v":2,"instance":"b","breaker":"x","kind":"open","at":"2026-11-29T14:00:00Z"}`), false, "version 2"},
		{"empty", nil, false, "fleet message ignored"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs syncBuffer
			a := &AMQP{o: AMQPOptions{Instance: "a", Logger: slog.New(slog.NewTextHandler(&logs, nil))}.withDefaults()}
			var got []Message
			a.receive(broker.Delivery{Delivery: amqp.Delivery{Body: c.body, RoutingKey: "breaker." + name}}, func(m Message) {
				got = append(got, m)
			})
			if (len(got) == 1) != c.delivered || len(got) > 1 {
				t.Fatalf("delivered %v, want delivered=%v", got, c.delivered)
			}
			if c.logged == "" && logs.String() != "" {
				t.Fatalf("logged %q for a good message", logs.String())
			}
			if !strings.Contains(logs.String(), c.logged) {
				t.Fatalf("log %q does not say %q", logs.String(), c.logged)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
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

// proxy forwards TCP connections to a broker, so that a test can cut the
// connections of one relay without touching anyone else's.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes every connection made through the proxy so far, both ends.
func (p *proxy) cut() {
	p.mu.Lock()
	cs := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// through returns brokerURL with its host replaced by the proxy's.
func (p *proxy) through(t *testing.T, brokerURL string) string {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

// fleetRelay is one relay of a test fleet: a broker connection that
// declares the relay's fleet queue, the transport on it, a coordinator and
// the shared breaker.
type fleetRelay struct {
	conn      *broker.Conn
	tr        *AMQP
	coord     *Coordinator
	b         *breaker.Breaker
	connected chan broker.Event
}

func startFleetRelay(t *testing.T, ctx context.Context, brokerURL, exchange, instance string, logs io.Writer) *fleetRelay {
	t.Helper()
	opts := AMQPOptions{Instance: instance, Exchange: exchange, Breakers: []string{name},
		Logger: slog.New(slog.NewTextHandler(logs, nil)).With("relay", instance)}
	r := &fleetRelay{connected: make(chan broker.Event, 16)}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := broker.Dial(dctx, broker.Options{Name: "fleet", Instance: instance, URL: brokerURL,
		ReconnectInitial: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, Topology: opts.Declare})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.OnEvent(func(e broker.Event) {
		if e.Kind == broker.Connected {
			r.connected <- e
		}
	})
	r.conn = conn
	if r.tr, err = NewAMQP(conn, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.tr.Close)
	if r.coord, err = New(instance, r.tr, WithFlushInterval(10*time.Millisecond), WithMaxJitter(0),
		WithPublishTimeout(time.Second)); err != nil {
		t.Fatal(err)
	}
	if r.b, err = breaker.New(name, breaker.Settings{FailureThreshold: 6, WindowSize: time.Minute, ResetTimeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := r.coord.Share(r.b); err != nil {
		t.Fatal(err)
	}
	if err := r.tr.Listen(conn, r.coord.Deliver); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.coord.Run(runCtx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
	return r
}

func (r *fleetRelay) fail(t *testing.T, n int) {
	t.Helper()
	for range n {
		p, err := r.b.Allow()
		if err != nil {
			t.Fatalf("%s: Allow: %v", r.coord.Instance(), err)
		}
		r.b.Done(p, breaker.Failure, err503)
	}
}

func (r *fleetRelay) listening() bool {
	r.tr.mu.Lock()
	defer r.tr.mu.Unlock()
	return len(r.tr.consumers) == 1 && r.tr.consumers[0].Active()
}

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func failures(rs ...*fleetRelay) []int {
	var n []int
	for _, r := range rs {
		n = append(n, r.b.Snapshot().FailureCount)
	}
	return n
}

// Three relays on three connections share a breaker through the broker:
// two failures at each open all three (threshold 6), the last opening
// opens the others with it as origin; a relay ignores its own messages; a
// relay whose connection is cut declares and binds its queue again and
// hears and is heard again.
func TestAMQPFleet(t *testing.T) {
	brokerURL := testbroker.URL(t)
	host, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	exchange := testbroker.Unique("relay.test.fleet")
	testbroker.CleanupExchanges(t, brokerURL, exchange)
	testbroker.CleanupQueues(t, brokerURL, exchange+".a", exchange+".b", exchange+".c")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	px := startProxy(t, host.Host)
	var logs syncBuffer
	a := startFleetRelay(t, ctx, brokerURL, exchange, "a", &logs)
	b := startFleetRelay(t, ctx, brokerURL, exchange, "b", &logs)
	c := startFleetRelay(t, ctx, px.through(t, brokerURL), exchange, "c", &logs)
	all := []*fleetRelay{a, b, c}
	eventually(t, 5*time.Second, "every relay consuming", func() bool {
		return a.listening() && b.listening() && c.listening()
	})

	// A message no relay can read is logged and acked; nothing stops.
	ch := testbroker.Channel(t, brokerURL)
	if err := ch.PublishWithContext(ctx, exchange, "breaker."+name, false, false, amqp.Publishing{Body: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the unreadable message logged by every relay", func() bool {
		return strings.Count(logs.String(), "fleet message ignored") == 3
	})

	// Two failures at a: counted once at a (its own message ignored),
	// and at b and c through the broker.
	a.fail(t, 2)
	eventually(t, 5*time.Second, "b and c count a's failures", func() bool {
		return slices.Equal(failures(all...), []int{2, 2, 2}) && a.coord.Counts().Own >= 1
	})
	b.fail(t, 2)
	eventually(t, 5*time.Second, "every relay counts 4 failures", func() bool {
		return slices.Equal(failures(all...), []int{4, 4, 4}) && b.coord.Counts().Own >= 1
	})
	for _, r := range all {
		if s := r.b.State(); s != breaker.Closed {
			t.Fatalf("%s is %v after 4 failures in all, want closed", r.coord.Instance(), s)
		}
	}
	// The sixth failure in all is c's own second: c opens, and tells the
	// others, which open with c as origin.
	var opened sync.Map
	for _, r := range []*fleetRelay{a, b} {
		r.b.OnStateChange(func(tr breaker.Transition) {
			if tr.To == breaker.Open {
				opened.Store(r.coord.Instance(), tr)
			}
		})
	}
	c.fail(t, 2)
	if s := c.b.State(); s != breaker.Open {
		t.Fatalf("c is %v after the sixth failure, want open", s)
	}
	eventually(t, time.Second, "a and b open within a second of c", func() bool {
		return a.b.State() == breaker.Open && b.b.State() == breaker.Open
	})
	for _, inst := range []string{"a", "b"} {
		v, _ := opened.Load(inst)
		tr, _ := v.(breaker.Transition)
		if tr.Origin != "c" {
			t.Fatalf("%s opened with origin %q, want c (%+v)", inst, tr.Origin, tr)
		}
	}

	// Cut c's connection; it comes back through the proxy, declares its
	// queue again and binds it.
	for _, r := range all {
		r.b.Reset()
	}
	eventually(t, 5*time.Second, "every breaker closed and quiet", func() bool {
		return slices.Equal(failures(all...), []int{0, 0, 0}) &&
			a.b.State() == breaker.Closed && b.b.State() == breaker.Closed && c.b.State() == breaker.Closed
	})
	px.cut()
	select {
	case e := <-c.connected:
		if e.Downtime <= 0 {
			t.Fatalf("reconnect without downtime: %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("c did not reconnect")
	}
	// The queue may be consumed a moment after the connection is back:
	// a's failures go out one at a time until c has heard one.
	heard := func() bool { return c.b.Snapshot().FailureCount > 0 }
	for i := 0; !heard(); i++ {
		if i == 4 {
			t.Fatalf("c hears nothing after its reconnect; failures %v", failures(all...))
		}
		a.fail(t, 1)
		deadline := time.Now().Add(time.Second)
		for !heard() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	// And c is heard again.
	before := a.b.Snapshot().FailureCount
	c.fail(t, 1)
	eventually(t, 5*time.Second, "a hears c after c's reconnect", func() bool {
		return a.b.Snapshot().FailureCount == before+1
	})
	for _, r := range all {
		if pe := r.coord.Counts().PublishErrors; pe != 0 && r != c {
			t.Fatalf("%s: %d publish errors", r.coord.Instance(), pe)
		}
	}
}

func TestNewAMQPRefuses(t *testing.T) {
	if _, err := NewAMQP(nil, AMQPOptions{Instance: "a"}); err == nil {
		t.Fatal("NewAMQP(nil conn) succeeded")
	}
	brokerURL := testbroker.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, broker.Options{Name: "fleet", URL: brokerURL})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := NewAMQP(conn, AMQPOptions{}); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("NewAMQP without instance: %v, want ErrNoInstance", err)
	}
	tr, err := NewAMQP(conn, AMQPOptions{Instance: "a"})
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if err := tr.Listen(conn, func(Message) {}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Listen after Close: %v, want broker.ErrClosed", err)
	}
}

// bindFixture is a transport of relay "a" sharing breakers, on a
// connection to the test broker whose topology declares the transport's
// queue (Declare, as every reconnect runs it; conn.Redeclare runs it now),
// and its fleet exchange, deleted after the test.
func bindFixture(t *testing.T, ctx context.Context, breakers ...string) (brokerURL, exchange string, conn *broker.Conn, tr *AMQP) {
	t.Helper()
	brokerURL = testbroker.URL(t)
	exchange = testbroker.Unique("relay.test.fleet.bind")
	testbroker.CleanupExchanges(t, brokerURL, exchange)
	testbroker.CleanupQueues(t, brokerURL, exchange+".a")
	var trp atomic.Pointer[AMQP]
	conn, err := broker.Dial(ctx, broker.Options{Name: "fleet", Instance: "a", URL: brokerURL,
		Topology: func(c *amqp.Connection) error {
			if tr := trp.Load(); tr != nil {
				return tr.Declare(c)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tr, err = NewAMQP(conn, AMQPOptions{Instance: "a", Exchange: exchange, Breakers: breakers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	trp.Store(tr)
	if err := conn.Redeclare(ctx); err != nil {
		t.Fatal(err)
	}
	return brokerURL, exchange, conn, tr
}

// Bind changes what the relay's queue hears on the live queue: the keys
// of the breakers named are bound, those of the breakers no longer named
// unbound, and with none the queue stays, bound to nothing, its consumer
// consuming. Declare, as a reconnect runs it, binds what Bind set.
func TestAMQPBindFollowsTheSharedBreakers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	brokerURL, exchange, conn, tr := bindFixture(t, ctx, "x", "s")
	var mu sync.Mutex
	heard := map[string]int{}
	if err := tr.Listen(conn, func(m Message) {
		mu.Lock()
		heard[m.Breaker]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	ch := testbroker.Channel(t, brokerURL)
	send := func(breakerName string) {
		t.Helper()
		body, err := Message{Version: Version, Kind: KindOpen, Breaker: breakerName, Instance: "peer", Origin: "peer", At: time.Now()}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.PublishWithContext(ctx, exchange, "breaker."+breakerName, false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	// hears sends a message about each of x, y and z, then one about s
	// (bound throughout but for the unbound stretch), and returns what
	// arrived of x, y and z once s did: the queue keeps the order they
	// were routed in.
	hears := func() string {
		const sentinel = "s"
		t.Helper()
		mu.Lock()
		clear(heard)
		mu.Unlock()
		for _, n := range []string{"x", "y", "z"} {
			send(n)
		}
		send(sentinel)
		eventually(t, 5*time.Second, "the sentinel message heard", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return heard[sentinel] > 0
		})
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, n := range []string{"x", "y", "z"} {
			if heard[n] > 0 {
				got = append(got, n)
			}
		}
		return strings.Join(got, ",")
	}

	if got := hears(); got != "x" {
		t.Fatalf("bound to x: heard %q, want x", got)
	}
	if err := tr.Bind(ctx, conn, []string{"y", "z", "s"}); err != nil {
		t.Fatal(err)
	}
	if got := hears(); got != "y,z" {
		t.Fatalf("bound to y and z: heard %q, want y,z (x unbound)", got)
	}
	if err := conn.Redeclare(ctx); err != nil { // as a reconnect would
		t.Fatal(err)
	}
	if got := hears(); got != "y,z" {
		t.Fatalf("after Declare: heard %q, want y,z", got)
	}
	if err := tr.Bind(ctx, conn, nil); err != nil {
		t.Fatal(err)
	}
	// Nothing bound: a sentinel cannot be heard; the queue is still there
	// and consumed, and hears again once bound.
	mu.Lock()
	clear(heard)
	mu.Unlock()
	send("x")
	send("y")
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	n := len(heard)
	mu.Unlock()
	if n != 0 {
		t.Fatalf("bound to nothing: heard %v", heard)
	}
	if err := tr.Bind(ctx, conn, []string{"x", "s"}); err != nil {
		t.Fatal(err)
	}
	if got := hears(); got != "x" {
		t.Fatalf("bound to x again: heard %q, want x", got)
	}
}

// A Bind that could not reach the broker leaves the transport's keys as
// they were, so that the same Bind again makes the bindings, rather than
// finding nothing left to do.
func TestAMQPBindAgainAfterAFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	brokerURL, exchange, conn, tr := bindFixture(t, ctx, "x") // the queue, bound to x
	gone, err := broker.Dial(ctx, broker.Options{Name: "fleet", Instance: "a", URL: brokerURL})
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()
	if err := tr.Bind(ctx, gone, []string{"y"}); err == nil {
		t.Fatal("Bind on a closed connection: no error")
	}
	if err := tr.Bind(ctx, conn, []string{"y"}); err != nil {
		t.Fatal(err)
	}
	ch := testbroker.Channel(t, brokerURL)
	for _, key := range []string{"breaker.x", "breaker.y"} {
		if err := ch.PublishWithContext(ctx, exchange, key, false, false, amqp.Publishing{Body: []byte(key)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	eventually(t, 5*time.Second, "the message about y in the queue", func() bool {
		d, ok, err := ch.Get(exchange+".a", true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			got = append(got, string(d.Body))
		}
		return slices.Contains(got, "breaker.y")
	})
	if slices.Contains(got, "breaker.x") {
		t.Fatalf("heard %q: x still bound after Bind(y)", got)
	}
}
