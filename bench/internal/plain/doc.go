// Package plain is the yardstick of the work path: the simplest correct
// relay loop a team would write with amqp091-go and net/http alone, with
// no breaker, bulkhead, retry, metrics or signals.
//
// One connection; a consuming channel with the same prefetch as the
// relay, per consumer (quorum queues support no other), which may first
// declare the queue as a classic or a quorum queue; a fixed number of
// workers reading the deliveries; each worker POSTs the body to the
// downstream, publishes the reply to reply_to on a shared confirm-mode
// channel, waits for that confirm, and only then acks the task (a failure
// of any step gives the task back). Its HTTP client keeps as many idle
// connections per host as it has workers, since net/http's default of two
// would have it open a fresh connection for most requests, which no one
// would ship.
package plain
