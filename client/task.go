package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/amqpheader"
)

// The headers the relay sets on a reply.
const (
	HeaderStatus   = "x-relay-status"
	HeaderAttempts = "x-relay-attempts"
	HeaderError    = "x-relay-error"
	HeaderTarget   = "x-relay-target"
)

// Reply is the relay's answer to a task.
type Reply struct {
	Body          []byte
	ContentType   string
	CorrelationID string
	Status        int            // x-relay-status: the downstream's HTTP status
	Attempts      int            // x-relay-attempts
	Target        string         // x-relay-target
	Headers       map[string]any // every header, x-relay-* among them
}

// setReply makes r the reply d carries.
func setReply(r *Reply, d *amqp.Delivery) {
	*r = Reply{
		Body:          d.Body,
		ContentType:   d.ContentType,
		CorrelationID: d.CorrelationId,
		Status:        headerInt(d.Headers[HeaderStatus]),
		Attempts:      headerInt(d.Headers[HeaderAttempts]),
		Target:        headerString(d.Headers[HeaderTarget]),
		Headers:       d.Headers,
	}
}

func (r *Reply) taskError() *TaskError {
	v, ok := r.Headers[HeaderError]
	if !ok {
		return nil
	}
	return &TaskError{Reason: headerString(v), Status: r.Status, Attempts: r.Attempts, Target: r.Target, Reply: r}
}

func headerInt(v any) int {
	n, _ := amqpheader.Int(v)
	return n
}

func headerString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}

// Pending is a task on its way: its confirm and, when it was published
// with Request, its reply. Its methods are safe for concurrent use.
type Pending struct {
	s     *session
	queue string
	corr  string
	msg   amqp.Publishing

	confirmOnce sync.Once
	confirmDone chan struct{}
	confirmErr  error

	replyOnce sync.Once
	replyDone chan struct{} // nil without a reply address
	reply     *Reply
	replyErr  error
	replied   Reply // where reply points when one came: no allocation of its own
}

func (p *Pending) settleConfirm(err error) {
	p.confirmOnce.Do(func() {
		p.confirmErr = err
		close(p.confirmDone)
	})
}

// settleReplyWith settles a call by its reply d, kept in the Pending
// itself: an error reply is a *TaskError. Only the session's reply loop
// calls it, once per call (it takes the call out of the session's map
// first), so writing p.replied races nothing.
func (p *Pending) settleReplyWith(d *amqp.Delivery) {
	r := &p.replied
	setReply(r, d)
	if te := r.taskError(); te != nil {
		p.settleReply(nil, te)
		return
	}
	p.settleReply(r, nil)
}

func (p *Pending) settleReply(r *Reply, err error) {
	if p.replyDone == nil {
		return
	}
	p.replyOnce.Do(func() {
		p.reply, p.replyErr = r, err
		close(p.replyDone)
	})
}

// MessageID is the task's message id.
func (p *Pending) MessageID() string { return p.msg.MessageId }

// CorrelationID is the task's correlation id.
func (p *Pending) CorrelationID() string { return p.corr }

// Confirmed waits for the broker's confirm: nil once the broker has the
// task. An error matching ErrUnconfirmed (the connection was lost, or ctx
// ended first) leaves the task's fate unknown; ErrUnroutable and
// ErrNacked say it was not taken. A task published with Request is
// confirmed by its reply, the surest sign the broker had it: Confirmed
// waits for the reply (an error reply counts as taken).
func (p *Pending) Confirmed(ctx context.Context) error {
	if p.replyDone != nil {
		select {
		case <-p.replyDone:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnconfirmed, ctx.Err())
		}
		err := p.replyErr
		var te *TaskError
		switch {
		case err == nil || errors.As(err, &te):
			return nil
		case errors.Is(err, ErrConnectionLost):
			return fmt.Errorf("%w (%v)", ErrUnconfirmed, err)
		}
		return err
	}
	select {
	case <-p.confirmDone:
		return p.confirmErr
	default:
	}
	select {
	case <-p.confirmDone:
		return p.confirmErr
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnconfirmed, ctx.Err())
	}
}

// Done is closed once the reply (or the error that replaces it) is in
// for a task published with Request, or the confirm for one published
// with Publish.
func (p *Pending) Done() <-chan struct{} {
	if p.replyDone != nil {
		return p.replyDone
	}
	return p.confirmDone
}

// Reply waits for the reply. An error reply is a *TaskError; a task no
// queue took fails with ErrUnroutable; a lost connection with
// ErrConnectionLost. When ctx ends first it returns ctx's error and the
// call keeps waiting; Cancel stops it.
func (p *Pending) Reply(ctx context.Context) (*Reply, error) {
	if p.replyDone == nil {
		return nil, ErrNoReply
	}
	select {
	case <-p.replyDone:
		return p.reply, p.replyErr
	default:
	}
	select {
	case <-p.replyDone:
		return p.reply, p.replyErr
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Cancel stops waiting for the reply: a reply that comes later is
// dropped. Reply then returns context.Canceled unless the reply was in.
func (p *Pending) Cancel() {
	if p.replyDone == nil || p.s == nil {
		return
	}
	p.s.forget(p)
	p.settleReply(nil, context.Canceled)
}

// Publish publishes a task to queue through the default exchange,
// persistent and mandatory, and returns at once; its Pending tells when
// the broker confirmed it. It waits (up to ctx) while the client is
// reconnecting.
func (c *Client) Publish(ctx context.Context, queue string, body []byte, opts ...CallOption) (*Pending, error) {
	return c.send(ctx, queue, body, false, opts)
}

// Request publishes a task like Publish, with the client's reply address
// and a correlation id, and returns at once; its Pending waits for the
// reply. Cancel it when the reply is no longer wanted. The reply stands
// for the broker's confirm (see Pending.Confirmed).
func (c *Client) Request(ctx context.Context, queue string, body []byte, opts ...CallOption) (*Pending, error) {
	return c.send(ctx, queue, body, true, opts)
}

func (c *Client) send(ctx context.Context, queue string, body []byte, reply bool, opts []CallOption) (*Pending, error) {
	p := &Pending{queue: queue}
	msg := &p.msg
	// Field by field, not a composite literal: the literal would be built
	// on the caller's stack and copied, and the call path's stack is what
	// a caller's goroutine regrows after each GC shrinks it.
	msg.DeliveryMode, msg.Timestamp, msg.Body = amqp.Persistent, time.Now(), body
	for _, o := range opts {
		o(msg)
	}
	if reply {
		switch {
		case msg.MessageId == "" && msg.CorrelationId == "":
			msg.MessageId, msg.CorrelationId = randomIDs()
		case msg.MessageId == "":
			msg.MessageId = randomID()
		case msg.CorrelationId == "":
			msg.CorrelationId = randomID()
		}
		msg.ReplyTo = directReplyTo
	} else if msg.MessageId == "" {
		msg.MessageId = randomID()
	}
	p.corr = msg.CorrelationId
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		if reply {
			p.replyDone = make(chan struct{})
			err = s.publishCall(ctx, queue, p)
		} else {
			p.confirmDone = make(chan struct{})
			err = s.publish(ctx, queue, p)
		}
		if errors.Is(err, errSessionDead) {
			// Nothing was sent; the next connection takes it, with a
			// Pending the dying one cannot have settled.
			select {
			case <-s.lost:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			p = p.again()
			continue
		}
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// again is a fresh Pending for p's task, to send on the next connection.
func (p *Pending) again() *Pending {
	np := &Pending{queue: p.queue, corr: p.corr}
	np.msg = p.msg
	return np
}

// Call publishes a task to queue and waits for the relay's reply. An
// error reply is returned as a *TaskError. When ctx ends first Call
// returns at once with ctx's error, and a reply that comes later is
// dropped.
func (c *Client) Call(ctx context.Context, queue string, body []byte, opts ...CallOption) (*Reply, error) {
	p, err := c.Request(ctx, queue, body, opts...)
	if err != nil {
		return nil, err
	}
	r, err := p.Reply(ctx)
	if err != nil {
		p.Cancel()
	}
	return r, err
}

// Submit publishes a task to queue and returns once the broker confirmed
// it, without waiting for a reply. See Pending.Confirmed for its errors.
func (c *Client) Submit(ctx context.Context, queue string, body []byte, opts ...CallOption) error {
	p, err := c.Publish(ctx, queue, body, opts...)
	if err != nil {
		return err
	}
	return p.Confirmed(ctx)
}

// Task is one task of a batch.
type Task struct {
	Body    []byte
	Options []CallOption
}

// MaxInFlight bounds the tasks of SubmitBatch awaiting their confirms.
const MaxInFlight = 512

// BatchError is the first task of a batch that failed, by its index;
// the tasks before it were confirmed, those after it were not all sent.
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("task %d: %v", e.Index, e.Err) }
func (e *BatchError) Unwrap() error { return e.Err }

// SubmitBatch publishes tasks to queue with up to MaxInFlight confirms in
// flight together, and returns once every one is confirmed, or with a
// *BatchError naming the first that failed.
func (c *Client) SubmitBatch(ctx context.Context, queue string, tasks []Task) error {
	window := make([]*Pending, 0, min(len(tasks), MaxInFlight))
	first := 0 // index of window[0]
	for i, t := range tasks {
		if len(window) == MaxInFlight {
			if err := window[0].Confirmed(ctx); err != nil {
				return &BatchError{Index: first, Err: err}
			}
			window = window[1:]
			first++
		}
		p, err := c.Publish(ctx, queue, t.Body, t.Options...)
		if err != nil {
			return &BatchError{Index: i, Err: err}
		}
		window = append(window, p)
	}
	for i, p := range window {
		if err := p.Confirmed(ctx); err != nil {
			return &BatchError{Index: first + i, Err: err}
		}
	}
	return nil
}

// randomID returns an id of 32 hex digits (see randomIDs).
func randomID() string {
	id, _ := randomIDs()
	return id
}

// randomIDs returns two ids of 32 hex digits each, from one read of the
// system's random source and in one allocation: a call's message id and
// correlation id.
func randomIDs() (string, string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	var h [64]byte
	hex.Encode(h[:], b[:])
	s := string(h[:])
	return s[:32], s[32:]
}
