package relay

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	t.Setenv("GOGC", "")
	// An empty GOGC is still the environment's choice (Go reads it as 100).
	if got := TuneGC(); got != 100 {
		t.Fatalf("with GOGC set: TuneGC = %d, want the environment's 100 kept", got)
	}
	t.Setenv("GOGC", "250")
	debug.SetGCPercent(250) // as the runtime would have at start
	if got := TuneGC(); got != 250 {
		t.Fatalf("with GOGC=250: TuneGC = %d", got)
	}
}

func TestTuneGCDefault(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	t.Setenv("GOGC", "") // restored when the test ends
	os.Unsetenv("GOGC")
	if got := TuneGC(); got != GCPercent {
		t.Fatalf("TuneGC = %d, want %d", got, GCPercent)
	}
	if p := debug.SetGCPercent(100); p != GCPercent {
		t.Fatalf("GC percent in effect %d, want %d", p, GCPercent)
	}
}
