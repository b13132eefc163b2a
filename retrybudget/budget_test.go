package retrybudget

import (
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vsm-relay/relay/clock"
	"github.com/vsm-relay/relay/internal/fielderr"
)

var start = time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)

// step is one thing done to a budget: calls first attempts, then retries
// asked for, after the clock moved by wait.
type step struct {
	wait    time.Duration
	calls   int
	retries int
	granted int // how many of retries must be granted
}

func TestBudget(t *testing.T) {
	s := Settings{Ratio: 0.2, MinPerSecond: 1, Window: 10 * time.Second}
	tests := []struct {
		name  string
		s     Settings
		steps []step
		want  Snapshot
	}{
		{
			name:  "the reserve alone",
			s:     s,
			steps: []step{{retries: 11, granted: 10}},
			want:  Snapshot{Retries: 10, Denied: 1},
		},
		{
			name:  "a ratio of the calls on top",
			s:     s,
			steps: []step{{calls: 100, retries: 31, granted: 30}},
			want:  Snapshot{Calls: 100, Retries: 30, Denied: 1},
		},
		{
			name:  "calls made later add to the budget",
			s:     s,
			steps: []step{{retries: 12, granted: 10}, {wait: time.Second, calls: 10, retries: 3, granted: 2}},
			want:  Snapshot{Calls: 10, Retries: 12, Denied: 3},
		},
		{
			name:  "still within the window",
			s:     s,
			steps: []step{{calls: 100, retries: 30, granted: 30}, {wait: 8999 * time.Millisecond, retries: 1}},
			want:  Snapshot{Calls: 100, Retries: 30, Denied: 1},
		},
		{
			name:  "the window slides past a spent budget",
			s:     s,
			steps: []step{{calls: 100, retries: 40, granted: 30}, {wait: 10 * time.Second, retries: 11, granted: 10}},
			want:  Snapshot{Retries: 10, Denied: 1},
		},
		{
			name: "bucket by bucket",
			s:    s,
			// 50 calls at 0s and 50 at 5s: at 10s the first 50 are
			// forgotten, the others not.
			steps: []step{
				{calls: 50}, {wait: 5 * time.Second, calls: 50},
				{wait: 5 * time.Second, retries: 21, granted: 20},
			},
			want: Snapshot{Calls: 50, Retries: 20, Denied: 1},
		},
		{
			name:  "no reserve",
			s:     Settings{Ratio: 0.5, MinPerSecond: math.SmallestNonzeroFloat64, Window: time.Second},
			steps: []step{{retries: 1}, {calls: 4, retries: 3, granted: 2}},
			want:  Snapshot{Calls: 4, Retries: 2, Denied: 2},
		},
		{
			name:  "defaults: 20% and 10 a second over 10s",
			steps: []step{{calls: 1000, retries: 301, granted: 300}},
			want:  Snapshot{Calls: 1000, Retries: 300, Denied: 1},
		},
		{
			name:  "a clock set back",
			s:     s,
			steps: []step{{wait: -time.Hour, calls: 10, retries: 13, granted: 12}},
			want:  Snapshot{Calls: 10, Retries: 12, Denied: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clock.NewFake(start)
			b, err := New(tt.s, WithClock(fc))
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				fc.Advance(st.wait)
				for range st.calls {
					b.Call()
				}
				granted := 0
				for range st.retries {
					if b.TryRetry() {
						granted++
					}
				}
				if granted != st.granted {
					t.Fatalf("step %d: %d of %d retries granted, want %d", i, granted, st.retries, st.granted)
				}
			}
			got := b.Snapshot()
			tt.want.Left = got.Left // checked below
			if got != tt.want {
				t.Fatalf("Snapshot = %+v, want %+v", got, tt.want)
			}
			// Left is exactly what TryRetry still grants.
			granted := 0
			for b.TryRetry() {
				granted++
				if granted > 1e6 {
					t.Fatal("TryRetry never refuses")
				}
			}
			if granted != got.Left {
				t.Fatalf("Left = %d, but %d more retries were granted", got.Left, granted)
			}
		})
	}
}

// However many goroutines ask at once, no more retries are granted than
// the budget holds.
func TestBudgetConcurrent(t *testing.T) {
	fc := clock.NewFake(start)
	b, err := New(Settings{Ratio: 0.1, MinPerSecond: 2, Window: 10 * time.Second}, WithClock(fc))
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 1000
	var granted atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				b.Call()
				if b.TryRetry() {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// Budget: 10% of 8000 calls plus 20; calls and retries interleave, so
	// a retry early on may find fewer calls made yet, never more.
	if g := granted.Load(); g > 820 || g < 700 {
		t.Fatalf("%d retries granted, want at most 820 and not far below", g)
	}
	if s := b.Snapshot(); s.Calls != workers*each || int64(s.Retries) != granted.Load() || s.Retries+s.Denied != workers*each {
		t.Fatalf("Snapshot %+v after %d granted", s, granted.Load())
	}
}

func TestBudgetDoesNotAllocate(t *testing.T) {
	b, err := New(Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		b.Call()
		b.TryRetry()
		_ = b.Snapshot()
	}); n != 0 {
		t.Fatalf("Call+TryRetry+Snapshot: %v allocs, want 0", n)
	}
}

func TestSnapshotDeniedShare(t *testing.T) {
	tests := []struct {
		s    Snapshot
		want float64
	}{
		{Snapshot{}, 0},
		{Snapshot{Calls: 10, Denied: 2}, 0.2},
		{Snapshot{Calls: 2, Denied: 5}, 1},
		{Snapshot{Denied: 1}, 1},
	}
	for _, tt := range tests {
		if got := tt.s.DeniedShare(); got != tt.want {
			t.Errorf("%+v.DeniedShare() = %v, want %v", tt.s, got, tt.want)
		}
	}
	if got, want := (Snapshot{Calls: 110, Retries: 32}).Reason(10*time.Second), "retry budget spent: 32 retries for 110 calls within 10s"; got != want {
		t.Errorf("Reason = %q, want %q", got, want)
	}
}

func TestSettings(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		keys []string // keys of the problems, sorted
	}{
		{name: "zero", s: Settings{}},
		{name: "contract example", s: Settings{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second}},
		{name: "every retry", s: Settings{Ratio: 1}},
		{name: "negative", s: Settings{Ratio: -0.1, MinPerSecond: -1, Window: -time.Second}, keys: []string{"min_per_second", "ratio", "window"}},
		{name: "ratio above MaxRatio", s: Settings{Ratio: MaxRatio + 1}, keys: []string{"ratio"}},
		{name: "MaxRatio turns it off", s: Settings{Ratio: MaxRatio}},
		{name: "NaN", s: Settings{Ratio: math.NaN(), MinPerSecond: math.NaN()}, keys: []string{"min_per_second", "ratio"}},
		{name: "absurd reserve", s: Settings{MinPerSecond: math.Inf(1)}, keys: []string{"min_per_second"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			var keys []string
			for _, e := range fielderr.Flatten(err) {
				keys = append(keys, e.Key)
			}
			if strings.Join(keys, ",") != strings.Join(tt.keys, ",") {
				t.Fatalf("Validate() = %v, want problems with %v", err, tt.keys)
			}
			_, nerr := New(tt.s)
			if (nerr == nil) != (len(tt.keys) == 0) {
				t.Fatalf("New error %v, want one only when Validate has problems", nerr)
			}
			var fe *fielderr.Error
			if nerr != nil && !errors.As(nerr, &fe) {
				t.Fatalf("New error %v is not a *fielderr.Error", nerr)
			}
		})
	}
	if d := (Settings{}).WithDefaults(); d != (Settings{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second}) {
		t.Fatalf("WithDefaults = %+v", d)
	}
}

func BenchmarkBudgetCall(b *testing.B) {
	bu, _ := New(Settings{})
	b.ReportAllocs()
	for b.Loop() {
		bu.Call()
	}
}

func BenchmarkBudgetCallTryRetry(b *testing.B) {
	bu, _ := New(Settings{})
	b.ReportAllocs()
	for b.Loop() {
		bu.Call()
		bu.TryRetry()
	}
}

func BenchmarkBudgetCallParallel(b *testing.B) {
	bu, _ := New(Settings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bu.Call()
		}
	})
}
