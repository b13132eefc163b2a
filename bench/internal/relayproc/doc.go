// Package relayproc runs the relay as the harness measures it: the built
// binary in its own process (`relay run --config FILE`), so that its peak
// resident set and CPU time can be read from /proc and belong to it
// alone.
//
// Config renders a configuration for one run: unique queue and exchange
// names, the HTTP endpoints on a free port of 127.0.0.1, and breakers,
// bulkheads and backoff all on but sized not to throttle the benchmark.
// Start waits for the relay's "relay running" log line, which carries the
// address it listens on.
package relayproc
