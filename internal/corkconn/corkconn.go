// Package corkconn coalesces the writes of a connection: amqp091 flushes
// every frame set with a write of its own, and both the relay's broker
// connections and the Go client wrap their sockets in one.
package corkconn

import (
	"net"
	"sync"
	"time"
)

// corkLimit bounds the bytes a corkConn buffers; a writer past it waits
// for the socket, as it would without the cork.
const corkLimit = 1 << 20

// corkConn coalesces writes. amqp091 flushes every frame set (a publish,
// an ack) with a write of its own; under load the broker then reads many
// small packets, which costs it more than the bytes. A corkConn hands
// each Write to one flusher goroutine, which writes everything that
// accumulated while its previous write was in the kernel: an idle
// connection writes at once, a busy one writes in batches. Order is kept;
// a write error is returned by the next Write (and the connection, like
// any broken one, is then closed by its owner).
type corkConn struct {
	net.Conn

	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	spare   []byte
	err     error
	closing bool
	done    chan struct{}
}

// New wraps c so that its writes are coalesced (see corkConn).
func New(c net.Conn) net.Conn { return newCorkConn(c) }

func newCorkConn(c net.Conn) *corkConn {
	cc := &corkConn{Conn: c, done: make(chan struct{})}
	cc.cond = sync.NewCond(&cc.mu)
	go cc.flusher()
	return cc
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.buf) >= corkLimit {
		c.cond.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.closing {
		return 0, net.ErrClosed
	}
	c.buf = append(c.buf, p...)
	c.cond.Broadcast()
	return len(p), nil
}

func (c *corkConn) flusher() {
	defer close(c.done)
	c.mu.Lock()
	for {
		for len(c.buf) == 0 && !c.closing && c.err == nil {
			c.cond.Wait()
		}
		if c.err != nil || (len(c.buf) == 0 && c.closing) {
			c.mu.Unlock()
			return
		}
		out := c.buf
		c.buf, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		c.spare = out[:0]
		if err != nil {
			c.err = err
		}
		c.cond.Broadcast()
	}
}

// Close writes what is buffered (for at most a second: the peer may not
// be reading), then closes the connection.
func (c *corkConn) Close() error {
	c.mu.Lock()
	c.closing = true
	c.cond.Broadcast()
	c.mu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	select {
	case <-c.done:
	case <-time.After(time.Second):
	}
	return c.Conn.Close()
}
