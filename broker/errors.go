package broker

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
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

var (
	// ErrRefused means the broker refused the connection for a reason
	// that retrying does not cure: credentials it does not accept, a
	// virtual host that does not exist or that the user may not use. The
	// error wrapping it carries the node and the broker's reason.
	ErrRefused = errors.New("broker: access refused")
	// ErrInvalidURL means a broker URL could not be parsed.
	ErrInvalidURL = errors.New("broker: invalid URL")
)

// refusal returns the broker's reason when err is a refusal of the
// connection that retrying does not cure: 403 ACCESS_REFUSED (bad
// credentials, no common SASL mechanism, no access to the virtual host)
// or 530 NOT_ALLOWED (unknown virtual host), but not the 530 of a
// connection limit reached, which passes.
func refusal(err error) (string, bool) {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return "", false
	}
	switch ae.Code {
	case amqp.AccessRefused:
	case amqp.NotAllowed:
		if strings.Contains(ae.Reason, "limit") {
			return "", false
		}
	default:
		return "", false
	}
	return fmt.Sprintf("%s (%d)", ae.Reason, ae.Code), true
}
