// Package peers measures the relay's breaker and bulkhead against the
// libraries people would otherwise reach for, in the same process and run:
// sony/gobreaker v2 and failsafe-go. It lives in its own module so that
// the peers never become dependencies of the relay.
//
// Every benchmark is the uncontended success path, the one a healthy relay
// takes for every task: a closed breaker admitting a call that succeeds,
// and a pool with a free slot. The -parallel variants run the same path
// from GOMAXPROCS goroutines at once.
//
// cmd/compare runs them, takes medians and writes the table to the
// relay's BENCHMARKS.md.
package peers
