package breaker

// Times inside a breaker are nanoseconds since the breaker was made (see
// Breaker.now), so that they are plain integers that can be stored
// atomically and compared without wall-clock jumps.

// failureRing holds the times of the last len(at) failures. The breaker
// must open exactly when the threshold-th most recent failure is still
// inside the window, which is what full reports: no fixed intervals, so a
// burst that straddles an interval boundary still opens it.
type failureRing struct {
	at   []int64
	next int // where the next failure goes; the oldest once the ring is full
	n    int // how many slots hold a failure
}

func newFailureRing(size int) failureRing { return failureRing{at: make([]int64, size)} }

func (r *failureRing) add(t int64) {
	r.at[r.next] = t
	r.next++
	if r.next == len(r.at) {
		r.next = 0
	}
	if r.n < len(r.at) {
		r.n++
	}
}

// full reports whether the ring holds a failure for every slot and the
// oldest of them is younger than window.
func (r *failureRing) full(now, window int64) bool {
	return r.n == len(r.at) && inWindow(now, r.at[r.next], window)
}

// count returns how many of the remembered failures are younger than
// window. It never exceeds the threshold, which is all a closed breaker
// can hold before it opens.
func (r *failureRing) count(now, window int64) int {
	c := 0
	for i := range r.n {
		if inWindow(now, r.at[i], window) {
			c++
		}
	}
	return c
}

// spread returns how many remembered failures are younger than window,
// and the times of the oldest and newest of them (both 0 when none is).
func (r *failureRing) spread(now, window int64) (n int, oldest, newest int64) {
	for i := range r.n {
		t := r.at[i]
		if !inWindow(now, t, window) {
			continue
		}
		if n == 0 || t < oldest {
			oldest = t
		}
		if n == 0 || t > newest {
			newest = t
		}
		n++
	}
	return n, oldest, newest
}

// latest is the time of the newest remembered failure, and false when
// there is none.
func (r *failureRing) latest() (int64, bool) {
	if r.n == 0 {
		return 0, false
	}
	i := r.next - 1
	if i < 0 {
		i = len(r.at) - 1
	}
	return r.at[i], true
}

func (r *failureRing) reset() { r.next, r.n = 0, 0 }

// inWindow reports whether an event at t is younger than window at now.
// An event "in the future" (the clock was set back) still counts.
func inWindow(now, t, window int64) bool { return now-t < window }

// numBuckets splits the window of the rate thresholds. More buckets make
// the window slide more smoothly; 20 keeps it within 5% of window_size.
const numBuckets = 20

// callWindow counts calls, failures and slow calls over a sliding window
// made of numBuckets buckets. The current bucket is partly filled, so the
// window covers between (numBuckets-1)/numBuckets of window_size and all of
// it. It is only used when a rate threshold is on.
type callWindow struct {
	width   int64 // of one bucket
	buckets [numBuckets]bucket
}

type bucket struct {
	idx                   int64 // which interval of width the counts are for
	calls, failures, slow int
}

type windowCounts struct{ calls, failures, slow int }

func newCallWindow(window int64) callWindow {
	return callWindow{width: max(window/numBuckets, 1)}
}

func (w *callWindow) add(now int64, failed, slow bool) {
	i := floorDiv(now, w.width)
	b := &w.buckets[floorMod(i, numBuckets)]
	if b.idx != i {
		*b = bucket{idx: i}
	}
	b.calls++
	if failed {
		b.failures++
	}
	if slow {
		b.slow++
	}
}

func (w *callWindow) sum(now int64) windowCounts {
	cur := floorDiv(now, w.width)
	var c windowCounts
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.idx <= cur && b.idx > cur-numBuckets {
			c.calls += b.calls
			c.failures += b.failures
			c.slow += b.slow
		}
	}
	return c
}

func (w *callWindow) reset() { w.buckets = [numBuckets]bucket{} }

func (c windowCounts) failureRate() float64 { return ratio(c.failures, c.calls) }
func (c windowCounts) slowRate() float64    { return ratio(c.slow, c.calls) }

func ratio(part, whole int) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) / float64(whole)
}

// floorDiv and floorMod round toward minus infinity, so that times before
// the breaker's epoch (a clock set back) still land in distinct buckets.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
