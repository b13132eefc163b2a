package relay

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector's target (GOGC) a relay process runs
// with when the environment does not choose one. A relay's live heap is
// small (its prefetched messages and a few buffers) while it allocates
// for every message, so Go's default of 100 collects often for little;
// 400 spends less CPU per message for a few MiB more heap. Set GOGC to
// choose otherwise, and GOMEMLIMIT to cap the heap in a container.
const GCPercent = 400

// TuneGC sets the garbage collector's target to GCPercent unless the
// GOGC environment variable is set, and returns the target in effect (-1:
// off). Commands that run a relay call it once at start.
func TuneGC() int {
	if _, set := os.LookupEnv("GOGC"); set {
		// Go has no getter: setting returns the percent in effect, which
		// is put straight back.
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(GCPercent)
	return GCPercent
}
