// Package procstat reads what the kernel knows about another process's
// cost: its peak resident set (VmHWM in /proc/<pid>/status) and the CPU
// time it has used (utime + stime in /proc/<pid>/stat). The harness runs
// the relay as a separate process so that these figures are the relay's
// alone, not the load generator's.
//
// The parsers take bytes and are tested and fuzzed on their own; Read*
// only add the file read. Linux only.
package procstat
