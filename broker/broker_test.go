package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func dialTest(t *testing.T, url string, topo func(*amqp.Connection) error) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, Options{Name: "test", Instance: "t", URL: url, Topology: topo,
		ReconnectInitial: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func declareQueues(names ...string) func(*amqp.Connection) error {
	return func(conn *amqp.Connection) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		for _, n := range names {
			if _, err := ch.QueueDeclare(n, true, false, false, false, nil); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestDialFailsWithinConnectTimeoutNamingRedactedURL(t *testing.T) {
	start := time.Now()
	_, err := Dial(context.Background(), Options{
		Name: "consume", URL: "amqp://guest:s3cret@127.0.0.1:1/", ConnectTimeout: 300 * time.Millisecond,
		ReconnectInitial: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
	})
	if err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, "s3cret") {
		t.Fatalf("error leaks the password: %s", msg)
	}
	if !strings.Contains(msg, "amqp://guest:***@127.0.0.1:1/") || !strings.Contains(msg, "within 300ms") {
		t.Fatalf("error does not name the redacted URL and timeout: %s", msg)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("Dial took %s with a 300ms connect timeout", time.Since(start))
	}
}

func TestDialTopologyErrorFailsAtOnce(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.topo")
	testbroker.CleanupQueues(t, url, q)
	ch := testbroker.Channel(t, url)
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	_, err := Dial(context.Background(), Options{Name: "t", URL: url, ConnectTimeout: 5 * time.Second,
		Topology: func(conn *amqp.Connection) error {
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			// Same name, different durability: PRECONDITION_FAILED.
			_, err = ch.QueueDeclare(q, false, false, false, false, nil)
			return err
		}})
	if err == nil || !strings.Contains(err.Error(), "declaring topology") {
		t.Fatalf("want a topology error, got %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	cases := map[string]string{
		"amqp://guest:guest@127.0.0.1:5672/": "amqp://guest:***@127.0.0.1:5672/",
		"amqps://u:p%40ss@host/vh":           "amqps://u:***@host/vh",
		"amqp://host:5672/":                  "amqp://host:5672/",
		"amqp://user@host/":                  "amqp://user@host/",
		"::not a url":                        "<unparseable broker url>",
	}
	for in, want := range cases {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPublishConsumeRoundTripWithConfirms(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.rt")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQueues(q))
	pub := c.NewPublisher()
	defer pub.Close()

	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	confs := make([]*Confirmation, 0, n)
	for i := 0; i < n; i++ {
		conf, err := pub.Publish(ctx, "", q, true, amqp.Publishing{Body: []byte(fmt.Sprint(i)), DeliveryMode: amqp.Persistent})
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		confs = append(confs, conf)
	}
	for i, conf := range confs {
		if err := conf.Wait(ctx); err != nil {
			t.Fatalf("confirm %d: %v", i, err)
		}
	}

	var got atomic.Int64
	done := make(chan struct{})
	cons, err := c.Consume(ConsumerOptions{Queue: q, Prefetch: 16}, func(d Delivery) {
		if err := d.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
		if got.Add(1) == n {
			close(done)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("consumed %d of %d", got.Load(), n)
	}
}

func TestMandatoryReturnsMatchTheirPublishes(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.ret")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQueues(q))
	pub := c.NewPublisher()
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Interleave routable and unroutable publishes of identical bodies.
	const n = 300
	type sent struct {
		routable bool
		conf     *Confirmation
	}
	var all []sent
	for i := 0; i < n; i++ {
		routable := i%3 != 0
		key := q
		if !routable {
			key = q + ".nowhere"
		}
		conf, err := pub.Publish(ctx, "", key, true, amqp.Publishing{Body: []byte("same body"), DeliveryMode: amqp.Persistent})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, sent{routable, conf})
	}
	var returned, confirmed int
	for i, s := range all {
		err := s.conf.Wait(ctx)
		switch {
		case err == nil && s.routable:
			confirmed++
		case errors.Is(err, ErrReturned) && !s.routable:
			returned++
			var re *ReturnedError
			if !errors.As(err, &re) || re.ReplyCode != 312 || re.RoutingKey != q+".nowhere" {
				t.Fatalf("publish %d: returned error lacks detail: %#v", i, re)
			}
		default:
			t.Fatalf("publish %d (routable=%v): %v", i, s.routable, err)
		}
	}
	if confirmed != 200 || returned != 100 {
		t.Fatalf("confirmed %d returned %d, want 200 and 100", confirmed, returned)
	}
}

func TestConsumerPauseLeavesMessagesInBroker(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.pause")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQueues(q))
	pub := c.NewPublisher()
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var got atomic.Int64
	cons, err := c.Consume(ConsumerOptions{Queue: q, Prefetch: 4, Paused: true}, func(d Delivery) {
		got.Add(1)
		_ = d.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for i := 0; i < 10; i++ {
		if err := pub.PublishAndWait(ctx, "", q, true, amqp.Publishing{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	inspect := testbroker.Channel(t, url)
	waitFor(t, ctx, "10 messages ready while paused", func() bool {
		qi, err := inspect.QueueDeclarePassive(q, true, false, false, false, nil)
		return err == nil && qi.Messages == 10 && qi.Consumers == 0
	})
	if got.Load() != 0 {
		t.Fatalf("paused consumer received %d deliveries", got.Load())
	}
	cons.Resume()
	waitFor(t, ctx, "all 10 consumed after resume", func() bool { return got.Load() == 10 })
	cons.CancelAndDrain(ctx)
	waitFor(t, ctx, "consumer cancelled", func() bool {
		qi, err := inspect.QueueDeclarePassive(q, true, false, false, false, nil)
		return err == nil && qi.Consumers == 0
	})
}

func TestReconnectResumesConsumersAndFailsUnconfirmed(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.reconnect")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQueues(q))
	var mu sync.Mutex
	var kinds []EventKind
	c.OnEvent(func(ev Event) {
		mu.Lock()
		kinds = append(kinds, ev.Kind)
		mu.Unlock()
	})
	pub := c.NewPublisher()
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Delivery is at least once: an ack in flight when the connection
	// drops is lost and the broker delivers again. Count distinct bodies.
	cons, seen := consumeBodies(t, c, q, 8)
	waitFor(t, ctx, "consumer active", cons.Active)

	for round := 1; round <= 3; round++ {
		c.mu.Lock()
		conn := c.conn
		c.mu.Unlock()
		conn.Close() // drop the connection under the relay's feet
		waitFor(t, ctx, "reconnected", func() bool { return c.Connected() && cons.Active() })
		body := fmt.Sprintf("after reconnect %d", round)
		if err := pub.PublishAndWait(ctx, "", q, true, amqp.Publishing{Body: []byte(body)}); err != nil {
			t.Fatalf("round %d: publish after reconnect: %v", round, err)
		}
		waitFor(t, ctx, "delivery after reconnect", func() bool { _, ok := seen.Load(body); return ok })
	}
	inspect := testbroker.Channel(t, url)
	qi, err := inspect.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil || qi.Consumers != 1 {
		t.Fatalf("broker shows %d consumers (err %v), want exactly 1 after 3 reconnects", qi.Consumers, err)
	}
	mu.Lock()
	defer mu.Unlock()
	lost, connected := 0, 0
	for _, k := range kinds {
		switch k {
		case Lost:
			lost++
		case Connected:
			connected++
		}
	}
	if lost != 3 || connected != 3 {
		t.Fatalf("events %v: want 3 lost and 3 connected", kinds)
	}
}

func TestConfirmationLostWhenChannelDies(t *testing.T) {
	url := testbroker.URL(t)
	c := dialTest(t, url, nil)
	pub := c.NewPublisher()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := pub.channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A confirmation recorded but never confirmed resolves ErrLost when
	// the channel closes.
	// (A DeferredConfirmation of its own is never done.)
	conf := &Confirmation{done: make(chan struct{}), dc: &amqp.DeferredConfirmation{}}
	cc.pendMu.Lock()
	cc.pending = append(cc.pending, conf)
	cc.pendMu.Unlock()
	pub.Close()
	if err := conf.Wait(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("want ErrLost, got %v", err)
	}
	if _, err := pub.Publish(ctx, "", "x", false, amqp.Publishing{}); err != nil {
		t.Fatalf("publisher must reopen a channel after Close: %v", err)
	}
	pub.Close()
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting: %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestConsumerRedeclaresADeletedQueue(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.deleted")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQueues(q))
	pub := c.NewPublisher()
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, seen := consumeBodies(t, c, q, 4)
	waitFor(t, ctx, "consuming", cons.Active)
	admin := testbroker.Channel(t, url)
	if _, err := admin.QueueDelete(q, false, false, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "queue declared again and consumed", func() bool {
		qi, err := testbroker.Channel(t, url).QueueDeclarePassive(q, true, false, false, false, nil)
		return err == nil && qi.Consumers == 1
	})
	if err := pub.PublishAndWait(ctx, "", q, true, amqp.Publishing{Body: []byte("after delete")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "delivery after the queue came back", func() bool { _, ok := seen.Load("after delete"); return ok })
}

// A changed prefetch must reach the running consumer: RabbitMQ applies a
// per-consumer basic.qos only to consumers started after it.
func TestSetPrefetchWidensTheRunningConsumer(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.prefetch")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQueues(q))
	pub := c.NewPublisher()
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 30; i++ {
		if err := pub.PublishAndWait(ctx, "", q, true, amqp.Publishing{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var held []Delivery // never acked during the test: only the prefetch bounds them
	cons, err := c.Consume(ConsumerOptions{Queue: q, Prefetch: 2}, func(d Delivery) {
		mu.Lock()
		held = append(held, d)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	inHand := func() int { mu.Lock(); defer mu.Unlock(); return len(held) }
	waitFor(t, ctx, "2 in hand", func() bool { return inHand() == 2 })
	time.Sleep(200 * time.Millisecond)
	if n := inHand(); n != 2 {
		t.Fatalf("prefetch 2 but %d deliveries in hand", n)
	}
	// A wider prefetch applies to a new consumer, which is sent only the
	// prefetch less the deliveries still in hand: ten in hand, not twelve.
	cons.SetPrefetch(10)
	waitFor(t, ctx, "the wider prefetch applied", func() bool { return inHand() == 10 })
	time.Sleep(200 * time.Millisecond)
	if n := inHand(); n != 10 {
		t.Fatalf("prefetch widened to 10 with 2 unsettled: %d deliveries in hand, want 10", n)
	}
	if n := cons.InHand(); n != 10 {
		t.Fatalf("InHand = %d, want 10", n)
	}
}

// AwaitCancels outlasts a pause's or a prefetch change's basic.cancel, on
// a quorum queue: once it returns the paused consumer is gone from the
// broker, and a message published then is never sent to a consumer going
// away (whose broker channel would take it back and flag its next
// delivery redelivered).
func TestAwaitCancelsOutlastsTheCancelOnAQuorumQueue(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.cancels")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQuorum(q))
	pub := c.NewPublisher()
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan Delivery, 16)
	cons, err := c.Consume(ConsumerOptions{Queue: q, Prefetch: 4}, func(d Delivery) { got <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	waitFor(t, ctx, "consumer active", cons.Active)
	if err := cons.AwaitCancels(ctx); err != nil {
		t.Fatalf("AwaitCancels with no cancel due: %v", err)
	}
	for round := 1; round <= 20; round++ {
		pause := round%2 == 1
		if pause {
			cons.Pause()
		} else {
			cons.SetPrefetch(4 + round)
		}
		if err := cons.AwaitCancels(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if pause {
			if cons.Active() {
				t.Fatalf("round %d: AwaitCancels returned with the paused consumer still consuming", round)
			}
		}
		body := fmt.Sprint("round ", round)
		if err := pub.PublishAndWait(ctx, "", q, true, amqp.Publishing{Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
		cons.Resume()
		select {
		case d := <-got:
			if string(d.Body) != body || d.Redelivered {
				t.Fatalf("round %d: got %q redelivered %v (headers %v), want %q first delivered", round, d.Body, d.Redelivered, d.Headers, body)
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: %q never delivered", round, body)
		}
	}
}

// consumeBodies consumes q, acking everything, and records each distinct
// body seen; the consumer closes when the test ends.
func consumeBodies(t *testing.T, c *Conn, q string, prefetch int) (*Consumer, *sync.Map) {
	t.Helper()
	seen := &sync.Map{}
	cons, err := c.Consume(ConsumerOptions{Queue: q, Prefetch: prefetch}, func(d Delivery) {
		seen.Store(string(d.Body), true)
		_ = d.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cons.Close)
	return cons, seen
}

// TestDialRefusedByTheBroker dials the test broker with a wrong password
// and with an unknown virtual host: the broker's refusal comes back at
// once as ErrRefused, with its reason, not after connect_timeout.
func TestDialRefusedByTheBroker(t *testing.T) {
	base, err := url.Parse(testbroker.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	user := base.User.Username()
	wrongPassword := *base
	wrongPassword.User = url.UserPassword(user, "not-the-password-"+testbroker.Unique("pw"))
	unknownVhost := *base
	unknownVhost.Path = "/" + testbroker.Unique("relay-no-such-vhost")
	cases := []struct {
		name, url, reason string
	}{
		{"wrong password", wrongPassword.String(), "password"},
		{"unknown vhost", unknownVhost.String(), "vhost"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The connect timeout is far longer than the test's own: a
			// refusal must not wait for it.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := Dial(ctx, Options{Name: "t", URL: c.url, ConnectTimeout: time.Hour})
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("want ErrRefused, got %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, c.reason) || !strings.Contains(msg, base.Host) {
				t.Fatalf("error %q does not name the node %s and say %q", msg, base.Host, c.reason)
			}
		})
	}
}

// TestConnMovesToTheNextNodeWhenLost gives a Conn two names of the same
// broker (127.0.0.1 and localhost) as a two-node list: every lost
// connection moves it to the other one, and Node and the events say so.
func TestConnMovesToTheNextNodeWhenLost(t *testing.T) {
	raw := testbroker.URL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() != "127.0.0.1" {
		t.Skipf("needs a broker on 127.0.0.1, reachable as localhost too; the test broker is %s", u.Host)
	}
	other := *u
	other.Host = "localhost:" + u.Port()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, Options{Name: "test", Instance: "t", URLs: []string{raw, other.String()},
		ReconnectInitial: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		Logger: testLogger(t), start: func(int) int { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	var events []string
	c.OnEvent(func(ev Event) {
		mu.Lock()
		events = append(events, ev.Kind.String()+" "+ev.Node)
		mu.Unlock()
	})
	nodes := []string{u.Host, other.Host}
	if got := c.Node(); got != nodes[0] {
		t.Fatalf("Node() = %q, want %q", got, nodes[0])
	}
	for i := 1; i <= 3; i++ {
		c.mu.Lock()
		conn := c.conn
		c.mu.Unlock()
		conn.Close()
		want := nodes[i%2]
		waitFor(t, ctx, "reconnected to "+want, func() bool { return c.Connected() && c.Node() == want })
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"lost " + nodes[0], "connected " + nodes[1],
		"lost " + nodes[1], "connected " + nodes[0],
		"lost " + nodes[0], "connected " + nodes[1],
	}
	if !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// TestConnFailsOverToTheNextClusterNode runs on the private test cluster:
// the node a Conn is on stops taking connections and drops the ones it
// has; the Conn moves to the next node of its list, declares its quorum
// queue there again, and publishing and consuming go on.
func TestConnFailsOverToTheNextClusterNode(t *testing.T) {
	urls, nodes := testbroker.ClusterURLs(t), testbroker.ClusterNodes(t)
	addrs := make([]string, len(urls))
	for i, u := range urls {
		a, err := NodeAddr(u)
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = a
	}
	q := testbroker.Unique("relay.test.failover")
	testbroker.CleanupQueues(t, urls[1], q)
	declare := declareQuorum(q)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Dial(ctx, Options{Name: "test", Instance: "t", URLs: urls, Topology: declare,
		ReconnectInitial: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		Logger: testLogger(t), start: func(int) int { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Node(); got != addrs[0] {
		t.Fatalf("Node() = %q, want the first node %q", got, addrs[0])
	}
	pub := c.NewPublisher()
	defer pub.Close()
	cons, seen := consumeBodies(t, c, q, 4)
	waitFor(t, ctx, "consumer active", cons.Active)

	testbroker.LockCluster(t, true)
	testbroker.Ctl(t, nodes[0], "suspend_listeners")
	t.Cleanup(func() { testbroker.Ctl(t, nodes[0], "resume_listeners") })
	testbroker.Ctl(t, nodes[0], "close_all_connections", "failover test")

	waitFor(t, ctx, "on the next node", func() bool { return c.Connected() && c.Node() == addrs[1] })
	waitFor(t, ctx, "consumer active again", cons.Active)
	if err := pub.PublishAndWait(ctx, "", q, true, amqp.Publishing{Body: []byte("after failover"), DeliveryMode: amqp.Persistent}); err != nil {
		t.Fatalf("publish after failover: %v", err)
	}
	waitFor(t, ctx, "delivery after failover", func() bool { _, ok := seen.Load("after failover"); return ok })
}

// declareQuorum is a topology function that declares q as a durable
// quorum queue.
func declareQuorum(q string) func(*amqp.Connection) error {
	return func(conn *amqp.Connection) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		_, err = ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
		return err
	}
}
