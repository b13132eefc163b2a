// Command qqcount shows how a RabbitMQ broker counts the deliveries of a
// quorum queue message: what x-delivery-count reads after each way a
// delivery can go back to the queue (nack, reject, a closed channel, a
// cancelled consumer, a lost connection), where a requeued message goes,
// and when x-delivery-limit dead-letters. docs/cluster.md records what it
// printed on RabbitMQ 3.10; run it against another version to compare:
//
//	go run ./scripts/qqcount -url amqp://guest:guest@127.0.0.1:5700/
//
// It declares quorum queues named qqcount.* and deletes them at the end.
// Point it at a broker of your own: it is harmless, but not silent.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	url := flag.String("url", os.Getenv("RELAY_TEST_AMQP_URL"), "broker URL (default: $RELAY_TEST_AMQP_URL)")
	flag.Parse()
	if err := run(*url); err != nil {
		fmt.Fprintln(os.Stderr, "qqcount:", err)
		os.Exit(1)
	}
}

type probe struct {
	url   string
	conn  *amqp.Connection
	ch    *amqp.Channel
	run   string
	made  []string
	wait  time.Duration
	steps int
}

func run(url string) error {
	if url == "" {
		return errors.New("no broker: give -url")
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	p := &probe{url: url, conn: conn, ch: ch, run: fmt.Sprint(time.Now().UnixNano()), wait: 5 * time.Second}
	defer p.cleanup()
	fmt.Println("RabbitMQ", conn.Properties["version"])
	for _, step := range []func() error{p.counting, p.order, p.limit} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// declare makes a quorum queue and its .dlq; limit > 0 sets
// x-delivery-limit with the .dlq as dead-letter target.
func (p *probe) declare(name string, limit int) (string, error) {
	q := "qqcount." + name + "." + p.run
	quorum := amqp.Table{"x-queue-type": "quorum"}
	if _, err := p.ch.QueueDeclare(q+".dlq", true, false, false, false, quorum); err != nil {
		return "", err
	}
	args := amqp.Table{"x-queue-type": "quorum"}
	if limit > 0 {
		args["x-delivery-limit"] = limit
		args["x-dead-letter-exchange"] = ""
		args["x-dead-letter-routing-key"] = q + ".dlq"
	}
	if _, err := p.ch.QueueDeclare(q, true, false, false, false, args); err != nil {
		return "", err
	}
	p.made = append(p.made, q, q+".dlq")
	return q, nil
}

func (p *probe) publish(q, body string) error {
	c, err := p.ch.PublishWithDeferredConfirm("", q, true, false, amqp.Publishing{Body: []byte(body), DeliveryMode: amqp.Persistent})
	if err != nil {
		return err
	}
	if !c.Wait() {
		return errors.New("publish nacked")
	}
	return nil
}

// get waits a little for a message on q (a return takes a moment).
func (p *probe) get(ch *amqp.Channel, q string) (amqp.Delivery, bool, error) {
	deadline := time.Now().Add(p.wait)
	for {
		d, ok, err := ch.Get(q, false)
		if err != nil || ok || time.Now().After(deadline) {
			return d, ok, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *probe) show(what string, d amqp.Delivery, ok bool) {
	p.steps++
	if !ok {
		fmt.Printf("%2d. %-58s (nothing there)\n", p.steps, what)
		return
	}
	count, has := d.Headers["x-delivery-count"]
	if !has {
		count = "absent"
	}
	extra := ""
	if ac, has := d.Headers["x-acquired-count"]; has {
		extra = fmt.Sprintf(" x-acquired-count=%v", ac)
	}
	fmt.Printf("%2d. %-58s body=%s redelivered=%v x-delivery-count=%v%s\n", p.steps, what, d.Body, d.Redelivered, count, extra)
}

// counting returns one message to the queue in every way there is.
func (p *probe) counting() error {
	fmt.Println("\nOne message, returned in turn by each of these (no delivery limit):")
	q, err := p.declare("count", 0)
	if err != nil {
		return err
	}
	if err := p.publish(q, "m"); err != nil {
		return err
	}
	c, err := p.conn.Channel()
	if err != nil {
		return err
	}
	dels, err := c.Consume(q, "qqcount", false, false, false, false, nil)
	if err != nil {
		return err
	}
	d := <-dels
	p.show("first delivery to a consumer", d, true)
	if err := c.Cancel("qqcount", false); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	qi, err := p.ch.QueueDeclarePassive(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	if err != nil {
		return err
	}
	fmt.Printf("    consumer cancelled with the delivery unacked: %d ready in the queue\n", qi.Messages)
	c.Close()
	d, ok, err := p.get(p.ch, q)
	if err != nil {
		return err
	}
	p.show("after that channel closed", d, ok)
	_ = d.Nack(false, true)
	d, ok, err = p.get(p.ch, q)
	if err != nil {
		return err
	}
	p.show("after basic.nack requeue=true", d, ok)
	_ = d.Reject(true)
	d, ok, err = p.get(p.ch, q)
	if err != nil {
		return err
	}
	p.show("after basic.reject requeue=true", d, ok)
	_ = d.Nack(false, true)
	return p.connectionLoss(q)
}

// connectionLoss takes the message on a connection of its own, closes
// that connection with the delivery unacked, and reads the count.
func (p *probe) connectionLoss(q string) error {
	other, err := amqp.Dial(p.url)
	if err != nil {
		return err
	}
	c, err := other.Channel()
	if err != nil {
		other.Close()
		return err
	}
	d, ok, err := p.get(c, q)
	if err != nil {
		other.Close()
		return err
	}
	p.show("taken on another connection (after one more nack)", d, ok)
	other.Close()
	d, ok, err = p.get(p.ch, q)
	if err != nil {
		return err
	}
	p.show("after that connection closed with it unacked", d, ok)
	return d.Ack(false)
}

// order shows where a nacked message goes, with and without a limit.
func (p *probe) order() error {
	fmt.Println("\nWhere a nacked message goes (m1 nacked, m2 behind it):")
	for _, limit := range []int{0, 5} {
		q, err := p.declare(fmt.Sprintf("order%d", limit), limit)
		if err != nil {
			return err
		}
		if err := p.publish(q, "m1"); err != nil {
			return err
		}
		if err := p.publish(q, "m2"); err != nil {
			return err
		}
		d, _, err := p.get(p.ch, q)
		if err != nil {
			return err
		}
		_ = d.Nack(false, true)
		d, ok, err := p.get(p.ch, q)
		if err != nil {
			return err
		}
		p.show(fmt.Sprintf("x-delivery-limit %d: next delivery", limit), d, ok)
		_ = d.Nack(false, true)
	}
	return nil
}

// limit returns a message until x-delivery-limit 2 dead-letters it.
func (p *probe) limit() error {
	for _, how := range []string{"nack", "reject", "channel close"} {
		fmt.Printf("\nx-delivery-limit 2, returned by %s each time:\n", how)
		q, err := p.declare("limit."+strings.ReplaceAll(how, " ", ""), 2)
		if err != nil {
			return err
		}
		if err := p.publish(q, "m"); err != nil {
			return err
		}
		for i := 1; i <= 4; i++ {
			ch := p.ch
			if how == "channel close" {
				if ch, err = p.conn.Channel(); err != nil {
					return err
				}
			}
			d, ok, err := p.get(ch, q)
			if err != nil {
				return err
			}
			p.show(fmt.Sprintf("delivery %d", i), d, ok)
			if !ok {
				break
			}
			switch how {
			case "nack":
				_ = d.Nack(false, true)
			case "reject":
				_ = d.Reject(true)
			default:
				ch.Close()
			}
		}
		dl, ok, err := p.get(p.ch, q+".dlq")
		if err != nil {
			return err
		}
		p.show("in the dead-letter queue", dl, ok)
		if ok {
			fmt.Printf("    x-death: %v\n", death(dl))
			_ = dl.Ack(false)
		}
	}
	return nil
}

func death(d amqp.Delivery) string {
	xs, _ := d.Headers["x-death"].([]any)
	if len(xs) == 0 {
		return "none"
	}
	t, _ := xs[0].(amqp.Table)
	return fmt.Sprintf("reason %v, count %v, queue %v", t["reason"], t["count"], t["queue"])
}

func (p *probe) cleanup() {
	ch, err := p.conn.Channel()
	if err != nil {
		return
	}
	for _, q := range p.made {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
}
