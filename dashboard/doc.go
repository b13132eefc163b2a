// Package dashboard serves the relay's live page and the event stream
// that feeds it.
//
// A Hub fans messages out to every open GET /events stream as
// server-sent events of three kinds: "event" (an algedonic event, in the
// JSON it is published with), "health" (a health report, as GET /health
// answers it) and "stats" (queue statistics with outcomes per second, see
// StatsMessage). The relay hands the hub its events (PublishEvent fits
// the emitter's Subscribe) and, through Options, functions the hub polls
// every second for the health report and the queue counters.
//
// A stream that opens is sent at once the latest health report and stats
// and the latest events, so that a fresh page is complete before anything
// new happens. A browser that reads too slowly never holds the relay up:
// its oldest messages are dropped (counted by Dropped, and told to the
// page in a "dropped" message). An idle stream carries a comment every 15
// seconds so that proxies keep it open.
//
// GET / serves the page; it and its stylesheet and script are embedded in
// the binary and load nothing from elsewhere (the Content-Security-Policy
// says so to the browser). The page shows the overall state and the
// broker connection, the breakers (open first, with their failure counts
// and latest transitions, filterable by name), the pools as busy, waiting
// and capacity bars, the queues with their in-flight tasks and outcomes
// per second, and the latest events. With the admin token typed in, its
// buttons call the admin API (package admin) to open and close breakers,
// pause and resume queues and reload the configuration. All its URLs are
// relative, so it works behind a proxy under a path prefix.
package dashboard
