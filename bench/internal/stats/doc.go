// Package stats reduces repeated measurements to the figures the
// throughput harness reports: percentiles of latency samples, medians of
// rounds, ratios of one implementation to another measured in the same
// run, and the rate at which a polled counter moved between two marks.
//
// Everything here is pure: no clock, no I/O, so the arithmetic the
// reported figures rest on is tested exactly.
package stats
