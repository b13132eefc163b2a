package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrFormat reports /proc contents this package does not understand.
var ErrFormat = errors.New("procstat: unexpected format")

// Memory is a process's resident set, in bytes.
type Memory struct {
	// Peak is VmHWM: the most the process ever had resident.
	Peak int64
	// Current is VmRSS.
	Current int64
}

// ParseStatus reads VmHWM and VmRSS from the text of /proc/<pid>/status.
func ParseStatus(b []byte) (Memory, error) {
	var m Memory
	var seenPeak, seenCurrent bool
	for line := range bytes.Lines(b) {
		key, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(key) {
		case "VmHWM":
			dst, seenPeak = &m.Peak, true
		case "VmRSS":
			dst, seenCurrent = &m.Current, true
		default:
			continue
		}
		v, err := kilobytes(rest)
		if err != nil {
			return Memory{}, fmt.Errorf("%w: %s: %v", ErrFormat, key, err)
		}
		*dst = v
	}
	if !seenPeak || !seenCurrent {
		return Memory{}, fmt.Errorf("%w: no VmHWM or VmRSS line", ErrFormat)
	}
	return m, nil
}

// kilobytes parses "   1234 kB" into bytes.
func kilobytes(field []byte) (int64, error) {
	f := strings.Fields(string(field))
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("%q is not a size in kB", bytes.TrimSpace(field))
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 || n > 1<<43 {
		return 0, fmt.Errorf("%q is not a size in kB", f[0])
	}
	return n * 1024, nil
}

// Ticks is CPU time in clock ticks (see ClockTicks).
type Ticks struct {
	User, System int64
}

// Total is user plus system time.
func (t Ticks) Total() int64 { return t.User + t.System }

// Sub returns the time used between an earlier reading and t.
func (t Ticks) Sub(earlier Ticks) Ticks {
	return Ticks{User: t.User - earlier.User, System: t.System - earlier.System}
}

// Seconds converts t's total at hz ticks per second.
func (t Ticks) Seconds(hz int64) float64 {
	if hz <= 0 {
		return 0
	}
	return float64(t.Total()) / float64(hz)
}

// ParseStat reads utime and stime (fields 14 and 15) from the text of
// /proc/<pid>/stat. The command name (field 2) is in parentheses and may
// itself hold spaces and parentheses, so fields are counted from the last
// ')'.
func ParseStat(b []byte) (Ticks, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return Ticks{}, fmt.Errorf("%w: no command name", ErrFormat)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return Ticks{}, fmt.Errorf("%w: %d fields after the command name", ErrFormat, len(f))
	}
	u, err1 := strconv.ParseInt(f[utime], 10, 64)
	s, err2 := strconv.ParseInt(f[stime], 10, 64)
	if err1 != nil || err2 != nil || u < 0 || s < 0 {
		return Ticks{}, fmt.Errorf("%w: utime %q, stime %q", ErrFormat, f[utime], f[stime])
	}
	return Ticks{User: u, System: s}, nil
}

// ReadMemory reads the resident set of process pid.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, err
	}
	return ParseStatus(b)
}

// ReadTicks reads the CPU time process pid has used so far.
func ReadTicks(pid int) (Ticks, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Ticks{}, err
	}
	return ParseStat(b)
}

// ClockTicks returns the kernel's USER_HZ from getconf CLK_TCK, or 100
// (what Linux uses on every common architecture) when it cannot be asked.
func ClockTicks() int64 {
	cmd := exec.Command("getconf", "CLK_TCK")
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return 100
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || n <= 0 {
		return 100
	}
	return n
}
