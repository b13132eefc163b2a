package bulkhead

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vsm-relay/relay/clock"
)

// recentStep drives a one-slot pool: ok checks out and in n times;
// reject holds the slot (one more checkout) while n checkouts are turned
// away with ErrFull; wait moves the clock.
type recentStep struct {
	ok, reject int
	wait       time.Duration
}

func TestRecentRejections(t *testing.T) {
	tests := []struct {
		name  string
		steps []recentStep
		want  Recent
	}{
		{name: "nothing yet", want: Recent{}},
		{name: "healthy", steps: []recentStep{{ok: 1000}}, want: Recent{Checkouts: 7*32 + 1000%32}},
		{
			// The lifetime counters say 100 of 10101 (1%); the window holds
			// the last 245 attempts, 100 of them rejected.
			name:  "a storm after a long healthy run",
			steps: []recentStep{{ok: 10000}, {reject: 100}},
			want:  Recent{Checkouts: 145, Rejected: 100},
		},
		{
			name:  "filled buckets older than RecentPeriod are left out",
			steps: []recentStep{{ok: 10000}, {reject: 100}, {wait: RecentPeriod + time.Second}, {ok: 5}},
			want:  Recent{Checkouts: 5, Rejected: 21},
		},
		{
			name:  "a storm long past",
			steps: []recentStep{{reject: 100}, {wait: RecentPeriod}, {ok: 64}},
			want:  Recent{Checkouts: 64, Rejected: 5},
		},
		{
			name:  "within RecentPeriod",
			steps: []recentStep{{reject: 100}, {wait: RecentPeriod - time.Nanosecond}, {ok: 64}},
			want:  Recent{Checkouts: 65, Rejected: 100},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clock.NewFake(t0)
			b := mustNew(t, Settings{Size: 1, MaxWaiting: -1}, WithClock(fc))
			ctx := context.Background()
			for _, s := range tt.steps {
				fc.Advance(s.wait)
				for range s.ok {
					checkin(t, b, checkout(t, b))
				}
				if s.reject > 0 {
					h := checkout(t, b)
					for range s.reject {
						if _, err := b.Checkout(ctx); !errors.Is(err, ErrFull) {
							t.Fatalf("Checkout = %v, want ErrFull", err)
						}
					}
					checkin(t, b, h)
				}
			}
			if got := b.Stats().Recent; got != tt.want {
				t.Fatalf("Stats().Recent = %+v, want %+v", got, tt.want)
			}
			if got, want := b.RecentRejectionRate(), tt.want.RejectionRate(); got != want {
				t.Fatalf("RecentRejectionRate = %v, want %v", got, want)
			}
		})
	}
}

func TestRecentRateLimited(t *testing.T) {
	fc := clock.NewFake(t0)
	b := mustNew(t, Settings{Size: 1, RateLimit: 0.001, Timeout: time.Millisecond}, WithClock(fc))
	checkin(t, b, checkout(t, b)) // the burst's one token, admitted outside the lock
	if _, err := b.Checkout(context.Background()); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("Checkout = %v, want ErrRateLimited", err)
	}
	if got, want := b.Stats().Recent, (Recent{Checkouts: 1, Rejected: 1}); got != want {
		t.Fatalf("Recent = %+v, want %+v", got, want)
	}
	if got := b.RecentRejectionRate(); got != 0.5 {
		t.Fatalf("RecentRejectionRate = %v, want 0.5", got)
	}
}

func TestRecentRejectionRate(t *testing.T) {
	tests := []struct {
		r    Recent
		want float64
	}{
		{Recent{}, 0},
		{Recent{Checkouts: 3, Rejected: 1}, 0.25},
		{Recent{Rejected: 4}, 1},
		{Recent{Checkouts: 4}, 0},
	}
	for _, tt := range tests {
		if got := tt.r.RejectionRate(); got != tt.want {
			t.Errorf("%+v.RejectionRate() = %v, want %v", tt.r, got, tt.want)
		}
	}
}
