package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Publisher publishes with publisher confirms on its own channel of a
// Conn. Many publishes may be in flight at once; each caller waits for its
// own Confirmation. It is safe for concurrent use.
type Publisher struct {
	conn *Conn

	mu     sync.Mutex // guards cur
	cur    *confirmChannel
	openMu sync.Mutex // one goroutine opens a channel; the others wait for it
}

// NewPublisher returns a Publisher on c. Its channel is opened on first
// use and again after every reconnect.
func (c *Conn) NewPublisher() *Publisher { return &Publisher{conn: c} }

// Confirmation is the pending outcome of one publish.
type Confirmation struct {
	done chan struct{}
	err  error

	// Kept for mandatory publishes, to recognise a basic.return.
	mandatory bool
	exchange  string
	key       string
	sent      returnKey

	dc     *amqp.DeferredConfirmation // amqp091's, once published
	onDone func(error)                // Options.OnConfirm
}

// Done is closed once the outcome is known.
func (c *Confirmation) Done() <-chan struct{} { return c.done }

// Err returns the outcome once Done is closed: nil when the broker
// confirmed the message, a *ReturnedError when it came back unroutable,
// ErrNacked, or ErrLost.
func (c *Confirmation) Err() error {
	<-c.done
	return c.err
}

// Wait waits for the outcome or for ctx to end.
func (c *Confirmation) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Resolved returns a Confirmation whose outcome is already err: what a
// publisher that is not a broker (a test's, say) hands back.
func Resolved(err error) *Confirmation {
	c := &Confirmation{done: make(chan struct{})}
	c.resolve(err)
	return c
}

func (c *Confirmation) resolve(err error) {
	c.err = err
	c.sent = returnKey{}
	close(c.done)
	if c.onDone != nil {
		c.onDone(err)
	}
}

// Publish sends msg to exchange with routing key, and returns at once
// with its Confirmation. It waits (up to ctx) while the broker connection
// is down or blocked. With mandatory, an unroutable message resolves with
// a *ReturnedError. msg must not be changed until the Confirmation is done.
func (p *Publisher) Publish(ctx context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) (*Confirmation, error) {
	conf := &Confirmation{done: make(chan struct{}), mandatory: mandatory, exchange: exchange, key: key, onDone: p.conn.opts.OnConfirm}
	if mandatory {
		conf.sent = keyOf(&msg)
	}
	for {
		if err := p.conn.WaitUnblocked(ctx); err != nil {
			return nil, err
		}
		cc, err := p.channel(ctx)
		if err != nil {
			return nil, err
		}
		err = cc.publish(exchange, key, mandatory, msg, conf)
		if err == nil {
			return conf, nil
		}
		if !cc.ch.IsClosed() && !errors.Is(err, amqp.ErrClosed) {
			return nil, fmt.Errorf("publish to %q: %w", exchange, err)
		}
		// The channel died before the message left; take a fresh one.
		p.drop(cc)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// PublishAndWait publishes and waits for the confirmation.
func (p *Publisher) PublishAndWait(ctx context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) error {
	c, err := p.Publish(ctx, exchange, key, mandatory, msg)
	if err != nil {
		return err
	}
	return c.Wait(ctx)
}

// channel returns the live confirm channel, opening one if needed.
func (p *Publisher) channel(ctx context.Context) (*confirmChannel, error) {
	p.mu.Lock()
	cc := p.cur
	p.mu.Unlock()
	if cc != nil && !cc.ch.IsClosed() {
		return cc, nil
	}
	// Each channel carries sizeable notification buffers: when many
	// publishers find none, one opens it and the rest use it.
	p.openMu.Lock()
	defer p.openMu.Unlock()
	p.mu.Lock()
	cc = p.cur
	p.mu.Unlock()
	if cc != nil && !cc.ch.IsClosed() {
		return cc, nil
	}
	ch, _, err := p.conn.Channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("enabling publisher confirms: %w", err)
	}
	fresh := newConfirmChannel(ch)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && !p.cur.ch.IsClosed() {
		// Someone else opened one meanwhile; use theirs.
		ch.Close()
		return p.cur, nil
	}
	p.cur = fresh
	return fresh, nil
}

func (p *Publisher) drop(cc *confirmChannel) {
	p.mu.Lock()
	if p.cur == cc {
		p.cur = nil
	}
	p.mu.Unlock()
	cc.ch.Close()
}

// Close closes the publisher's channel; unconfirmed publishes resolve
// with ErrLost. On a connection the broker has blocked, the channel is
// left for the Conn's Close to end: the broker would not read the
// channel's close until the alarm clears, and the publishes resolve when
// the connection goes.
func (p *Publisher) Close() {
	p.mu.Lock()
	cc := p.cur
	p.cur = nil
	p.mu.Unlock()
	if cc == nil || p.conn.Blocked() {
		return
	}
	cc.ch.Close()
	<-cc.finished
}

// confirmChannel is one confirm-mode channel and the goroutine that
// resolves its confirmations, in publish order. amqp091 keeps a
// DeferredConfirmation for every publish on a confirm-mode channel and
// marks it done from its reader as the broker's ack or nack arrives; the
// goroutine waits for the oldest unresolved one, then resolves every done
// one in order. (It does not listen with NotifyPublish: amqp091 would
// then also hand every confirm to the listener, through a channel send
// guarded by a timer made for it, a cost per publish that tells nothing
// the deferred confirmations do not.)
//
// The same goroutine reads the channel's returns: amqp091 hands a
// basic.return to the returns listener before it processes the basic.ack
// that follows it, so by the time a confirmation is done every return
// that preceded it is already waiting in the returns buffer, and is
// drained first.
type confirmChannel struct {
	ch       *amqp.Channel
	returns  chan amqp.Return
	closed   chan *amqp.Error
	finished chan struct{}

	pubMu  sync.Mutex // held across the publish frame and recording it
	pendMu sync.Mutex
	// pending are the publishes not yet resolved, in publish (delivery
	// tag) order, from index head on.
	pending []*Confirmation
	head    int
	kick    chan struct{} // a publish was recorded while none was pending
	dead    bool          // the channel closed; nothing new may be recorded

	unmatched []amqp.Return // returns whose confirm has not come yet
}

const (
	returnBuffer   = 1024
	unmatchedLimit = 4096
	// compactAfter is how many resolved publishes pending may keep at its
	// front before the rest are moved down.
	compactAfter = 1024
)

func newConfirmChannel(ch *amqp.Channel) *confirmChannel {
	cc := &confirmChannel{
		ch:       ch,
		returns:  ch.NotifyReturn(make(chan amqp.Return, returnBuffer)),
		closed:   ch.NotifyClose(make(chan *amqp.Error, 1)),
		finished: make(chan struct{}),
		kick:     make(chan struct{}, 1),
	}
	go cc.resolveLoop()
	return cc
}

func (cc *confirmChannel) publish(exchange, key string, mandatory bool, msg amqp.Publishing, conf *Confirmation) error {
	cc.pubMu.Lock()
	defer cc.pubMu.Unlock()
	// A closed channel refuses the publish itself (amqp.ErrClosed).
	dc, err := cc.ch.PublishWithDeferredConfirm(exchange, key, mandatory, false, msg)
	if err != nil {
		return err
	}
	if dc == nil {
		// Only a channel not in confirm mode hands back none.
		return errors.New("broker: publisher channel is not in confirm mode")
	}
	conf.dc = dc
	cc.pendMu.Lock()
	if cc.dead {
		// The channel closed after the frame left: the outcome is unknown.
		cc.pendMu.Unlock()
		conf.resolve(ErrLost)
		return nil
	}
	cc.pending = append(cc.pending, conf)
	first := len(cc.pending)-cc.head == 1
	cc.pendMu.Unlock()
	if first {
		select {
		case cc.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// oldest returns the oldest publish not yet resolved; nil when none is.
func (cc *confirmChannel) oldest() *Confirmation {
	cc.pendMu.Lock()
	defer cc.pendMu.Unlock()
	if cc.head == len(cc.pending) {
		return nil
	}
	return cc.pending[cc.head]
}

// takeDone appends to into the publishes at the front of pending whose
// confirmation is done, in order, up to the first that is not, and
// removes them from pending. (amqp091 marks the publishes a multiple ack
// covers done one by one, in no particular order, so one not yet done
// ahead of done ones is still to come, not lost.)
func (cc *confirmChannel) takeDone(into []*Confirmation) []*Confirmation {
	cc.pendMu.Lock()
	defer cc.pendMu.Unlock()
	for cc.head < len(cc.pending) && isDone(cc.pending[cc.head].dc) {
		into = append(into, cc.pending[cc.head])
		cc.pending[cc.head] = nil
		cc.head++
	}
	switch {
	case cc.head == len(cc.pending):
		// Nothing pending: start over at the front of the same array.
		cc.pending, cc.head = cc.pending[:0], 0
	case cc.head >= compactAfter && cc.head*2 >= len(cc.pending):
		// Under steady load something is always pending: move what is
		// to the front, so that the array does not grow for ever.
		n := copy(cc.pending, cc.pending[cc.head:])
		clear(cc.pending[n:])
		cc.pending, cc.head = cc.pending[:n], 0
	}
	return into
}

func isDone(dc *amqp.DeferredConfirmation) bool {
	select {
	case <-dc.Done():
		return true
	default:
		return false
	}
}

func (cc *confirmChannel) resolveLoop() {
	defer close(cc.finished)
	returns := cc.returns
	var done []*Confirmation
	for {
		var confirmed <-chan struct{}
		if conf := cc.oldest(); conf != nil {
			confirmed = conf.dc.Done()
		}
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			cc.addReturn(r)
		case <-cc.kick:
		case <-confirmed:
			cc.drainReturns()
			done = cc.takeDone(done[:0])
			for _, conf := range done {
				cc.confirm(conf)
			}
			clear(done)
		case <-cc.closed:
			// Publishes confirmed before the channel closed resolve as
			// they were confirmed; the rest are lost.
			cc.drainReturns()
			for _, conf := range cc.takeDone(nil) {
				cc.confirm(conf)
			}
			cc.failAll()
			return
		}
	}
}

func (cc *confirmChannel) drainReturns() {
	for {
		select {
		case r, ok := <-cc.returns:
			if !ok {
				return
			}
			cc.addReturn(r)
		default:
			return
		}
	}
}

func (cc *confirmChannel) addReturn(r amqp.Return) {
	if len(cc.unmatched) >= unmatchedLimit {
		cc.unmatched = cc.unmatched[1:]
	}
	cc.unmatched = append(cc.unmatched, r)
}

// confirm resolves a publish whose confirmation is done. A nack on a
// channel that has closed is amqp091 giving up the confirmations still
// pending when it closed: their outcome is unknown.
func (cc *confirmChannel) confirm(conf *Confirmation) {
	acked := conf.dc.Acked()
	switch {
	case !acked && cc.ch.IsClosed():
		conf.resolve(ErrLost)
	case !acked:
		conf.resolve(ErrNacked)
	case conf.mandatory:
		if r, found := cc.takeReturn(conf); found {
			conf.resolve(&ReturnedError{Exchange: r.Exchange, RoutingKey: r.RoutingKey, ReplyCode: r.ReplyCode, ReplyText: r.ReplyText})
			return
		}
		conf.resolve(nil)
	default:
		conf.resolve(nil)
	}
}

// takeReturn finds the return that belongs to conf. Returns carry no
// delivery tag, so a return is matched by what was published: exchange,
// routing key, ids and body. Byte-identical messages are interchangeable,
// so matching the first of several identical ones is still exact in
// outcome: one of them was routed and one was returned.
func (cc *confirmChannel) takeReturn(conf *Confirmation) (amqp.Return, bool) {
	for i, r := range cc.unmatched {
		if r.Exchange == conf.exchange && r.RoutingKey == conf.key && samePublishing(r, &conf.sent) {
			cc.unmatched = append(cc.unmatched[:i], cc.unmatched[i+1:]...)
			return r, true
		}
	}
	return amqp.Return{}, false
}

// returnKey is what a mandatory publish keeps of its message to recognise
// its basic.return: the fields a return is matched on, not the whole
// publishing, so that the message a caller hands over need not be kept
// on the heap for every publish.
type returnKey struct {
	messageID, correlationID, contentType, typ string
	headers                                    int
	body                                       []byte
}

func keyOf(m *amqp.Publishing) returnKey {
	return returnKey{
		messageID: m.MessageId, correlationID: m.CorrelationId, contentType: m.ContentType, typ: m.Type,
		headers: len(m.Headers), body: m.Body,
	}
}

func samePublishing(r amqp.Return, k *returnKey) bool {
	return r.MessageId == k.messageID &&
		r.CorrelationId == k.correlationID &&
		r.ContentType == k.contentType &&
		r.Type == k.typ &&
		len(r.Headers) == k.headers &&
		bytes.Equal(r.Body, k.body)
}

func (cc *confirmChannel) failAll() {
	cc.pendMu.Lock()
	pend := cc.pending[cc.head:]
	cc.pending, cc.head = nil, 0
	cc.dead = true
	cc.pendMu.Unlock()
	for _, conf := range pend {
		conf.resolve(ErrLost)
	}
}

// PublishingOf is delivery d as a new message with headers h: every
// property of d (content type and encoding, delivery mode, priority,
// correlation id, reply-to, expiration, message id, timestamp, type, user
// and app id) and its body, for publishing it again elsewhere or later.
func PublishingOf(d *amqp.Delivery, h amqp.Table) amqp.Publishing {
	return amqp.Publishing{
		Headers:         h,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    d.DeliveryMode,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		Expiration:      d.Expiration,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		UserId:          d.UserId,
		AppId:           d.AppId,
		Body:            d.Body,
	}
}
