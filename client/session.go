package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// directReplyTo is RabbitMQ's pseudo-queue for replies: a consumer on it
// gets every reply addressed to its channel, with no queue declared.
const directReplyTo = "amq.rabbitmq.reply-to"

const (
	confirmBuffer  = 4096
	returnBuffer   = 1024
	unmatchedLimit = 4096
)

// session is one connection and its task channel: in confirm mode, and
// consuming direct reply-to, so that the tasks published on it get their
// confirms and their replies there. One goroutine, serve, reads confirms,
// returns and replies and settles the pending tasks.
type session struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	node string

	confirms  chan amqp.Confirmation
	returns   chan amqp.Return
	replies   <-chan amqp.Delivery
	connClose chan *amqp.Error
	chClose   chan *amqp.Error
	lost      chan struct{} // closed when the session ends

	pubMu sync.Mutex // held across tag assignment and the publish frame

	mu        sync.Mutex
	dead      bool
	why       error
	pending   map[uint64]*Pending // awaiting their confirm, by delivery tag
	calls     map[string]*Pending // awaiting their reply, by correlation id
	unmatched []amqp.Return       // returns whose confirm has not come yet
}

func newSession(conn *amqp.Connection, node string) (*session, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("turning on publisher confirms: %w", err)
	}
	s := &session{
		conn:      conn,
		ch:        ch,
		node:      node,
		confirms:  ch.NotifyPublish(make(chan amqp.Confirmation, confirmBuffer)),
		returns:   ch.NotifyReturn(make(chan amqp.Return, returnBuffer)),
		connClose: conn.NotifyClose(make(chan *amqp.Error, 1)),
		chClose:   ch.NotifyClose(make(chan *amqp.Error, 1)),
		lost:      make(chan struct{}),
		pending:   make(map[uint64]*Pending),
		calls:     make(map[string]*Pending),
	}
	if s.replies, err = ch.Consume(directReplyTo, "", true, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("consuming %s: %w", directReplyTo, err)
	}
	go s.serve()
	return s, nil
}

func (s *session) close() error {
	err := s.conn.Close()
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

func (s *session) reason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why
}

// serve settles confirms, returns and replies until the channel or the
// connection closes. A return is read before the confirm that follows it:
// amqp091 hands a basic.return to its listener before it reads the
// basic.ack after it, so draining the returns before each confirm finds
// it.
func (s *session) serve() {
	var why error = ErrConnectionLost
	defer func() { s.fail(why) }()
	for {
		select {
		case r := <-s.returns:
			s.addReturn(r)
		case c, ok := <-s.confirms:
			if !ok {
				return
			}
			s.drainReturns()
			s.confirm(c)
		case d, ok := <-s.replies:
			if !ok {
				return
			}
			s.reply(d)
		case e := <-s.connClose:
			if e != nil {
				why = fmt.Errorf("%w: %s", ErrConnectionLost, e.Reason)
			}
			return
		case e := <-s.chClose:
			if e != nil {
				why = fmt.Errorf("%w: channel closed: %s", ErrConnectionLost, e.Reason)
			}
			return
		}
	}
}

func (s *session) drainReturns() {
	for {
		select {
		case r := <-s.returns:
			s.addReturn(r)
		default:
			return
		}
	}
}

func (s *session) addReturn(r amqp.Return) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.calls[r.CorrelationId]; ok && r.CorrelationId != "" && p.matches(r) {
		delete(s.calls, r.CorrelationId)
		p.settleReply(nil, unroutable(r))
	}
	if len(s.unmatched) >= unmatchedLimit {
		s.unmatched = s.unmatched[1:]
	}
	s.unmatched = append(s.unmatched, r)
}

func unroutable(r amqp.Return) error {
	return fmt.Errorf("%w: queue %q (%d %s)", ErrUnroutable, r.RoutingKey, r.ReplyCode, r.ReplyText)
}

func (s *session) confirm(c amqp.Confirmation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[c.DeliveryTag]
	if !ok {
		return
	}
	delete(s.pending, c.DeliveryTag)
	if !c.Ack {
		if s.calls[p.corr] == p {
			delete(s.calls, p.corr)
			p.settleReply(nil, ErrNacked)
		}
		p.settleConfirm(ErrNacked)
		return
	}
	for i, r := range s.unmatched {
		if p.matches(r) {
			s.unmatched = append(s.unmatched[:i], s.unmatched[i+1:]...)
			p.settleConfirm(unroutable(r))
			return
		}
	}
	p.settleConfirm(nil)
}

func (s *session) reply(d amqp.Delivery) {
	s.mu.Lock()
	p, ok := s.calls[d.CorrelationId]
	if ok {
		delete(s.calls, d.CorrelationId)
	}
	s.mu.Unlock()
	if !ok {
		return // late (the call gave up), a duplicate, or not ours
	}
	r := newReply(d)
	if te := r.taskError(); te != nil {
		p.settleReply(nil, te)
		return
	}
	p.settleReply(r, nil)
}

// fail ends the session: what waits for a confirm or a reply learns that
// it will not come.
func (s *session) fail(why error) {
	s.mu.Lock()
	s.dead = true
	s.why = why
	pending, calls := s.pending, s.calls
	s.pending, s.calls = map[uint64]*Pending{}, map[string]*Pending{}
	s.mu.Unlock()
	for _, p := range pending {
		p.settleConfirm(fmt.Errorf("%w (%v)", ErrUnconfirmed, why))
	}
	for _, p := range calls {
		p.settleReply(nil, why)
	}
	close(s.lost)
}

// errSessionDead marks a publish that was never sent because its session
// had ended; it is safe to send it on the next one.
var errSessionDead = errors.New("session ended")

// publish sends msg to queue through the default exchange, mandatory,
// and records p to settle by its confirm (and, with a reply, by its
// correlation id).
func (s *session) publish(ctx context.Context, queue string, msg *amqp.Publishing, p *Pending) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return errSessionDead
	}
	if p.replyDone != nil {
		if _, dup := s.calls[p.corr]; dup {
			s.mu.Unlock()
			return ErrDuplicateCorrelationID
		}
		s.calls[p.corr] = p
	}
	tag := s.ch.GetNextPublishSeqNo()
	s.pending[tag] = p
	p.s = s
	s.mu.Unlock()
	err := s.ch.PublishWithContext(ctx, "", queue, true, false, *msg)
	if err == nil {
		return nil
	}
	s.mu.Lock()
	delete(s.pending, tag)
	if s.calls[p.corr] == p {
		delete(s.calls, p.corr)
	}
	s.mu.Unlock()
	var netErr net.Error
	if errors.Is(err, amqp.ErrClosed) || errors.As(err, &netErr) || errors.Is(err, io.ErrClosedPipe) {
		// A frame that failed to go out whole is dropped by the broker,
		// and the connection is going: the task goes on the next one.
		return errSessionDead
	}
	return err
}

// forget drops a call that no longer waits for its reply.
func (s *session) forget(p *Pending) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls[p.corr] == p {
		delete(s.calls, p.corr)
	}
}

// waiting is how many calls wait for a reply and how many tasks for a
// confirm.
func (s *session) waiting() (calls, confirms int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls), len(s.pending)
}

// samePublishing: returns carry no delivery tag, so a return is matched
// by what was published. Byte-identical messages are interchangeable.
func (p *Pending) matches(r amqp.Return) bool {
	return r.RoutingKey == p.queue &&
		r.MessageId == p.msg.MessageId &&
		r.CorrelationId == p.msg.CorrelationId &&
		len(r.Headers) == len(p.msg.Headers) &&
		bytes.Equal(r.Body, p.msg.Body)
}
