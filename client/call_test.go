package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
)

func TestThousandConcurrentCallsGetTheirOwnReplies(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.calls")
	respond(t, url, q)
	c := dial(t, url)

	const n = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"n":%d}`, i)
			r, err := c.Call(ctx, q, []byte(body), ContentType("application/json"))
			switch {
			case err != nil:
				errs[i] = err
			case string(r.Body) != "echo:"+body:
				errs[i] = fmt.Errorf("reply body %q, want %q", r.Body, "echo:"+body)
			case r.Status != 200 || r.Attempts != 1 || r.Target != "echo" || r.ContentType != "application/json":
				errs[i] = fmt.Errorf("reply status %d attempts %d target %q type %q", r.Status, r.Attempts, r.Target, r.ContentType)
			}
		})
	}
	wg.Wait()
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("call %d: %v", i, err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d calls failed", failed, n)
	}
	if calls, _ := c.waiting(); calls != 0 {
		t.Errorf("%d calls still registered after every reply", calls)
	}
}

func TestCallSendsATaskTheRelayCanAnswer(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.props")
	resp := respond(t, url, q)
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, q, []byte("hi"), MessageID("m-1"), CorrelationID("c-1"),
		ContentType("text/plain"), Header("tenant", "acme"), AppID("agent")); err != nil {
		t.Fatal(err)
	}
	tasks := resp.seen()
	if len(tasks) != 1 {
		t.Fatalf("%d tasks, want 1", len(tasks))
	}
	d := tasks[0]
	if d.MessageId != "m-1" || d.CorrelationId != "c-1" || d.ContentType != "text/plain" ||
		d.Headers["tenant"] != "acme" || d.AppId != "agent" || d.DeliveryMode != 2 ||
		!strings.HasPrefix(d.ReplyTo, directReplyTo+".") {
		t.Errorf("task: id %q corr %q type %q headers %v app %q mode %d reply_to %q",
			d.MessageId, d.CorrelationId, d.ContentType, d.Headers, d.AppId, d.DeliveryMode, d.ReplyTo)
	}
}

func TestErrorReplyIsATaskError(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.fail")
	respond(t, url, q)
	c := dial(t, url)
	tests := []struct {
		body   string
		status int
	}{
		{"status:422", 422},
		{"status:404", 404},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := c.Call(ctx, q, []byte(tt.body))
			var te *TaskError
			if !errors.As(err, &te) {
				t.Fatalf("Call = %v, %v; want a *TaskError", r, err)
			}
			want := fmt.Sprintf("HTTP %d from echo: unprocessable", tt.status)
			if te.Reason != want || te.Status != tt.status || te.Attempts != 1 || te.Target != "echo" ||
				string(te.Reply.Body) != want || r != nil {
				t.Errorf("TaskError = %+v", te)
			}
			if got := te.Error(); got != fmt.Sprintf("task failed (HTTP %d): %s", tt.status, want) {
				t.Errorf("Error() = %q", got)
			}
		})
	}
}

func TestCancelledCallReturnsAtOnceAndLeavesNothingBehind(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.cancel")
	resp := respond(t, url, q)
	c := dial(t, url)

	t.Run("cancelled before the call", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.Call(ctx, q, []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Call = %v, want context.Canceled", err)
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := c.Call(ctx, q, []byte("silent"))
			done <- err
		}()
		// Wait until the responder holds the task, then give up.
		deadline := time.Now().Add(10 * time.Second)
		for len(resp.seen()) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Call = %v, want context.Canceled", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Call did not return within 1s of its context's cancel")
		}
	})
	if calls, _ := c.waiting(); calls != 0 {
		t.Fatalf("%d calls still registered after cancel", calls)
	}
	// No queue was made for the calls: the task's reply address is the
	// connection's direct reply-to pseudo-queue.
	for _, d := range resp.seen() {
		if !strings.HasPrefix(d.ReplyTo, directReplyTo+".") {
			t.Errorf("reply_to %q is not direct reply-to", d.ReplyTo)
		}
	}
	// A late reply to the cancelled call is dropped, and the client goes
	// on answering new calls.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := c.Call(ctx, q, []byte("after")); err != nil || string(r.Body) != "echo:after" {
		t.Fatalf("Call after a cancel = %v, %v", r, err)
	}
}

func TestCallToAMissingQueueIsUnroutable(t *testing.T) {
	url := testbroker.URL(t)
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	missing := testbroker.Unique("client.missing")
	_, err := c.Call(ctx, missing, []byte("x"))
	if !errors.Is(err, ErrUnroutable) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Call = %v, want ErrUnroutable naming %s", err, missing)
	}
	if err := c.Submit(ctx, missing, []byte("x")); !errors.Is(err, ErrUnroutable) {
		t.Fatalf("Submit = %v, want ErrUnroutable", err)
	}
}

func TestDuplicateCorrelationIDIsRefused(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.dup")
	respond(t, url, q)
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := c.Request(ctx, q, []byte("silent"), CorrelationID("same"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Cancel()
	if _, err := c.Request(ctx, q, []byte("x"), CorrelationID("same")); !errors.Is(err, ErrDuplicateCorrelationID) {
		t.Fatalf("second Request = %v, want ErrDuplicateCorrelationID", err)
	}
}

func TestConnectionCutDuringCallsEndsEveryCall(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.cut")
	respondSlowly(t, url, q, time.Millisecond) // so that the cut finds calls waiting
	px, viaProxy := newProxy(t, url)
	c := dial(t, viaProxy, WithReconnect(50*time.Millisecond, 200*time.Millisecond))

	const n = 500
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type result struct {
		body string
		err  error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	var answered atomic.Int32
	for i := range n {
		wg.Go(func() {
			defer answered.Add(1)
			body := fmt.Sprintf("task-%d", i)
			r, err := c.Call(ctx, q, []byte(body))
			results[i] = result{err: err}
			if err == nil {
				results[i].body = string(r.Body)
				if results[i].body != "echo:"+body {
					results[i].err = fmt.Errorf("wrong reply %q to %q", r.Body, body)
				}
			}
		})
	}
	// Cut in the middle: once a fifth of the calls are answered.
	for answered.Load() < n/5 {
		time.Sleep(time.Millisecond)
	}
	px.cut()

	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(15 * time.Second):
		buf := make([]byte, 1<<20)
		t.Log(string(buf[:runtime.Stack(buf, true)]))
		t.Fatal("calls still hanging 30s after the cut")
	}
	replied, lost := 0, 0
	for i, r := range results {
		switch {
		case r.err == nil:
			replied++
		case errors.Is(r.err, ErrConnectionLost):
			lost++
		default:
			t.Errorf("call %d: %v", i, r.err)
		}
	}
	t.Logf("after the cut: %d replied, %d failed with ErrConnectionLost", replied, lost)
	if replied+lost != n {
		t.Fatalf("%d replied + %d lost != %d", replied, lost, n)
	}
	if lost == 0 || replied < n/5 {
		t.Errorf("%d replied, %d lost: the cut did not land mid-stream", replied, lost)
	}
	// The client reconnected by itself.
	if r, err := c.Call(ctx, q, []byte("again")); err != nil || string(r.Body) != "echo:again" {
		t.Fatalf("Call after the cut = %v, %v", r, err)
	}
	if calls, _ := c.waiting(); calls != 0 {
		t.Errorf("%d calls still registered", calls)
	}
}

func TestCallAfterCloseIsErrClosed(t *testing.T) {
	url := testbroker.URL(t)
	c := dial(t, url)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := c.Call(context.Background(), "q", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Call after Close = %v, want ErrClosed", err)
	}
}

// A lost node is left for the next one of the list, and calls go on.
func TestLostNodeGivesWayToTheNextOne(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.nodes")
	respond(t, url, q)
	a, viaA := newProxy(t, url)
	_, viaB := newProxy(t, url)
	nodeA, nodeB := withURLHost(t, viaA), withURLHost(t, viaB)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Dial until the random start lands on A, so that losing A matters.
	var c *Client
	for c == nil {
		cand := dial(t, viaA+","+viaB, WithReconnect(20*time.Millisecond, 100*time.Millisecond))
		if cand.Node() == nodeA {
			c = cand
		} else {
			cand.Close()
		}
	}
	a.ln.Close() // node A goes away for good
	a.cut()
	for c.Node() != nodeB {
		if ctx.Err() != nil {
			t.Fatalf("still on %q, want %q", c.Node(), nodeB)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r, err := c.Call(ctx, q, []byte("on b")); err != nil || string(r.Body) != "echo:on b" {
		t.Fatalf("Call on node B = %v, %v", r, err)
	}
}

// A reply settles its call without an allocation of its own: the Reply
// lives in the Pending. What the loop allocates is the Pending and its
// channel, as Request does.
func TestAReplySettlesItsCallWithoutAllocating(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	s := &session{calls: map[string]*Pending{}}
	d := amqp.Delivery{CorrelationId: "c1", ContentType: "text/plain", Body: []byte("echo:x"),
		Headers: amqp.Table{HeaderStatus: int32(200), HeaderAttempts: int32(1), HeaderTarget: "echo"}}
	var got *Reply
	allocs := testing.AllocsPerRun(200, func() {
		p := &Pending{corr: "c1", replyDone: make(chan struct{})}
		s.calls[p.corr] = p
		s.reply(&d)
		got, _ = p.Reply(context.Background())
	})
	if got == nil || got.Status != 200 || got.Target != "echo" || string(got.Body) != "echo:x" {
		t.Fatalf("reply = %+v", got)
	}
	if allocs > 2 {
		t.Fatalf("%v allocations per reply, the Pending and its channel included; want 2", allocs)
	}
}

func TestCallIDsAreOneAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector moves the hex digits to the heap")
	}
	var m, c string
	if allocs := testing.AllocsPerRun(200, func() { m, c = randomIDs() }); allocs > 1 {
		t.Fatalf("randomIDs: %v allocations, want 1", allocs)
	}
	if len(m) != 32 || len(c) != 32 || m == c {
		t.Fatalf("ids %q, %q", m, c)
	}
}
