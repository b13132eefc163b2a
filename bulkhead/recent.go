package bulkhead

import "time"

// The recent window: what share of the latest checkouts was turned away.
// The lifetime counters of Stats cannot tell it: after a long healthy run
// a storm of rejections barely moves their ratio.
//
// The window counts attempts (checkouts and rejections), not time, so that
// a checkout needs no clock read: the last recentBuckets buckets of
// recentPerBucket attempts each, the newest partly filled. A bucket is
// stamped with the bulkhead's clock when it fills (once per
// recentPerBucket attempts), and a filled bucket older than RecentPeriod
// is left out, so that the window also forgets a storm that has passed.
const (
	recentBuckets   = 8
	recentPerBucket = 32

	// RecentPeriod is how long a filled bucket of the recent window
	// counts: the window covers at most the last 256 attempts, and of
	// those only the ones within about RecentPeriod.
	RecentPeriod = 10 * time.Second
)

type recentWindow struct {
	buckets [recentBuckets]recentBucket
	cur     int    // the bucket being filled
	folded  uint64 // the value of Bulkhead.admitted already counted
}

type recentBucket struct {
	ok, rejected uint32
	filled       bool
	at           int64 // offset when it filled
}

// Recent counts the attempts of the recent window (see RecentPeriod).
type Recent struct {
	Checkouts, Rejected int
}

// RejectionRate is the share of the recent attempts that were rejected;
// 0 when there were none.
func (r Recent) RejectionRate() float64 {
	if r.Checkouts+r.Rejected == 0 {
		return 0
	}
	return float64(r.Rejected) / float64(r.Checkouts+r.Rejected)
}

// RecentRejectionRate is the share of the latest checkout attempts that
// were rejected (full, timed out or rate limited; callers who gave up
// are not counted either way): the intensity of the pain of a
// rejection. It reads the clock once and takes the pool's lock.
func (b *Bulkhead) RecentRejectionRate() float64 {
	now := b.offset(b.clock.Now())
	b.mu.Lock()
	r := b.recentLocked(now)
	b.mu.Unlock()
	return r.RejectionRate()
}

// countLocked counts one attempt in the recent window. b.mu must be held.
func (b *Bulkhead) countLocked(rejected bool) {
	c := &b.recent.buckets[b.recent.cur]
	if rejected {
		c.rejected++
	} else {
		c.ok++
	}
	if c.ok+c.rejected >= recentPerBucket {
		b.fillLocked()
	}
}

// fillLocked stamps the current bucket full and starts the next. b.mu
// must be held.
func (b *Bulkhead) fillLocked() {
	w := &b.recent
	w.buckets[w.cur].filled = true
	w.buckets[w.cur].at = b.offset(b.clock.Now())
	w.cur = (w.cur + 1) % recentBuckets
	w.buckets[w.cur] = recentBucket{}
}

// foldLocked counts the checkouts admitted outside the lock (after a wait
// or a rate token) since it last looked. b.mu must be held.
func (b *Bulkhead) foldLocked() {
	w := &b.recent
	a := b.admitted.Load()
	d := min(a-w.folded, recentBuckets*recentPerBucket)
	w.folded = a
	for d > 0 {
		c := &w.buckets[w.cur]
		take := min(d, uint64(recentPerBucket-c.ok-c.rejected))
		c.ok += uint32(take)
		d -= take
		if c.ok+c.rejected >= recentPerBucket {
			b.fillLocked()
		}
	}
}

// recentLocked sums the recent window as of now. b.mu must be held.
func (b *Bulkhead) recentLocked(now int64) Recent {
	b.foldLocked()
	var r Recent
	for i := range b.recent.buckets {
		c := &b.recent.buckets[i]
		if i != b.recent.cur && (!c.filled || now-c.at >= int64(RecentPeriod)) {
			continue
		}
		r.Checkouts += int(c.ok)
		r.Rejected += int(c.rejected)
	}
	return r
}
