// Package broker is the relay's one place for AMQP: self-healing
// connections, channels, topology, consumers and publishers with
// asynchronous publisher confirms. The rest of the relay calls the small
// types here and never touches amqp091-go directly.
//
// # Connections
//
// A Conn is one logical connection that redials with exponential backoff
// and jitter whenever the broker connection is lost. The first dial must
// succeed within Options.ConnectTimeout, so a misconfigured relay fails
// fast with one clear line. Every (re)connect runs the Topology hook before
// anything else uses the connection, so queues and exchanges exist again
// after a broker restart. Listeners registered with OnEvent learn of
// connects, losses and the broker's connection.blocked / unblocked, in
// order, outside any lock.
//
// A Conn may be given the URLs of a cluster's nodes. It starts at a random
// one; a failed dial or a lost connection moves it on to the next node at
// once, and the reconnect backoff is waited only after a whole round of
// nodes failed. Conn.Node names the node it is on (host:port), as do its
// events, its log lines and the connection name the broker shows. A
// broker that refuses the credentials or the virtual host fails Dial at
// once with ErrRefused and the broker's reason: no amount of retrying
// would help.
//
// The relay uses separate Conns for consuming and for publishing, so that
// broker flow control on publishes (connection.blocked) never stalls the
// acks of the consuming side.
//
// # Consumers
//
// A Consumer keeps a queue consumed across reconnects: it opens its own
// channel with the configured prefetch, consumes, hands every delivery to
// its handler, and starts again on a fresh channel when the old one dies.
// Pause cancels the consumer (messages stay in the broker; deliveries in
// hand stay unacked and may still be acked or requeued), Resume consumes
// again, SetPrefetch changes the window (the relay narrows it to a few
// probe tasks while a breaker is half-open, and widens it again when the
// breaker closes; the consumer re-consumes so the broker applies it). A
// delivery acked after its channel died reports ErrStale: the broker has
// already requeued it.
//
// # Publishers
//
// A Publisher owns a confirm-mode channel on a Conn. Publish returns a
// Confirmation at once; many publishes are in flight together and each
// caller waits only for its own confirm. Mandatory publishes that come back
// unroutable resolve with a *ReturnedError (errors.Is ErrReturned). A
// connection lost with publishes unconfirmed resolves them with ErrLost:
// the caller must then not ack its source message, so the broker delivers
// it again (at least once, never lost).
//
// Broker URLs are redacted (amqp://user:***@host) in every log line and
// error this package produces.
package broker
