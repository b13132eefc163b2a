package stats

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted samples: the smallest sample at or above p percent of them. It
// returns 0 for no samples. Nearest rank never invents a value between
// two samples, so a p99 is a latency some task really saw.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

// Latency is the summary of one round's latency samples.
type Latency struct {
	N        int
	P50, P99 time.Duration
	Max      time.Duration
}

// Summarize sorts samples in place and summarises them.
func Summarize(samples []time.Duration) Latency {
	slices.Sort(samples)
	l := Latency{N: len(samples), P50: Percentile(samples, 50), P99: Percentile(samples, 99)}
	if len(samples) > 0 {
		l.Max = samples[len(samples)-1]
	}
	return l
}

// Median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none. xs is not changed.
func Median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MedianDuration is Median for durations.
func MedianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(math.Round(Median(xs)))
}

// Ratio returns a/b, or 0 when b is 0 (nothing to compare against).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Ratios divides a[i] by b[i] pairwise, over the shorter of the two. Each
// pair is two implementations measured back to back in one round, so
// their ratio cancels most of the load other processes put on the
// machine during that round.
func Ratios(a, b []float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	for i := range n {
		out[i] = Ratio(a[i], b[i])
	}
	return out
}

// Point is one poll of a counter that only grows: its value at an offset
// from the start of the measurement.
type Point struct {
	At    time.Duration
	Count int
}

// CrossingRate returns how fast the counter in points moved from lo to hi
// (counts per second), with the time of each crossing interpolated
// linearly between the two polls around it. Measuring between two marks
// inside the run, rather than from start to end, leaves out the start-up
// and the tail, which belong to neither implementation's steady state.
// ok is false when the points never reach hi or the crossings coincide.
func CrossingRate(points []Point, lo, hi int) (rate float64, ok bool) {
	if lo >= hi {
		return 0, false
	}
	tLo, okLo := crossing(points, lo)
	tHi, okHi := crossing(points, hi)
	if !okLo || !okHi || tHi <= tLo {
		return 0, false
	}
	return float64(hi-lo) / (tHi - tLo).Seconds(), true
}

// crossing returns the interpolated time at which points first reached v.
func crossing(points []Point, v int) (time.Duration, bool) {
	for i, p := range points {
		if p.Count < v {
			continue
		}
		if i == 0 {
			return p.At, true
		}
		prev := points[i-1]
		if p.Count == prev.Count {
			return p.At, true
		}
		frac := float64(v-prev.Count) / float64(p.Count-prev.Count)
		return prev.At + time.Duration(frac*float64(p.At-prev.At)), true
	}
	return 0, false
}
