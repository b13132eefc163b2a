package bulkhead

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/vsm-relay/relay/internal/fielderr"
)

func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Settings
		want Settings
	}{
		{
			name: "zero fields",
			in:   Settings{Size: 20, Overflow: 10},
			want: Settings{Size: 20, Overflow: 10, Timeout: 5 * time.Second, MaxWaiting: 20, HoldWarning: 20 * time.Second},
		},
		{
			name: "set fields kept",
			in:   Settings{Size: 5, Overflow: 2, Timeout: 30 * time.Second, RateLimit: 10, MaxWaiting: 7, HoldWarning: time.Minute},
			want: Settings{Size: 5, Overflow: 2, Timeout: 30 * time.Second, RateLimit: 10, MaxWaiting: 7, HoldWarning: time.Minute},
		},
		{
			name: "no waiting stays negative",
			in:   Settings{Size: 3, MaxWaiting: -1},
			want: Settings{Size: 3, Timeout: 5 * time.Second, MaxWaiting: -1, HoldWarning: 20 * time.Second},
		},
		{
			name: "hold warning does not overflow",
			in:   Settings{Size: 1, Timeout: math.MaxInt64 / 2},
			want: Settings{Size: 1, Timeout: math.MaxInt64 / 2, MaxWaiting: 1, HoldWarning: math.MaxInt64},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			if got != tt.want {
				t.Fatalf("WithDefaults() = %+v, want %+v", got, tt.want)
			}
			if again := got.WithDefaults(); again != got {
				t.Fatalf("WithDefaults is not idempotent: %+v then %+v", got, again)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		want []string
	}{
		{"minimal", Settings{Size: 1}, nil},
		{"seed llm_worker", Settings{Size: 5, Overflow: 2, Timeout: 30 * time.Second, RateLimit: 10}, nil},
		{"largest", Settings{Size: maxSlots - 1, Overflow: 1, MaxWaiting: maxSlots * 16}, nil},
		{"zero size", Settings{}, []string{"size: must be at least 1, got 0"}},
		{"too large", Settings{Size: maxSlots, Overflow: 1}, []string{"size: size plus overflow must be at most 65536"}},
		{"negative overflow", Settings{Size: 1, Overflow: -2}, []string{"overflow: must not be negative, got -2"}},
		{"negative timeout", Settings{Size: 1, Timeout: -time.Millisecond}, []string{"timeout: must not be negative, got -1ms"}},
		{"NaN rate", Settings{Size: 1, RateLimit: math.NaN()}, []string{"rate_limit: must be a non-negative number of checkouts per second, got NaN"}},
		{"infinite rate", Settings{Size: 1, RateLimit: math.Inf(1)}, []string{"rate_limit: must be a non-negative number of checkouts per second, got +Inf"}},
		{"long queue", Settings{Size: 1, MaxWaiting: maxSlots*16 + 1}, []string{"max_waiting: must be at most 1048576, got 1048577"}},
		{"negative hold warning", Settings{Size: 1, HoldWarning: -time.Second}, []string{"hold_warning: must not be negative, got -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fielderr.Lines(tt.s.Validate()); !slices.Equal(got, tt.want) {
				t.Fatalf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzSettingsValidate(f *testing.F) {
	f.Add(20, 10, int64(5*time.Second), 0.0, 0, int64(0))
	f.Add(5, 2, int64(30*time.Second), 10.0, 0, int64(0))
	f.Add(3, 1, int64(10*time.Second), 30.0, -1, int64(time.Minute))
	f.Add(0, -1, int64(-1), math.NaN(), math.MaxInt, int64(-1))
	f.Add(1, 0, int64(math.MaxInt64), 1e300, 1<<20, int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, size, overflow int, timeout int64, rate float64, maxWaiting int, hold int64) {
		s := Settings{
			Size:        size,
			Overflow:    overflow,
			Timeout:     time.Duration(timeout),
			RateLimit:   rate,
			MaxWaiting:  maxWaiting,
			HoldWarning: time.Duration(hold),
		}
		err := s.Validate()
		b, nerr := New("fuzz", s)
		if (err == nil) != (nerr == nil) {
			t.Fatalf("Validate() = %v but New() = %v", err, nerr)
		}
		if err != nil {
			if len(fielderr.Lines(err)) == 0 {
				t.Fatalf("invalid settings with no problem listed")
			}
			return
		}
		d := b.Settings()
		if d.Timeout <= 0 || d.HoldWarning <= 0 || d.WithDefaults() != d {
			t.Fatalf("defaulted settings %+v", d)
		}
		st := b.Stats()
		if st.Capacity != size+overflow || st.Available != st.Capacity {
			t.Fatalf("Stats() = %+v for %+v", st, s)
		}
		h, err := b.Checkout(context.Background())
		if err != nil {
			t.Fatalf("first checkout of a fresh pool: %v", err)
		}
		if err := b.Checkin(h); err != nil {
			t.Fatalf("Checkin: %v", err)
		}
	})
}
