package dispatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/broker"
)

func counter() prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}) }

func testSettler(pub *publisher) (*settler, *Counters, *[]string) {
	c := &Counters{
		Replied: counter(), Completed: counter(), Redelivered: counter(), DeadLettered: counter(),
		Returned: counter(), Forwarded: counter(), Requeued: counter(), Recounted: counter(),
	}
	var dead []string
	s := &settler{
		queue: "q", dlq: "q.dlq", target: "svc", pub: pub, counts: *c,
		delays:       []DelayStep{{Delay: time.Second, Queue: "q.delay.1s"}, {Delay: 2 * time.Second, Queue: "q.delay.2s"}},
		log:          testLog(),
		deadLettered: func(q, reason string) { dead = append(dead, q+": "+reason) },
	}
	return s, c, &dead
}

// One settle path: each outcome publishes what it needs, then acks, and
// is counted once under its own label; an outcome the broker does not
// confirm goes back to the queue instead.
func TestSettleCarriesEachOutcomeOut(t *testing.T) {
	cases := []struct {
		name      string
		o         Outcome
		replyTo   string
		fail      error
		wantKeys  []string // routing keys published to, in order
		wantAck   bool
		wantCount func(*Counters) prometheus.Counter
	}{
		{"reply", Outcome{Kind: Reply, Status: 200, Attempts: 2, Body: []byte("hi"), ContentType: "text/plain"}, "replies", nil,
			[]string{"replies"}, true, func(c *Counters) prometheus.Counter { return c.Replied }},
		{"reply without reply_to", Outcome{Kind: Reply, Status: 200}, "", nil,
			nil, true, func(c *Counters) prometheus.Counter { return c.Completed }},
		{"redeliver, second step", Outcome{Kind: Redeliver, Step: 1, Attempts: 3, Status: 503, Reason: "HTTP 503"}, "replies", nil,
			[]string{"q.delay.2s"}, true, func(c *Counters) prometheus.Counter { return c.Redelivered }},
		{"dead letter with an error reply", Outcome{Kind: DeadLetter, Attempts: 1, Status: 404, Reason: "HTTP 404"}, "replies", nil,
			[]string{"q.dlq", "replies"}, true, func(c *Counters) prometheus.Counter { return c.DeadLettered }},
		{"returned outbound message", Outcome{Kind: DeadLetter, Returned: true, Reason: "unroutable"}, "", nil,
			[]string{"q.dlq"}, true, func(c *Counters) prometheus.Counter { return c.Returned }},
		{"forwarded", Outcome{Kind: Forwarded}, "", nil,
			nil, true, func(c *Counters) prometheus.Counter { return c.Forwarded }},
		{"requeue: handed back as a new publish, then acked", Outcome{Kind: Requeue, Reason: "breaker svc is open"}, "replies", nil,
			[]string{"q"}, true, func(c *Counters) prometheus.Counter { return c.Requeued }},
		{"recount", Outcome{Kind: Recount, Deliveries: 2}, "replies", nil,
			[]string{"q"}, true, func(c *Counters) prometheus.Counter { return c.Recounted }},
		{"requeue when the hand-back is not confirmed: rejected with requeue", Outcome{Kind: Requeue, Reason: "x"}, "", broker.ErrNacked,
			[]string{"q"}, false, func(c *Counters) prometheus.Counter { return c.Requeued }},
		{"dead letter not confirmed: requeued", Outcome{Kind: DeadLetter, Reason: "x"}, "", broker.ErrNacked,
			[]string{"q.dlq"}, false, func(c *Counters) prometheus.Counter { return c.Requeued }},
		{"redelivery lost: requeued", Outcome{Kind: Redeliver, Reason: "x"}, "", broker.ErrLost,
			[]string{"q.delay.1s"}, false, func(c *Counters) prometheus.Counter { return c.Requeued }},
		{"reply queue gone: acked all the same", Outcome{Kind: Reply, Status: 200}, "gone", &broker.ReturnedError{ReplyCode: 312},
			[]string{"gone"}, true, func(c *Counters) prometheus.Counter { return c.Replied }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pub := &publisher{}
			if c.fail != nil {
				pub.fail = func(publishing) error { return c.fail }
			}
			s, counts, _ := testSettler(pub)
			a := newAcks()
			d := delivery(amqp.Table{"custom": "kept", HeaderAttempts: int32(1)}, a)
			d.ReplyTo = c.replyTo
			s.settle(context.Background(), &d, c.o)
			var keys []string
			for _, p := range pub.all() {
				keys = append(keys, p.key)
			}
			if len(keys) != len(c.wantKeys) {
				t.Fatalf("published to %v, want %v", keys, c.wantKeys)
			}
			for i := range keys {
				if keys[i] != c.wantKeys[i] {
					t.Fatalf("published to %v, want %v", keys, c.wantKeys)
				}
			}
			acked, nacked := a.counts()
			if c.wantAck && (acked != 1 || nacked != 0) || !c.wantAck && (acked != 0 || nacked != 1) {
				t.Fatalf("acked %d, nacked %d; want ack %v", acked, nacked, c.wantAck)
			}
			total := 0.0
			for _, x := range []prometheus.Counter{counts.Replied, counts.Completed, counts.Redelivered, counts.DeadLettered, counts.Returned, counts.Forwarded, counts.Requeued, counts.Recounted} {
				total += testutil.ToFloat64(x)
			}
			if got := testutil.ToFloat64(c.wantCount(counts)); got != 1 || total != 1 {
				t.Fatalf("counted %v under the outcome's label and %v in all; want 1 and 1", got, total)
			}
		})
	}
}

func TestSettleMessagesCarryTheContractHeaders(t *testing.T) {
	pub := &publisher{}
	s, _, dead := testSettler(pub)
	d := delivery(amqp.Table{"custom": "kept", HeaderAttempts: int32(1), HeaderTraceparent: "00-abc-def-01"}, newAcks())

	s.settle(context.Background(), &d, Outcome{Kind: DeadLetter, Attempts: 3, Status: 404, Reason: "HTTP 404 Not Found"})
	dl := pub.to("q.dlq")[0].msg
	for k, want := range map[string]any{HeaderError: "HTTP 404 Not Found", HeaderAttempts: int32(3), HeaderStatus: int32(404),
		HeaderTarget: "svc", HeaderQueue: "q", "custom": "kept"} {
		if dl.Headers[k] != want {
			t.Errorf("dead letter %s = %#v, want %#v", k, dl.Headers[k], want)
		}
	}
	if string(dl.Body) != string(d.Body) || dl.MessageId != "m-1" || dl.ReplyTo != "replies" {
		t.Errorf("dead letter lost the task's body or properties: %+v", dl)
	}
	er := pub.to("replies")[0].msg
	if er.Headers[HeaderError] != "HTTP 404 Not Found" || er.CorrelationId != "c-1" || er.Headers[HeaderTraceparent] != "00-abc-def-01" {
		t.Errorf("error reply %+v", er)
	}
	if len(*dead) != 1 || (*dead)[0] != "q: HTTP 404 Not Found" {
		t.Errorf("dead-letter signals %v", *dead)
	}

	s.settle(context.Background(), &d, Outcome{Kind: Redeliver, Step: 0, Attempts: 2, Status: 503, Reason: "HTTP 503"})
	rd := pub.to("q.delay.1s")[0].msg
	if rd.Headers[HeaderRedeliveries] != int32(1) || rd.Headers[HeaderAttempts] != int32(2) || rd.DeliveryMode != amqp.Persistent {
		t.Errorf("redelivery %+v", rd)
	}

	s.settle(context.Background(), &d, Outcome{Kind: Reply, Status: 201, Attempts: 2, Body: []byte("ok"), ContentType: "text/plain"})
	rp := pub.to("replies")[1].msg
	if rp.Headers[HeaderStatus] != int32(201) || rp.Headers[HeaderAttempts] != int32(2) || rp.Headers[HeaderTarget] != "svc" ||
		string(rp.Body) != "ok" || rp.ContentType != "text/plain" || rp.CorrelationId != "c-1" {
		t.Errorf("reply %+v", rp)
	}
}

func TestSettleStaleDeliveryPublishesNothing(t *testing.T) {
	pub := &publisher{}
	s, c, _ := testSettler(pub)
	a := newAcks()
	d := delivery(nil, a)
	s.settle(context.Background(), &d, Outcome{Kind: Stale})
	if len(pub.all()) != 0 || testutil.ToFloat64(c.Requeued) != 0 {
		t.Fatal("a stale delivery was published or counted")
	}
	if _, nacked := a.counts(); nacked != 1 {
		t.Fatal("a stale delivery was not settled (it stays counted in hand)")
	}
}

// The delivery limit: a delivery the broker flags as redelivered (its
// earlier delivery ended without an outcome) is published back with its
// count one higher, and dead-lettered when the count reaches the limit.
func TestRedeliveredCountsTowardsTheDeliveryLimit(t *testing.T) {
	pub := &publisher{}
	s, _, dead := testSettler(pub)
	s.limit = 3
	for _, c := range []struct {
		redelivered bool
		before      any
		want        Kind
		deliveries  int
	}{
		{false, nil, 0, 0},
		{true, nil, Recount, 1},
		{true, int32(1), Recount, 2},
		{true, int32(2), DeadLetter, 0},
		{true, "garbage", Recount, 1},
	} {
		d := delivery(amqp.Table{HeaderDeliveries: c.before}, newAcks())
		d.Redelivered = c.redelivered
		o, ok := s.redelivered(&d)
		if ok != c.redelivered || o.Kind != c.want || o.Deliveries != c.deliveries {
			t.Errorf("redelivered %v with %v before: %v %s %d", c.redelivered, c.before, ok, o.Kind, o.Deliveries)
		}
		if o.Kind == DeadLetter && !strings.Contains(o.Reason, "delivered 3 times without an outcome") {
			t.Errorf("reason %q", o.Reason)
		}
	}
	d := delivery(amqp.Table{"custom": "kept", "x-delivery-count": int64(4), "x-death": []any{}}, newAcks())
	s.settle(context.Background(), &d, Outcome{Kind: Recount, Deliveries: 2})
	back := pub.to("q")[0].msg
	if back.Headers[HeaderDeliveries] != int32(2) || back.Headers["custom"] != "kept" || string(back.Body) != string(d.Body) {
		t.Errorf("published back %+v", back)
	}
	if _, ok := back.Headers["x-delivery-count"]; ok {
		t.Error("the broker's x-delivery-count went with the copy")
	}
	if _, ok := back.Headers["x-death"]; !ok {
		t.Error("x-death (the passes through the delay queues) was dropped")
	}
	_ = dead
	s.limit = 0
	d.Redelivered = true
	if _, ok := s.redelivered(&d); ok {
		t.Error("no limit: a redelivered delivery is worked on as it is")
	}
}

// cancelling is an Intake whose consumer is being cancelled until release
// is closed.
type cancelling struct {
	release chan struct{}
	waits   chan struct{} // one per AwaitCancels call
}

func (c *cancelling) AwaitCancels(ctx context.Context) error {
	c.waits <- struct{}{}
	select {
	case <-c.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// What goes back to the queue (a hand-back, a recount) is published only
// once the queue's consumer is no longer being cancelled: a quorum queue
// would send a copy that arrives during the cancel to the consumer going
// away, and take it back as a spent delivery.
func TestPublishingBackWaitsForTheConsumersCancel(t *testing.T) {
	for _, o := range []Outcome{{Kind: Requeue, Reason: "breaker svc is open"}, {Kind: Recount, Deliveries: 1}} {
		t.Run(o.Kind.String(), func(t *testing.T) {
			pub := &publisher{}
			s, _, _ := testSettler(pub)
			in := &cancelling{release: make(chan struct{}), waits: make(chan struct{}, 1)}
			s.intake.Store(&intakeOf{in})
			a := newAcks()
			d := delivery(nil, a)
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.settle(context.Background(), &d, o)
			}()
			select {
			case <-in.waits:
			case <-done:
				t.Fatalf("settled without waiting for the consumer's cancel: published %d", len(pub.all()))
			case <-time.After(10 * time.Second):
				t.Fatal("settle neither waited for the consumer's cancel nor finished")
			}
			time.Sleep(20 * time.Millisecond)
			if n := len(pub.all()); n != 0 {
				t.Fatalf("%d published back while the consumer was being cancelled", n)
			}
			close(in.release)
			<-done
			if n := len(pub.to("q")); n != 1 {
				t.Fatalf("%d published back to q once the cancel was over, want 1", n)
			}
			if acked, nacked := a.counts(); acked != 1 || nacked != 0 {
				t.Fatalf("acked %d, nacked %d: want the delivery acked after its copy", acked, nacked)
			}
		})
	}
}
