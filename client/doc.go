// Package client is the Go client of the relay, for agents that hand work
// to a downstream through it.
//
// # Connecting
//
// Dial connects to a broker, or to one node of a cluster when the URL is a
// comma-separated list ("amqp://u:p@rmq-0:5672/,amqp://u:p@rmq-1:5672/").
// It starts at a random node and moves on to the next one when a dial
// fails or a connection is lost; it waits its reconnect backoff only after
// a whole round of the list failed. A broker that refuses the login or the
// virtual host is reported at once, as an error matching ErrRefused,
// since trying again cannot help; a malformed URL is a *URLError before
// anything is dialled. After Dial the client reconnects by itself until
// Close.
//
// # Tasks
//
// Call publishes a task to a work queue and waits for the relay's reply.
// The reply comes back over RabbitMQ's direct reply-to
// (amq.rabbitmq.reply-to): one consumer per client, no queue per call,
// and the reply is matched to its call by correlation id. The reply is
// the call's receipt, so calls go on a channel of their own without
// publisher confirms, which would only add an ack per call. A reply that
// carries x-relay-error is returned as a *TaskError, found with errors.As,
// holding the reason and the downstream's HTTP status. A task that no
// queue takes (the queue does not exist) fails with ErrUnroutable.
//
// Submit publishes a task and returns once the broker confirmed it,
// without waiting for a reply; SubmitBatch publishes many with their
// confirms in flight together. Publish and Request are the parts Submit
// and Call are made of, for callers that pipeline their own work: each
// returns a *Pending at once.
//
// A connection lost while a task waits for its confirm leaves its fate
// unknown: the error matches ErrUnconfirmed, and the task may or may not
// have been taken. Publishing it again with the same message id lets the
// downstream drop the duplicate (the relay sends the message id as
// Idempotency-Key). A call whose connection is lost before its reply
// fails with ErrConnectionLost: the reply, if one is ever sent, has
// nowhere to go.
//
// # Events
//
// Watch follows the pain, pleasure and health exchanges and hands each
// event to a function as a typed Event, optionally filtered. It binds a
// private queue that dies with the connection and binds a new one after a
// reconnect; events published in between are not seen.
//
// # Concurrency and cancellation
//
// A Client is safe for concurrent use. Every call that can wait takes a
// context and returns when it ends; a cancelled Call leaves nothing
// behind (its correlation id is forgotten, and a late reply is dropped).
package client
