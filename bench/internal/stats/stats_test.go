package stats

import (
	"fmt"
	"testing"
	"time"
)

func ms(xs ...int) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 of 1..100", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the first", hundred, 0.001, 1 * time.Millisecond},
		{"p50 of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p51 of four is the third", ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{"p99 of ten is the last", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	samples := ms(9, 1, 5, 3, 7)
	got := Summarize(samples)
	want := Latency{N: 5, P50: 5 * time.Millisecond, P99: 9 * time.Millisecond, Max: 9 * time.Millisecond}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if samples[0] != time.Millisecond || samples[4] != 9*time.Millisecond {
		t.Errorf("samples not sorted in place: %v", samples)
	}
	if got := Summarize(nil); got != (Latency{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", got)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1, 1000}, 10},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.xs), func(t *testing.T) {
			in := append([]float64(nil), tt.xs...)
			if got := Median(in); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.xs, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.xs[i] {
					t.Fatalf("Median changed its input: %v", in)
				}
			}
		})
	}
}

func TestMedianDuration(t *testing.T) {
	if got, want := MedianDuration(ms(4, 1, 3, 2)), 2500*time.Microsecond; got != want {
		t.Errorf("MedianDuration = %v, want %v", got, want)
	}
}

func TestRatios(t *testing.T) {
	got := Ratios([]float64{10, 9, 5, 1}, []float64{5, 3, 0})
	want := []float64{2, 3, 0}
	if len(got) != len(want) {
		t.Fatalf("Ratios = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Ratios[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if Ratio(1, 0) != 0 {
		t.Error("Ratio(1, 0) != 0")
	}
}

func TestCrossingRate(t *testing.T) {
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	tests := []struct {
		name   string
		points []Point
		lo, hi int
		want   float64
		ok     bool
	}{
		{
			name:   "polls on the marks",
			points: []Point{{0, 0}, {sec(1), 100}, {sec(2), 200}, {sec(3), 300}},
			lo:     100, hi: 300, want: 100, ok: true,
		},
		{
			name:   "interpolated between polls",
			points: []Point{{0, 0}, {sec(1), 0}, {sec(2), 1000}, {sec(4), 2000}},
			lo:     500, hi: 1500, want: 1000 / 1.5, ok: true,
		},
		{
			name:   "start-up is left out",
			points: []Point{{0, 0}, {sec(5), 0}, {sec(6), 1000}, {sec(7), 2000}},
			lo:     200, hi: 1800, want: 1000, ok: true,
		},
		{
			name:   "never reaches hi",
			points: []Point{{0, 0}, {sec(1), 100}},
			lo:     10, hi: 200,
		},
		{
			name:   "first poll already past both",
			points: []Point{{sec(1), 500}},
			lo:     10, hi: 200,
		},
		{name: "lo not below hi", points: []Point{{0, 0}, {sec(1), 100}}, lo: 50, hi: 50},
		{name: "no points", lo: 1, hi: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := CrossingRate(tt.points, tt.lo, tt.hi)
			if ok != tt.ok || (ok && !close(got, tt.want)) {
				t.Errorf("CrossingRate = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func close(a, b float64) bool {
	d := a - b
	return d < 1e-9*b && d > -1e-9*b
}

func ExamplePercentile() {
	samples := []time.Duration{9 * time.Millisecond, 1 * time.Millisecond, 5 * time.Millisecond}
	l := Summarize(samples)
	fmt.Println(l.P50, l.P99)
	// Output: 5ms 9ms
}

func ExampleRatios() {
	relay := []float64{3600, 3400, 3900}
	plain := []float64{3500, 3500, 3500}
	fmt.Printf("%.2fx\n", Median(Ratios(relay, plain)))
	// Output: 1.03x
}
