package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/corkconn"
)

// Client is a connection to the relay's broker. It is safe for concurrent
// use.
type Client struct {
	nodes []string
	list  string // the URL list, passwords as ***
	opts  options

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// cur is the session calls use, nil while disconnected: read without
	// a lock on every call. mu guards changing it, with ready and next.
	cur    atomic.Pointer[session]
	closed atomic.Bool
	mu     sync.Mutex
	ready  chan struct{} // closed when cur is set, or at Close
	next   int           // the node to try next
}

// Dial connects to the broker at url, a URL or a comma-separated list of
// the URLs of one cluster's nodes, and returns once a connection is up.
// It tries the nodes in turn from a random one, with a backoff between
// rounds, until ctx ends; give ctx a deadline to bound the wait. A broker
// that refuses the login or the virtual host ends it at once with a
// *DialError matching ErrRefused; a malformed URL is a *URLError.
func Dial(ctx context.Context, url string, opts ...Option) (*Client, error) {
	nodes, err := ParseURLs(url)
	if err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{nodes: nodes, list: RedactURL(url), opts: o, ready: make(chan struct{}), next: rand.IntN(len(nodes))}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	s, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.install(s)
	c.wg.Add(1)
	go c.supervise(s)
	return c, nil
}

// Close closes the connection. Calls waiting for a reply or a confirm
// fail; later calls return ErrClosed. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	c.closed.Store(true)
	c.cancel()
	s := c.cur.Swap(nil)
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	c.mu.Unlock()
	var err error
	if s != nil {
		err = s.close()
	}
	c.wg.Wait()
	return err
}

// Node is the host:port of the node the client is connected to, or ""
// while it is not.
func (c *Client) Node() string {
	if s := c.cur.Load(); s != nil {
		return s.node
	}
	return ""
}

// session waits for a connection (up to ctx) and returns it.
func (c *Client) session(ctx context.Context) (*session, error) {
	for {
		if s := c.cur.Load(); s != nil {
			return s, nil
		}
		c.mu.Lock()
		s, ready := c.cur.Load(), c.ready
		c.mu.Unlock()
		if c.closed.Load() {
			return nil, ErrClosed
		}
		if s != nil {
			return s, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// install makes s the session calls use, unless the client is closed.
func (c *Client) install(s *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.cur.Store(s)
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	return true
}

// supervise replaces a lost session until Close.
func (c *Client) supervise(s *session) {
	defer c.wg.Done()
	for {
		select {
		case <-s.lost:
		case <-c.ctx.Done():
			return
		}
		c.mu.Lock()
		if c.cur.CompareAndSwap(s, nil) {
			c.ready = make(chan struct{})
		}
		c.mu.Unlock()
		_ = s.close()
		c.opts.logger.Warn("broker connection lost; reconnecting", "node", s.node, "reason", s.reason())
		next, err := c.connect(c.ctx)
		if err != nil {
			return // closed
		}
		if !c.install(next) {
			_ = next.close()
			return
		}
		c.opts.logger.Info("broker connection restored", "node", next.node)
		s = next
	}
}

// connect tries the nodes in turn, one round after another with a backoff
// between rounds, until one answers, one refuses for good, or ctx ends.
func (c *Client) connect(ctx context.Context) (*session, error) {
	wait := c.opts.reconnectFirst
	var last error
	for {
		for range c.nodes {
			c.mu.Lock()
			u := c.nodes[c.next]
			c.next = (c.next + 1) % len(c.nodes)
			c.mu.Unlock()
			s, err := c.open(ctx, u)
			if err == nil {
				// Start the next reconnect at the node after this one.
				return s, nil
			}
			if ctx.Err() != nil {
				if last == nil {
					last = err
				}
				return nil, &DialError{URL: c.list, Err: last}
			}
			last = err
			if permanent(err) {
				return nil, &DialError{URL: RedactURL(u), Err: err, Refused: true}
			}
		}
		jittered := wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(jittered)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, &DialError{URL: c.list, Err: last}
		}
		wait = min(wait*2, c.opts.reconnectMax)
	}
}

// open makes one connection to one node, bounded by the dial timeout and
// ctx, and starts its session.
func (c *Client) open(ctx context.Context, u string) (*session, error) {
	actx, cancel := context.WithTimeout(ctx, c.opts.dialTimeout)
	defer cancel()
	var raw net.Conn
	var rawMu sync.Mutex
	stop := context.AfterFunc(actx, func() {
		// Unblocks a handshake stuck on a node that accepted TCP and
		// went quiet.
		rawMu.Lock()
		defer rawMu.Unlock()
		if raw != nil {
			_ = raw.Close()
		}
	})
	cfg := amqp.Config{
		Heartbeat:       c.opts.heartbeat,
		TLSClientConfig: c.opts.tls,
		Properties:      amqp.Table{"connection_name": c.opts.name},
		Dial: func(network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(actx, network, addr)
			if err != nil {
				return nil, err
			}
			if c.opts.socket != nil {
				conn = c.opts.socket(conn)
			}
			if dl, ok := actx.Deadline(); ok {
				_ = conn.SetDeadline(dl)
			}
			rawMu.Lock()
			raw = conn
			rawMu.Unlock()
			return corkconn.New(conn), nil
		},
	}
	conn, err := amqp.DialConfig(u, cfg)
	fired := !stop()
	if fired && err == nil {
		// The context ended as the handshake finished: the socket is closed.
		_ = conn.Close()
	}
	dl, hasDL := actx.Deadline()
	expired := actx.Err() != nil || (hasDL && !time.Now().Before(dl))
	if fired || (err != nil && expired) {
		// The socket's deadline (the context's) may cut the handshake a
		// moment before the context's timer fires.
		if err == nil || !permanent(err) {
			err = fmt.Errorf("no answer from %s: %w", node(u), context.DeadlineExceeded)
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("no answer from %s: %w", node(u), ctx.Err())
			}
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	rawMu.Lock()
	sock := raw
	rawMu.Unlock()
	s, err := newSession(conn, sock, node(u))
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return s, nil
}

// waiting is how many calls wait for their reply and tasks for their
// confirm on the current connection.
func (c *Client) waiting() (calls, confirms int) {
	s := c.cur.Load()
	if s == nil {
		return 0, 0
	}
	return s.waiting()
}
