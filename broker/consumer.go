package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Delivery is one message handed to a consumer's handler. Its
// Acknowledger is the consumer's own (see settler), so the embedded
// amqp.Delivery's Ack, Nack and Reject settle it too, and code that
// takes a plain amqp.Delivery needs nothing of this package to settle it.
// Settle each delivery exactly once: the consumer counts deliveries in
// hand until they are settled. Ack, Requeue and Discard report ErrStale
// when the channel it came on has died (the broker has requeued the
// message by then).
type Delivery struct {
	amqp.Delivery
}

// Ack acknowledges the delivery. Acks are coalesced per channel (see
// acker): one may reach the broker a couple of milliseconds later, never
// before this call.
func (d Delivery) Ack() error { return d.Delivery.Ack(false) }

// Requeue gives the delivery back to the broker for redelivery.
func (d Delivery) Requeue() error { return d.Nack(false, true) }

// Discard rejects the delivery without requeueing it (the queue's
// dead-letter settings, if any, apply).
func (d Delivery) Discard() error { return d.Nack(false, false) }

// Live reports whether the channel the delivery came on is still open. A
// delivery whose channel died has been requeued by the broker, which may
// already have handed it to another consumer: it should not be started.
func (d Delivery) Live() bool { return Live(d.Acknowledger) }

// Live reports whether the delivery whose Acknowledger is a came on a
// channel that is still open; one that did not come through a Consumer
// counts as live. (It takes the acknowledger, not the delivery, so that
// asking costs no copy of the delivery on every task.)
func Live(a amqp.Acknowledger) bool {
	if s, ok := a.(*settler); ok {
		return !s.ch.IsClosed()
	}
	return true
}

// settler is the amqp.Acknowledger of one channel's deliveries: it settles
// them through the channel's acker and counts them out of the consumer's
// deliveries in hand.
type settler struct {
	ch *amqp.Channel
	a  *acker
	cs *Consumer
}

func (s *settler) Ack(tag uint64, multiple bool) error {
	if multiple {
		return errors.New("broker: multiple acks are the acker's own")
	}
	return s.settled(s.a.ack(tag))
}

func (s *settler) Nack(tag uint64, multiple, requeue bool) error {
	if multiple {
		return errors.New("broker: multiple nacks are not supported")
	}
	return s.settled(s.a.nack(tag, requeue))
}

func (s *settler) Reject(tag uint64, requeue bool) error { return s.Nack(tag, false, requeue) }

func (s *settler) settled(err error) error {
	s.cs.release()
	if err == nil {
		return nil
	}
	if s.ch.IsClosed() || errors.Is(err, amqp.ErrClosed) {
		return ErrStale
	}
	return err
}

// ConsumerOptions configure a Consumer.
type ConsumerOptions struct {
	// Queue to consume. It must exist (declare it in the Conn's Topology).
	Queue string
	// Prefetch is the number of unacked deliveries the broker lets this
	// consumer hold. Zero: 1.
	Prefetch int
	// Paused starts the consumer without consuming until Resume.
	Paused bool
}

// Handler receives deliveries. It runs on the consumer's own goroutine, so
// it must hand long work to another goroutine and return promptly; the
// prefetch bounds how many deliveries can be in hand at once.
type Handler func(Delivery)

// Consumer keeps one queue consumed across reconnects. It is safe for
// concurrent use.
type Consumer struct {
	conn    *Conn
	queue   string
	handler Handler

	mu       sync.Mutex
	paused   bool
	prefetch int
	active   bool // consuming on the current channel
	// consumingAt is the prefetch the live broker consumer was started
	// for (while active): a wish that differs from it, or a pause, means
	// that consumer is to be cancelled.
	consumingAt int
	// changed is closed, and replaced, whenever paused, prefetch, active
	// or consumingAt change (see AwaitCancels).
	changed chan struct{}

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	seq atomic.Uint64
	// inHand counts deliveries handed to the handler and not yet settled,
	// over every channel the consumer has had. A new basic.consume asks
	// only for the prefetch less those, so deliveries in hand never exceed
	// the prefetch:
	// RabbitMQ counts a per-consumer prefetch for each consumer tag, and
	// the deliveries of a cancelled consumer (or of a dead channel, still
	// being worked on) would otherwise come on top of the new one's.
	inHand atomic.Int64
	// draining is set while serve waits for room under the prefetch.
	draining atomic.Bool
}

// Consume starts a Consumer for opts.Queue on c.
func (c *Conn) Consume(opts ConsumerOptions, h Handler) (*Consumer, error) {
	if opts.Queue == "" {
		return nil, errors.New("broker: consumer needs a queue name")
	}
	if h == nil {
		return nil, errors.New("broker: consumer needs a handler")
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 1
	}
	cons := &Consumer{
		conn:     c,
		queue:    opts.Queue,
		handler:  h,
		paused:   opts.Paused,
		prefetch: opts.Prefetch,
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
	}
	cons.wg.Add(1)
	go cons.run()
	return cons, nil
}

// Queue returns the consumed queue's name.
func (cs *Consumer) Queue() string { return cs.queue }

// Pause stops taking new deliveries (basic.cancel). Deliveries already
// received are still handed to the handler and may be acked.
func (cs *Consumer) Pause() { cs.set(func() { cs.paused = true }) }

// Resume starts taking deliveries again.
func (cs *Consumer) Resume() { cs.set(func() { cs.paused = false }) }

// SetPrefetch changes how many unacked deliveries the broker lets this
// consumer hold. RabbitMQ applies a per-consumer limit only to consumers
// started after it, so a consuming Consumer cancels, drains what it was
// sent, and consumes again under the new limit.
func (cs *Consumer) SetPrefetch(n int) {
	if n <= 0 {
		n = 1
	}
	cs.set(func() { cs.prefetch = n })
}

// InHand returns the deliveries handed to the handler and not yet
// settled.
func (cs *Consumer) InHand() int { return int(cs.inHand.Load()) }

// release counts one settled delivery out of those in hand, and wakes a
// serve loop waiting for room under the prefetch.
func (cs *Consumer) release() {
	if cs.inHand.Add(-1) >= 0 && cs.draining.Load() {
		select {
		case cs.kick <- struct{}{}:
		default:
		}
	}
}

// room is how many deliveries a new consumer may be sent under prefetch:
// the prefetch less the deliveries still in hand. At zero the next
// release wakes the serve loop.
func (cs *Consumer) room(prefetch int) int {
	if r := prefetch - int(cs.inHand.Load()); r > 0 {
		cs.draining.Store(false)
		return r
	}
	cs.draining.Store(true)
	// A release between the load and the store saw draining unset and
	// woke nobody: look again.
	if r := prefetch - int(cs.inHand.Load()); r > 0 {
		cs.draining.Store(false)
		return r
	}
	return 0
}

// Paused reports whether the consumer is paused.
func (cs *Consumer) Paused() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.paused
}

// Active reports whether the consumer is consuming on a live channel.
func (cs *Consumer) Active() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.active
}

func (cs *Consumer) set(change func()) {
	cs.mu.Lock()
	change()
	cs.changedLocked()
	cs.mu.Unlock()
	select {
	case cs.kick <- struct{}{}:
	default:
	}
}

// changedLocked wakes every AwaitCancels; cs.mu is held.
func (cs *Consumer) changedLocked() {
	close(cs.changed)
	cs.changed = make(chan struct{})
}

// setActive records whether a broker consumer is live on the current
// channel, and for which prefetch.
func (cs *Consumer) setActive(active bool, prefetch int) {
	cs.mu.Lock()
	cs.active, cs.consumingAt = active, prefetch
	cs.changedLocked()
	cs.mu.Unlock()
}

// cancelDueLocked reports whether the live broker consumer is to be
// cancelled, or is being cancelled: it was paused, or its prefetch
// changed, while consuming. cs.mu is held.
func (cs *Consumer) cancelDueLocked() bool {
	return cs.active && (cs.paused || cs.prefetch != cs.consumingAt)
}

// AwaitCancels returns once no basic.cancel of the consumer is due (it
// was paused, or its prefetch changed, while consuming) or waiting for
// its cancel-ok, or with ctx's error. Past it, every delivery the
// cancelled consumer was sent has been handed to the handler, and the
// broker sends it nothing more.
//
// A message that reaches a quorum queue while a consumer of it is being
// cancelled may be sent to that consumer after the broker's channel has
// let go of it; the channel then returns the message to the queue
// (RabbitMQ's handling of rabbitmq-server#3729, observed on 3.10 and
// still in its source for 4.x), which counts it as a delivery and flags
// its next delivery redelivered, though no client ever saw it. Publish
// back to a queue after AwaitCancels so that the relay's own messages
// never race the relay's own cancels.
func (cs *Consumer) AwaitCancels(ctx context.Context) error {
	for {
		cs.mu.Lock()
		due := cs.cancelDueLocked()
		changed := cs.changed
		cs.mu.Unlock()
		if !due {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close cancels the consumer and closes its channel. Deliveries in hand
// that were not acked go back to the broker.
func (cs *Consumer) Close() {
	select {
	case <-cs.done:
	default:
		close(cs.done)
	}
	cs.wg.Wait()
}

// CancelAndDrain stops consuming and waits (up to ctx) until every
// delivery already received has been handed to the handler, keeping the
// channel open so that the handler's work can still be acked. Close the
// consumer afterwards.
func (cs *Consumer) CancelAndDrain(ctx context.Context) {
	cs.Pause()
	deadline := time.NewTicker(5 * time.Millisecond)
	defer deadline.Stop()
	for {
		if !cs.Active() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
		}
	}
}

func (cs *Consumer) run() {
	defer cs.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-cs.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		ch, _, err := cs.conn.Channel(ctx)
		if err != nil {
			return // closed
		}
		err = cs.serve(ch)
		ch.Close()
		select {
		case <-cs.done:
			return
		default:
		}
		if err != nil {
			cs.conn.log.Warn("consumer channel ended, reopening", "queue", cs.queue, "err", err.Error())
			var ae *amqp.Error
			if errors.As(err, &ae) && ae.Code == amqp.NotFound {
				// The queue was deleted under us: declare it again.
				if derr := cs.conn.Redeclare(ctx); derr != nil {
					cs.conn.log.Warn("declaring the topology again failed", "queue", cs.queue, "err", derr.Error())
				}
			}
			select {
			case <-cs.done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// serve consumes on ch until the channel dies or the consumer is closed.
func (cs *Consumer) serve(ch *amqp.Channel) error {
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	cancels := ch.NotifyCancel(make(chan string, 1))
	acks := newAcker(ch)
	defer acks.stop()
	settle := &settler{ch: ch, a: acks, cs: cs}
	appliedQos := -1
	var deliveries <-chan amqp.Delivery
	tag := ""
	defer cs.setActive(false, 0)
	for {
		cs.mu.Lock()
		paused, prefetch, cancel := cs.paused, cs.prefetch, cs.cancelDueLocked()
		cs.mu.Unlock()

		// RabbitMQ applies a per-consumer basic.qos only to consumers
		// started after it, so a new prefetch is set between consumers:
		// cancel, drain what was sent, then consume again under it.
		// Deliveries of an earlier consumer still in hand (a cancelled
		// one, or one of a dead channel still being worked on) count
		// against the new consumer's prefetch, so that the deliveries in
		// hand never exceed it; with the whole prefetch in hand, the new
		// consumer waits until some are settled.
		if !paused && deliveries == nil {
			if room := cs.room(prefetch); room > 0 {
				if room != appliedQos {
					if err := ch.Qos(room, 0, false); err != nil {
						return fmt.Errorf("setting prefetch %d: %w", room, err)
					}
					appliedQos = room
					acks.setPrefetch(room)
				}
				tag = cs.nextTag()
				d, err := ch.Consume(cs.queue, tag, false, false, false, false, nil)
				if err != nil {
					return fmt.Errorf("consuming %s: %w", cs.queue, err)
				}
				deliveries = d
				cs.conn.log.Debug("consuming", "queue", cs.queue, "tag", tag, "prefetch", room)
				cs.setActive(true, prefetch)
			}
		}
		if tag != "" && cancel {
			// Synchronous cancel: deliveries sent before cancel-ok still
			// reach us and are drained below; none come after.
			if err := ch.Cancel(tag, false); err != nil {
				return fmt.Errorf("cancelling consumer on %s: %w", cs.queue, err)
			}
			tag = ""
		}

		select {
		case <-cs.done:
			if tag != "" {
				_ = ch.Cancel(tag, false)
			}
			return nil
		case err := <-closed:
			if err == nil {
				return errors.New("channel closed")
			}
			return err
		case t := <-cancels:
			// The broker cancelled us (queue deleted, node down): consume
			// again on a fresh channel.
			return fmt.Errorf("broker cancelled consumer %s on %s", t, cs.queue)
		case <-cs.kick:
		case d, ok := <-deliveries:
			if !ok {
				// Closed after cancel-ok, once every delivery sent
				// before it has been read.
				deliveries = nil
				cs.setActive(false, 0)
				continue
			}
			d.Acknowledger = settle
			cs.inHand.Add(1)
			cs.handler(Delivery{Delivery: d})
		}
	}
}

func (cs *Consumer) nextTag() string {
	return fmt.Sprintf("%s %s #%d", connectionName(cs.conn.opts.Instance, "consume"), cs.queue, cs.seq.Add(1))
}
