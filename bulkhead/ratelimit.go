package bulkhead

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// admit takes a token from lim, the pool's limiter when the slot was
// handed out, for the slot h already holds, within what is left of the
// caller's timeout: until deadline, or the whole timeout when deadline is
// zero because no wait happened. The slot is taken first so that a
// caller turned away by a full pool spends no token, and tokens go out in
// the same FIFO order as slots. On failure the slot is passed on.
func (b *Bulkhead) admit(ctx context.Context, lim *rate.Limiter, h Handle, deadline time.Time, timeout time.Duration) (Handle, error) {
	now := time.Now()
	r := lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay == 0 {
		b.admitted.Add(1)
		return h, nil
	}
	remaining := timeout
	if !deadline.IsZero() {
		remaining = deadline.Sub(now)
	}
	if !r.OK() || delay > remaining {
		r.CancelAt(now)
		b.giveUp(h, &b.counts.rejectedRateLimited, true)
		return Handle{}, ErrRateLimited
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		b.admitted.Add(1)
		return h, nil
	case <-ctx.Done():
		r.Cancel()
		b.giveUp(h, &b.counts.cancelled, false)
		return Handle{}, b.cancelled(ctx.Err())
	case <-b.closing:
		r.Cancel()
		b.giveUp(h, nil, false)
		return Handle{}, ErrClosed
	}
}
