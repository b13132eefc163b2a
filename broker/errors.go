package broker

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by calls on a Conn, Consumer or Publisher that
	// was closed.
	ErrClosed = errors.New("broker: closed")
	// ErrLost means the connection or channel died before the broker
	// confirmed a publish; its outcome is unknown.
	ErrLost = errors.New("broker: connection lost before the publish was confirmed")
	// ErrNacked means the broker refused a publish (basic.nack).
	ErrNacked = errors.New("broker: publish nacked by the broker")
	// ErrReturned means a mandatory publish could not be routed to any
	// queue. The concrete error is a *ReturnedError.
	ErrReturned = errors.New("broker: publish returned unroutable")
	// ErrStale means a delivery was acked or rejected after the channel it
	// came on had died; the broker has requeued it already.
	ErrStale = errors.New("broker: delivery belongs to a closed channel")
)

// ReturnedError describes a mandatory publish the broker returned.
type ReturnedError struct {
	Exchange   string
	RoutingKey string
	ReplyCode  uint16
	ReplyText  string
}

func (e *ReturnedError) Error() string {
	ex := e.Exchange
	if ex == "" {
		ex = "(default)"
	}
	return fmt.Sprintf("unroutable: exchange %s, routing key %q: %d %s", ex, e.RoutingKey, e.ReplyCode, e.ReplyText)
}

// Is makes errors.Is(err, ErrReturned) true.
func (e *ReturnedError) Is(target error) bool { return target == ErrReturned }
