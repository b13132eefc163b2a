package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

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

// session is one connection and its two channels. Calls go on rpc, which
// consumes direct reply-to, so that their replies come back there; the
// reply is their confirmation, so rpc is not in confirm mode, which would
// only add an ack per call for the broker to send and the client to read.
// Tasks without a reply go on pub, in confirm mode. One goroutine per
// channel reads its replies or confirms, and its returns, and settles the
// pending tasks.
type session struct {
	conn *amqp.Connection
	sock net.Conn // under conn: closed when the broker does not answer a close
	rpc  *amqp.Channel
	pub  *amqp.Channel
	node string

	confirms   chan amqp.Confirmation // pub's
	returns    chan amqp.Return       // pub's
	rpcReturns chan amqp.Return
	replies    <-chan amqp.Delivery
	connClose  chan *amqp.Error
	rpcClose   chan *amqp.Error
	pubClose   chan *amqp.Error
	lost       chan struct{} // closed when the session ends

	pubMu   sync.Mutex // held across tag assignment and the publish frame on pub
	endOnce sync.Once

	mu        sync.Mutex // guards the published tasks
	dead      bool
	why       error
	pending   map[uint64]*Pending // awaiting their confirm, by delivery tag
	unmatched []amqp.Return       // returns whose confirm has not come yet

	callsMu   sync.Mutex // guards the calls, apart from the published tasks
	callsDead bool
	calls     map[string]*Pending // awaiting their reply, by correlation id
}

func newSession(conn *amqp.Connection, sock net.Conn, node string) (*session, error) {
	rpc, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	pub, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return nil, fmt.Errorf("turning on publisher confirms: %w", err)
	}
	s := &session{
		conn:       conn,
		sock:       sock,
		rpc:        rpc,
		pub:        pub,
		node:       node,
		confirms:   pub.NotifyPublish(make(chan amqp.Confirmation, confirmBuffer)),
		returns:    pub.NotifyReturn(make(chan amqp.Return, returnBuffer)),
		rpcReturns: rpc.NotifyReturn(make(chan amqp.Return, returnBuffer)),
		connClose:  conn.NotifyClose(make(chan *amqp.Error, 1)),
		rpcClose:   rpc.NotifyClose(make(chan *amqp.Error, 1)),
		pubClose:   pub.NotifyClose(make(chan *amqp.Error, 1)),
		lost:       make(chan struct{}),
		pending:    make(map[uint64]*Pending),
		calls:      make(map[string]*Pending),
	}
	if s.replies, err = rpc.Consume(directReplyTo, "", true, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("consuming %s: %w", directReplyTo, err)
	}
	go s.serveCalls()
	go s.servePublishes()
	return s, nil
}

// closeWait bounds the wait for the broker's close-ok: a connection whose
// peer went silent must not hold Close.
const closeWait = time.Second

// close asks the broker to close the connection and waits for its answer
// for closeWait at most, then closes the socket. The socket's deadline,
// which CloseDeadline sets, does not bound the wait by itself: amqp091's
// heartbeater moves the read deadline on (to three heartbeats) for each
// frame the reader hands it, and one read just before the close may be
// handed over after the deadline was set. Closing the socket ends the
// reader, and so the wait, whatever the deadlines say.
func (s *session) close() error {
	var fired atomic.Bool
	t := time.AfterFunc(closeWait, func() {
		fired.Store(true)
		_ = s.sock.Close()
	})
	err := s.conn.CloseDeadline(time.Now().Add(closeWait))
	t.Stop()
	switch {
	case errors.Is(err, amqp.ErrClosed):
		return nil
	case fired.Load():
		return fmt.Errorf("closing the connection to %s: no close-ok within %s; socket closed", s.node, closeWait)
	}
	return err
}

func (s *session) reason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why
}

// serveCalls settles calls by their replies and returns until rpc or
// the connection closes. It selects over two channels only, as a
// hand-written reply loop would: the call path pays for nothing else.
func (s *session) serveCalls() {
	defer s.end()
	returns := s.rpcReturns
	for {
		select {
		case d, ok := <-s.replies:
			if !ok {
				return
			}
			s.reply(&d)
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			s.callReturned(r)
		}
	}
}

// servePublishes settles published tasks by their confirms until pub or
// the connection closes. A return is read before the confirm that
// follows it: amqp091 hands a basic.return to its listener before it
// reads the basic.ack after it, so draining the returns before each
// confirm finds it.
func (s *session) servePublishes() {
	defer s.end()
	returns := s.returns
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			s.addReturn(r)
		case c, ok := <-s.confirms:
			if !ok {
				return
			}
			s.drainReturns()
			s.confirm(c)
		}
	}
}

// end ends the session once either loop stops, and closes the
// connection so that the other one stops too.
func (s *session) end() {
	s.endOnce.Do(func() {
		var why error = ErrConnectionLost
		for _, c := range []chan *amqp.Error{s.connClose, s.rpcClose, s.pubClose} {
			select {
			case e := <-c:
				if e != nil && why == ErrConnectionLost {
					why = fmt.Errorf("%w: %s", ErrConnectionLost, e.Reason)
				}
			default:
			}
		}
		s.fail(why)
		_ = s.close()
	})
}

func (s *session) drainReturns() {
	for {
		select {
		case r, ok := <-s.returns:
			if !ok {
				return
			}
			s.addReturn(r)
		default:
			return
		}
	}
}

// callReturned settles a call whose task no queue took; its reply will
// not come.
func (s *session) callReturned(r amqp.Return) {
	s.callsMu.Lock()
	p, ok := s.calls[r.CorrelationId]
	if ok && p.matches(r) {
		delete(s.calls, r.CorrelationId)
	}
	s.callsMu.Unlock()
	if ok {
		p.settleReply(nil, unroutable(r))
	}
}

func (s *session) addReturn(r amqp.Return) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

func (s *session) reply(d *amqp.Delivery) {
	s.callsMu.Lock()
	p, ok := s.calls[d.CorrelationId]
	if ok {
		delete(s.calls, d.CorrelationId)
	}
	s.callsMu.Unlock()
	if !ok {
		return // late (the call gave up), a duplicate, or not ours
	}
	p.settleReplyWith(d)
}

// fail ends the session: what waits for a confirm or a reply learns that
// it will not come.
func (s *session) fail(why error) {
	s.mu.Lock()
	s.dead = true
	s.why = why
	pending := s.pending
	s.pending = map[uint64]*Pending{}
	s.mu.Unlock()
	s.callsMu.Lock()
	s.callsDead = true
	calls := s.calls
	s.calls = map[string]*Pending{}
	s.callsMu.Unlock()
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

// publish sends p's task to queue through the default exchange,
// mandatory, on pub, recorded to settle by its confirm. A task with a
// reply goes by publishCall instead: the call path does not pass through
// this frame, which holds a copy of the message.
func (s *session) publish(ctx context.Context, queue string, p *Pending) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return errSessionDead
	}
	tag := s.pub.GetNextPublishSeqNo()
	s.pending[tag] = p
	p.s = s
	s.mu.Unlock()
	err := s.pub.PublishWithContext(ctx, "", queue, true, false, p.msg)
	if err == nil {
		return nil
	}
	s.mu.Lock()
	delete(s.pending, tag)
	s.mu.Unlock()
	return sendError(err)
}

// publishCall sends p's task to queue like publish, on rpc, recorded by
// its correlation id to settle by its reply.
func (s *session) publishCall(ctx context.Context, queue string, p *Pending) error {
	s.callsMu.Lock()
	if s.callsDead {
		s.callsMu.Unlock()
		return errSessionDead
	}
	if _, dup := s.calls[p.corr]; dup {
		s.callsMu.Unlock()
		return ErrDuplicateCorrelationID
	}
	s.calls[p.corr] = p
	p.s = s
	s.callsMu.Unlock()
	err := s.rpc.PublishWithContext(ctx, "", queue, true, false, p.msg)
	if err == nil {
		return nil
	}
	s.forget(p)
	return sendError(err)
}

// sendError: a frame that failed to go out whole is dropped by the
// broker, and the connection is going, so the task can go on the next
// one.
func sendError(err error) error {
	var netErr net.Error
	if errors.Is(err, amqp.ErrClosed) || errors.As(err, &netErr) || errors.Is(err, io.ErrClosedPipe) {
		return errSessionDead
	}
	return err
}

// forget drops a call that no longer waits for its reply.
func (s *session) forget(p *Pending) {
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	if s.calls[p.corr] == p {
		delete(s.calls, p.corr)
	}
}

// waiting is how many calls wait for a reply and how many tasks for a
// confirm.
func (s *session) waiting() (calls, confirms int) {
	s.callsMu.Lock()
	calls = len(s.calls)
	s.callsMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return calls, len(s.pending)
}

// matches: returns carry no delivery tag, so a return is matched by what
// was published. Byte-identical messages are interchangeable.
func (p *Pending) matches(r amqp.Return) bool {
	return r.RoutingKey == p.queue &&
		r.MessageId == p.msg.MessageId &&
		r.CorrelationId == p.msg.CorrelationId &&
		len(r.Headers) == len(p.msg.Headers) &&
		bytes.Equal(r.Body, p.msg.Body)
}
