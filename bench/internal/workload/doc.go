// Package workload is the traffic of a harness run, identical for every
// implementation measured against it:
//
//   - Echo, the local downstream: an HTTP server that answers every POST
//     with its body.
//   - RunTasks, a closed loop of tasks: it keeps a fixed number of tasks
//     outstanding on a work queue, each a persistent message published
//     with a confirm and carrying reply_to and a correlation id that
//     encodes when it was sent, and measures the replies: how many
//     arrive per second inside a measured window after a warm-up, and
//     the latency from publish to reply.
//   - Prefill and WatchDepth, for a path that moves a full queue: fill a
//     queue with confirmed messages, then poll the destination's depth
//     until everything has arrived.
//
// A closed loop keeps the work queue from ever running dry or growing
// without bound, so both implementations are measured saturated and the
// run's length does not depend on how fast either one is.
package workload
