package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Topology is what a connection declares on every (re)connect, in order:
// topic exchanges, queues, then exchanges that must exist in any type.
type Topology struct {
	// Topics are durable topic exchanges; one that exists with another
	// type is an error naming it.
	Topics []string
	// Queues are durable queues.
	Queues []Queue
	// Exchanges must exist; any type is accepted, and a missing one is
	// declared as a durable topic exchange.
	Exchanges []string
}

// Queue is a durable queue and its arguments.
type Queue struct {
	Name string
	// Args are the queue's x-arguments. A queue that already exists with
	// other arguments (a length limit an operator set, say) is used as it
	// is, unless the argument that differs is x-queue-type (a
	// *QueueTypeError) or one of Strict.
	Args amqp.Table
	// Strict names the arguments the queue cannot work without (a delay
	// queue's TTL and dead-letter target).
	Strict []string
}

// QueueTypeError is a queue that exists as another type than the one
// asked for.
type QueueTypeError struct {
	Queue    string
	Existing string // classic or quorum (or another type)
	Wanted   string
}

func (e *QueueTypeError) Error() string {
	return fmt.Sprintf("queue %s exists as a %s queue, not %s", e.Queue, e.Existing, e.Wanted)
}

// Add appends u's declarations to t.
func (t *Topology) Add(u Topology) {
	t.Topics = append(t.Topics, u.Topics...)
	t.Queues = append(t.Queues, u.Queues...)
	t.Exchanges = append(t.Exchanges, u.Exchanges...)
}

// Declare declares t on conn. It is idempotent.
func (t Topology) Declare(conn *amqp.Connection, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &declarer{conn: conn, log: log}
	defer d.close()
	for _, x := range t.Topics {
		if err := d.topic(x); err != nil {
			return err
		}
	}
	for _, q := range t.Queues {
		if err := d.queue(q); err != nil {
			return err
		}
	}
	for _, x := range t.Exchanges {
		declared, err := d.ensureExchange(x)
		if err != nil {
			return err
		}
		if declared {
			log.Info("declared missing exchange", "exchange", x, "type", "topic")
		}
	}
	return nil
}

// declarer declares topology on one connection. A refused declare closes
// its channel, so it opens a fresh one whenever it needs to.
type declarer struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	log  *slog.Logger
}

func (d *declarer) channel() (*amqp.Channel, error) {
	if d.ch == nil || d.ch.IsClosed() {
		ch, err := d.conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("opening a channel for topology: %w", err)
		}
		d.ch = ch
	}
	return d.ch, nil
}

func (d *declarer) close() {
	if d.ch != nil {
		d.ch.Close()
	}
}

func isPrecondition(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed
}

// inequivalent reads the argument a PRECONDITION_FAILED names, and the
// value the queue has ("" for none).
var inequivalent = regexp.MustCompile(`inequivalent arg '([^']+)'.*but current is (?:the value )?(?:'([^']*)'|none)`)

// queue declares a durable queue (see Queue for what an existing one with
// other arguments gets).
func (d *declarer) queue(q Queue) error {
	ch, err := d.channel()
	if err != nil {
		return err
	}
	_, err = ch.QueueDeclare(q.Name, true, false, false, false, q.Args)
	if err == nil || !isPrecondition(err) {
		if err != nil {
			return fmt.Errorf("declaring queue %s: %w", q.Name, err)
		}
		return nil
	}
	var arg, current string
	if m := inequivalent.FindStringSubmatch(err.Error()); m != nil {
		arg, current = m[1], m[2]
	}
	if arg == "x-queue-type" {
		if current == "" {
			current = "classic"
		}
		wanted, _ := q.Args["x-queue-type"].(string)
		if wanted == "" {
			wanted = "classic"
		}
		return &QueueTypeError{Queue: q.Name, Existing: current, Wanted: wanted}
	}
	if arg != "" && !slices.Contains(q.Strict, arg) {
		if ch, cerr := d.channel(); cerr == nil {
			if _, perr := ch.QueueDeclarePassive(q.Name, true, false, false, false, nil); perr == nil {
				d.log.Info("using existing queue with its own arguments", "queue", q.Name, "argument", arg)
				return nil
			}
		}
	}
	return fmt.Errorf("declaring queue %s: %w", q.Name, err)
}

// topic declares a durable topic exchange; an existing exchange of
// another type is refused with its name.
func (d *declarer) topic(name string) error {
	ch, err := d.channel()
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring topic exchange %s: %w", name, err)
	}
	return nil
}

// ensureExchange accepts an exchange of any type that exists, and
// declares a durable topic exchange when none does.
func (d *declarer) ensureExchange(name string) (declared bool, err error) {
	ch, err := d.channel()
	if err != nil {
		return false, err
	}
	if err := ch.ExchangeDeclarePassive(name, "topic", true, false, false, false, nil); err == nil {
		return false, nil
	}
	return true, d.topic(name)
}
