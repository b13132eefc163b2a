package client

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// responder answers the tasks of a queue the way the relay does: the
// reply carries the task's correlation id and x-relay-status,
// x-relay-attempts and x-relay-target; a body "status:NNN" gets an error
// reply with that HTTP status and an x-relay-error reason; a body
// "silent" gets no reply. Other bodies are echoed.
type responder struct {
	mu    sync.Mutex
	tasks []amqp.Delivery
}

func respond(t *testing.T, url, queue string) *responder {
	t.Helper()
	return respondSlowly(t, url, queue, 0)
}

// respondSlowly is respond, taking pause over each task.
func respondSlowly(t *testing.T, url, queue string, pause time.Duration) *responder {
	t.Helper()
	conn := testbroker.Dial(t, url)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Qos(256, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for d := range deliveries {
			r.mu.Lock()
			r.tasks = append(r.tasks, d)
			r.mu.Unlock()
			if pause > 0 {
				time.Sleep(pause)
			}
			if reply, ok := relayReply(d); ok && d.ReplyTo != "" {
				_ = ch.Publish("", d.ReplyTo, false, false, reply)
			}
			_ = d.Ack(false)
		}
	}()
	t.Cleanup(func() {
		ch.Close()
		wg.Wait()
	})
	return r
}

func relayReply(d amqp.Delivery) (amqp.Publishing, bool) {
	body := string(d.Body)
	h := amqp.Table{HeaderTarget: "echo", HeaderAttempts: int32(1)}
	switch {
	case body == "silent":
		return amqp.Publishing{}, false
	case strings.HasPrefix(body, "status:"):
		status, _ := strconv.Atoi(strings.TrimPrefix(body, "status:"))
		reason := "HTTP " + strconv.Itoa(status) + " from echo: unprocessable"
		h[HeaderStatus] = int32(status)
		h[HeaderError] = reason
		return amqp.Publishing{CorrelationId: d.CorrelationId, Headers: h, ContentType: "text/plain; charset=utf-8", Body: []byte(reason)}, true
	}
	h[HeaderStatus] = int32(200)
	return amqp.Publishing{CorrelationId: d.CorrelationId, Headers: h, ContentType: d.ContentType, Body: append([]byte("echo:"), d.Body...)}, true
}

func (r *responder) seen() []amqp.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]amqp.Delivery(nil), r.tasks...)
}

// queue declares a durable queue of the test's own, deleted at the end.
func queue(t *testing.T, url, prefix string) string {
	t.Helper()
	name := testbroker.Unique(prefix)
	ch := testbroker.Channel(t, url)
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatalf("declaring %s: %v", name, err)
	}
	testbroker.CleanupQueues(t, url, name)
	return name
}

// dial connects a client that is closed when the test ends.
func dial(t *testing.T, url string, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proxy is a TCP proxy between the client and the broker that the test
// can cut: every connection through it is dropped, and new ones are let
// in again at once.
type proxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
	hushed   atomic.Bool // drop every byte, keep the connections
}

// hush black-holes the link: bytes are read and dropped both ways.
func (p *proxy) hush() { p.hushed.Store(true) }

func newProxy(t *testing.T, brokerURL string) (*proxy, string) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream = net.JoinHostPort(u.Hostname(), "5672")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, upstream: upstream, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns[down], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(down, up)
		go p.pipe(up, down)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.hushed.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut drops every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}
