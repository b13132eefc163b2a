// Package relay is the composition root of the relay process: it builds
// every component from a validated configuration, connects them, runs
// them and stops them. It handles no message itself.
//
// The story of one delivery goes through the packages in one direction:
// the broker package's Consumer hands it over; dispatch decides its
// outcome (calling the target inside its bulkhead and breaker) and
// settles it through a broker Publisher; intake decides, from breaker
// states and connection events, how much each consumer takes. The relay
// package only wires them:
//
//   - relay.go builds the components (New), each handed what it needs;
//   - lifecycle.go runs and stops them (Run): one stop signal, and every
//     resource started pushes its cleanup onto a stack that is drained
//     last-in-first-out;
//   - conns.go makes the broker connections and declares the topology;
//   - queues.go starts a consumer behind an intake gate for each queue;
//   - signals.go turns breaker, pool and connection events into metrics
//     and algedonic signals;
//   - server.go serves /health, /healthz, /readyz and /metrics.
package relay
