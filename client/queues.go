package client

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrNoQueue matches a queue that does not exist.
var ErrNoQueue = errors.New("client: no such queue")

// QueueInfo is a queue's depth as the broker saw it.
type QueueInfo struct {
	Name      string
	Messages  int // ready, not counting those delivered and not yet acked
	Consumers int
}

// Inspect reads a queue's depth with a passive declare, which neither
// creates nor changes it. A queue that does not exist is an error
// matching ErrNoQueue.
func (c *Client) Inspect(ctx context.Context, queue string) (QueueInfo, error) {
	s, err := c.session(ctx)
	if err != nil {
		return QueueInfo{}, err
	}
	// A passive declare of a missing queue closes its channel, so each
	// one gets its own.
	ch, err := s.conn.Channel()
	if err != nil {
		return QueueInfo{}, fmt.Errorf("opening a channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return QueueInfo{}, fmt.Errorf("%w: %s", ErrNoQueue, queue)
		}
		return QueueInfo{}, err
	}
	return QueueInfo{Name: q.Name, Messages: q.Messages, Consumers: q.Consumers}, nil
}
