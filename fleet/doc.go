// Package fleet makes the breakers of a fleet of relays that share a name
// act as one breaker (`share: true` in the configuration). It holds the
// decisions only; how messages travel is a Transport's business (the
// relay's is a topic exchange on the broker it already uses,
// DefaultExchange, routing key Message.RoutingKey), so the logic is tested
// without a broker.
//
// # What a coordinator sends
//
// A Coordinator is handed the local breakers marked shared (Share) and
// listens to them:
//
//   - failures counted while closed are batched: one "failures" message
//     per breaker per flush interval (200ms), and only while failures
//     occur;
//   - an opening this relay decided goes out at once as "open" (failures
//     not yet sent are dropped: the opening opens the peers anyway);
//   - a closing goes out as "closed".
//
// A transition a peer caused (Transition.Origin set) is never passed on
// again, so a message cannot echo round the fleet. half_open is not sent:
// each relay probes again on its own reset_timeout, which the different
// moments the relays opened already stagger.
//
// # What it does with what it receives
//
// Deliver applies a peer's message to the breaker of the same name:
// "failures" count in the breaker's window (breaker.RecordPeerFailures),
// so the fleet opens after about failure_threshold failures in all;
// "open" opens it with the peer as origin (breaker.OpenByPeer); "closed"
// lets an open breaker go half_open after a jitter of up to
// min(1s, reset_timeout/10) (breaker.HalfOpenNow), so that the fleet's
// probes do not all land together. It ignores the relay's own messages
// and those it caused, messages about breakers not shared here, and stale
// ones: older than the breaker's window, or from before its last
// transition. Times are the sender's clock, so the relays' clocks must
// agree to well within a window.
//
// A relay that cannot hear its peers (Publish fails, nothing is
// delivered) decides alone, exactly as without sharing: nothing here
// holds a breaker back.
package fleet
