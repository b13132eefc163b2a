package breaker

import (
	"math"
	"testing"
	"time"
)

func TestFailureRing(t *testing.T) {
	const w = int64(time.Minute)
	r := newFailureRing(3)
	for _, at := range []int64{0, 10, 20} {
		if r.full(at, w) {
			t.Fatalf("full before three failures (at %d)", at)
		}
		r.add(at)
	}
	tests := []struct {
		now   int64
		full  bool
		count int
	}{
		{20, true, 3},
		{w - 1, true, 3},
		{w, false, 2},
		{w + 10, false, 1},
		{w + 20, false, 0},
	}
	for _, tt := range tests {
		if got := r.full(tt.now, w); got != tt.full {
			t.Errorf("full(%d) = %v, want %v", tt.now, got, tt.full)
		}
		if got := r.count(tt.now, w); got != tt.count {
			t.Errorf("count(%d) = %d, want %d", tt.now, got, tt.count)
		}
	}
	r.add(w + 5) // overwrites the failure at 0
	if !r.full(w+5, w) || r.count(w+5, w) != 3 {
		t.Fatalf("after wrapping: full %v count %d", r.full(w+5, w), r.count(w+5, w))
	}
	r.reset()
	if r.full(w+5, w) || r.count(w+5, w) != 0 {
		t.Fatal("reset ring still counts")
	}
}

func TestCallWindowSlides(t *testing.T) {
	const w = int64(20 * time.Second) // buckets of 1s
	cw := newCallWindow(w)
	sec := int64(time.Second)
	cw.add(0, true, false)
	cw.add(sec/2, false, true)
	cw.add(5*sec, true, true)
	tests := []struct {
		now  int64
		want windowCounts
	}{
		{5 * sec, windowCounts{3, 2, 2}},
		{19*sec + sec/2, windowCounts{3, 2, 2}},
		{20 * sec, windowCounts{1, 1, 1}}, // the first bucket slid out
		{25 * sec, windowCounts{0, 0, 0}},
	}
	for _, tt := range tests {
		if got := cw.sum(tt.now); got != tt.want {
			t.Errorf("sum(%v) = %+v, want %+v", time.Duration(tt.now), got, tt.want)
		}
	}
	// Reusing a bucket for a later interval starts it afresh.
	cw.add(20*sec, false, false)
	if got := cw.sum(20 * sec); got != (windowCounts{2, 1, 1}) {
		t.Errorf("after reuse: %+v", got)
	}
	cw.reset()
	if got := cw.sum(20 * sec); got != (windowCounts{}) {
		t.Errorf("after reset: %+v", got)
	}
}

func TestCallWindowBeforeEpoch(t *testing.T) {
	cw := newCallWindow(int64(20 * time.Second))
	cw.add(-1, true, false) // a clock set back before the breaker was made
	cw.add(0, false, false)
	if got := cw.sum(0); got != (windowCounts{2, 1, 0}) {
		t.Fatalf("sum = %+v", got)
	}
	if floorDiv(-1, 10) != -1 || floorDiv(-10, 10) != -1 || floorDiv(9, 10) != 0 || floorMod(-1, 20) != 19 {
		t.Fatal("floorDiv/floorMod do not round down")
	}
}

func TestTinyWindowAndHugeTimeouts(t *testing.T) {
	b, fc, _ := newTest(t, Settings{FailureThreshold: 1, WindowSize: time.Nanosecond,
		ResetTimeout: time.Duration(math.MaxInt64), FailureRateThreshold: 0.5, MinimumCalls: 1})
	fail(t, b, err503)
	fc.Advance(1000 * time.Hour)
	snap := b.Snapshot()
	if snap.State != Open || snap.FailureCount != 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	if satAdd(10, math.MaxInt64) != math.MaxInt64 || satAdd(10, 5) != 15 {
		t.Fatal("satAdd wraps")
	}
}

func TestFormatting(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "60s", 2 * time.Minute: "120s", 1500 * time.Millisecond: "1.5s",
		250 * time.Millisecond: "250ms", 0: "0s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
	if pct(0.625) != "62%" || pct(1) != "100%" || pct(0.5) != "50%" {
		t.Errorf("pct: %s %s %s", pct(0.625), pct(1), pct(0.5))
	}
}
