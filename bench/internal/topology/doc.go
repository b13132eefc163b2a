// Package topology declares the queues and exchanges one harness run uses
// and deletes every one of them again, so that a run leaves the broker as
// it found it even when it fails half-way or is interrupted.
//
// Names come from a per-run prefix (see Names), so two runs on one
// broker, or a run next to a live relay, never share a queue.
package topology
