// Package machine describes what a benchmark ran on: the CPU, the Go
// toolchain and the broker.
package machine
