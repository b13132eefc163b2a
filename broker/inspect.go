package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrNoQueue means a queue asked about does not exist.
var ErrNoQueue = errors.New("broker: no such queue")

// Inspector reads queue depths with passive declares on a channel of its
// own, opened on first use and again whenever it died (a passive declare
// of a missing queue closes it, as does a reconnect). One passive declare
// is under way at a time: an AMQP channel answers its calls in order and
// amqp091 does not match concurrent calls to their answers. It is safe
// for concurrent use.
type Inspector struct {
	conn *Conn
	// busy is held by the one passive declare under way, from before its
	// channel is chosen until the broker answers, even when its caller
	// gave up waiting.
	busy chan struct{}

	mu     sync.Mutex
	ch     *amqp.Channel
	closed bool
}

// NewInspector returns an Inspector on c. Inspect on a connection that
// does not publish (the relay's consuming one): the broker stops reading
// a connection it has blocked for publishing, passive declares included.
func (c *Conn) NewInspector() *Inspector {
	return &Inspector{conn: c, busy: make(chan struct{}, 1)}
}

// QueueDepth returns the queue's ready messages and its consumers, as the
// broker counts them now (queue.declare, passive). It waits for a
// connection and for the broker's answer no longer than ctx allows; a
// declare whose caller gave up still holds the Inspector until the broker
// answers or the connection dies. A missing queue is an error wrapping
// ErrNoQueue.
func (i *Inspector) QueueDepth(ctx context.Context, queue string) (messages, consumers int, err error) {
	select {
	case i.busy <- struct{}{}:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	ch, err := i.channel(ctx)
	if err != nil {
		i.release()
		return 0, 0, err
	}
	type answer struct {
		q   amqp.Queue
		err error
	}
	res := make(chan answer, 1)
	go func() {
		q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		if err != nil {
			i.drop(ch)
		}
		i.release()
		res <- answer{q, err}
	}()
	select {
	case a := <-res:
		if a.err != nil {
			var ae *amqp.Error
			if errors.As(a.err, &ae) && ae.Code == amqp.NotFound {
				return 0, 0, fmt.Errorf("%w: %s (%w)", ErrNoQueue, queue, a.err)
			}
			return 0, 0, fmt.Errorf("reading the depth of queue %s: %w", queue, a.err)
		}
		return a.q.Messages, a.q.Consumers, nil
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// channel returns the live channel, opening one if there is none. busy
// is held.
func (i *Inspector) channel(ctx context.Context) (*amqp.Channel, error) {
	i.mu.Lock()
	ch, closed := i.ch, i.closed
	i.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if ch != nil && !ch.IsClosed() {
		return ch, nil
	}
	ch, _, err := i.conn.Channel(ctx)
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		ch.Close()
		return nil, ErrClosed
	}
	i.ch = ch
	return ch, nil
}

// drop forgets ch after a failed call, closing it: a channel the broker
// has not closed itself (a timeout on our side, say) may still answer
// late, and must not answer the next call.
func (i *Inspector) drop(ch *amqp.Channel) {
	i.mu.Lock()
	if i.ch == ch {
		i.ch = nil
	}
	i.mu.Unlock()
	_ = ch.Close()
}

// release ends the declare under way; after Close, the last one closes
// the channel.
func (i *Inspector) release() {
	i.mu.Lock()
	var ch *amqp.Channel
	if i.closed {
		ch, i.ch = i.ch, nil
	}
	// Released under mu: Close, which looks at busy under mu too, either
	// finds it free or leaves the channel to this release.
	<-i.busy
	i.mu.Unlock()
	if ch != nil {
		_ = ch.Close()
	}
}

// Close closes the Inspector's channel, at once or, when a passive
// declare is under way, as soon as the broker answers it. Later calls
// return ErrClosed.
func (i *Inspector) Close() {
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return
	}
	i.closed = true
	select {
	case i.busy <- struct{}{}:
	default:
		// A declare is under way; its release closes the channel.
		i.mu.Unlock()
		return
	}
	ch := i.ch
	i.ch = nil
	<-i.busy
	i.mu.Unlock()
	if ch != nil {
		_ = ch.Close()
	}
}
