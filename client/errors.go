package client

import (
	"errors"
	"fmt"
	"strconv"

	amqp "github.com/rabbitmq/amqp091-go"
)

var (
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("client: closed")
	// ErrRefused matches a broker that refused the connection for a
	// reason a retry cannot change: the login, or the virtual host.
	ErrRefused = errors.New("client: the broker refused the connection")
	// ErrUnroutable matches a task no queue took: the queue does not
	// exist.
	ErrUnroutable = errors.New("client: no queue took the message")
	// ErrNacked matches a task the broker refused to take.
	ErrNacked = errors.New("client: the broker refused the message")
	// ErrUnconfirmed matches a task whose confirm did not come: the
	// connection was lost, or the wait ended, after it was sent. The task
	// may or may not have been taken.
	ErrUnconfirmed = errors.New("client: the message may or may not have been published")
	// ErrConnectionLost matches a call whose connection was lost before
	// its reply came.
	ErrConnectionLost = errors.New("client: the broker connection was lost")
	// ErrNoReply is returned by Pending.Reply for a task published
	// without a reply address (by Publish).
	ErrNoReply = errors.New("client: the task was published without a reply address")
	// ErrDuplicateCorrelationID is returned by Request and Call when a
	// call with the same correlation id is still waiting.
	ErrDuplicateCorrelationID = errors.New("client: a call with this correlation id is still waiting")
)

// TaskError is an error reply: the relay could not do the task and says
// why in x-relay-error. Find it with errors.As.
type TaskError struct {
	Reason   string // x-relay-error
	Status   int    // x-relay-status, the downstream's HTTP status; 0 when none was seen
	Attempts int    // x-relay-attempts
	Target   string // x-relay-target
	Reply    *Reply // the whole reply
}

func (e *TaskError) Error() string {
	if e.Status != 0 {
		return "task failed (HTTP " + strconv.Itoa(e.Status) + "): " + e.Reason
	}
	return "task failed: " + e.Reason
}

// DialError is a connection that could not be made: the broker refused
// it (Is(ErrRefused)), or the context ended while no node answered.
type DialError struct {
	URL string // the URL list, passwords as ***
	Err error  // the last attempt's error
	// Refused is set when the broker refused the login or the virtual
	// host, which a retry cannot change.
	Refused bool
}

func (e *DialError) Error() string {
	if e.Refused {
		return fmt.Sprintf("broker %s refused the connection: %s", e.URL, describeAMQP(e.Err))
	}
	return fmt.Sprintf("could not connect to broker %s: %v", e.URL, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// Is makes a refused DialError match ErrRefused.
func (e *DialError) Is(target error) bool { return target == ErrRefused && e.Refused }

// permanent reports whether a dial error is one a retry cannot change:
// the broker refused the credentials (403 ACCESS_REFUSED) or the virtual
// host (530 NOT_ALLOWED, or 403 "no access to this vhost").
//
// amqp091 does not ask RabbitMQ to explain a failed login
// (authentication_failure_close), so the broker just closes the socket
// after start-ok, and amqp091 reports its own ErrCredentials; likewise
// ErrVhost after connection.open. A handshake cut by the client's own
// deadline is told apart before this is asked.
func permanent(err error) bool {
	if errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) || errors.Is(err, amqp.ErrSASL) {
		return true
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) || !ae.Server {
		return false
	}
	return ae.Code == amqp.AccessRefused || ae.Code == amqp.NotAllowed
}

// describeAMQP says what an amqp.Error means to a user, with the broker's
// own words.
func describeAMQP(err error) string {
	var ae *amqp.Error
	switch {
	case errors.Is(err, amqp.ErrCredentials):
		return "the login was refused: wrong user name or password"
	case errors.Is(err, amqp.ErrVhost):
		return "no access to the virtual host"
	case !errors.As(err, &ae):
		return err.Error()
	case ae.Code == amqp.NotAllowed:
		return "no access to the virtual host: " + ae.Reason
	case ae.Code == amqp.AccessRefused:
		return "the login was refused: " + ae.Reason
	}
	return ae.Reason
}
