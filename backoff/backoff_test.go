package backoff

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// edgeRand always draws the lowest or the highest value, so that the
// bounds of every jitter kind can be asserted exactly.
type edgeRand struct{ high bool }

func (e edgeRand) Int64N(n int64) int64 {
	if e.high {
		return n - 1
	}
	return 0
}

// badRand returns values outside [0, n), as a broken source might.
type badRand struct{ v int64 }

func (b badRand) Int64N(int64) int64 { return b.v }

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func drain(b *Backoff) []time.Duration {
	var out []time.Duration
	for {
		d, ok := b.Next()
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestJitterBoundsOverManyRetries(t *testing.T) {
	policies := []Policy{
		{MaxRetries: 200},
		{Initial: time.Second, Max: 30 * time.Second, Multiplier: 1.5, MaxRetries: 200},
		{Initial: time.Second, Max: time.Second, MaxRetries: 50},
		{Initial: time.Millisecond, Max: time.Hour, Multiplier: 10, MaxRetries: 200},
		{Initial: time.Nanosecond, Max: math.MaxInt64, Multiplier: 3, MaxRetries: 1000},
	}
	type bound func(p Policy, n int, prev time.Duration) (lo, hi time.Duration)
	kinds := []struct {
		jitter Jitter
		bound  bound
	}{
		{Full, func(p Policy, n int, _ time.Duration) (time.Duration, time.Duration) {
			return 0, p.Delay(n)
		}},
		{Equal, func(p Policy, n int, _ time.Duration) (time.Duration, time.Duration) {
			return p.Delay(n) / 2, p.Delay(n)
		}},
		{Decorrelated, func(p Policy, n int, prev time.Duration) (time.Duration, time.Duration) {
			p = p.WithDefaults()
			if n == 1 {
				prev = p.Initial
			}
			hi := p.Max
			if prev <= p.Max/3 {
				hi = 3 * prev
			}
			return p.Initial, hi
		}},
		{None, func(p Policy, n int, _ time.Duration) (time.Duration, time.Duration) {
			return p.Delay(n), p.Delay(n)
		}},
	}
	for _, k := range kinds {
		for _, p := range policies {
			p.Jitter = k.jitter
			t.Run(k.jitter.String(), func(t *testing.T) {
				b := p.StartWith(seeded())
				got := drain(&b)
				if len(got) != p.MaxRetries {
					t.Fatalf("%+v: %d delays, want %d", p, len(got), p.MaxRetries)
				}
				max := p.WithDefaults().Max
				var prev time.Duration
				for i, d := range got {
					lo, hi := k.bound(p, i+1, prev)
					if d < lo || d > hi || d > max {
						t.Fatalf("%+v: retry %d: %v outside [%v, %v] (max %v)", p, i+1, d, lo, hi, max)
					}
					prev = d
				}
			})
		}
	}
}

// TestJitterSpreads guards against a jitter that is bounded but not random:
// at the cap, Full must reach both ends of [0, Max] and Equal both ends of
// [Max/2, Max].
func TestJitterSpreads(t *testing.T) {
	for _, tc := range []struct {
		jitter        Jitter
		below, beyond time.Duration // some delay must be < below and some > beyond
	}{
		{Full, 1 * time.Second, 9 * time.Second},
		{Equal, 5500 * time.Millisecond, 9500 * time.Millisecond},
		{Decorrelated, 1 * time.Second, 9 * time.Second},
	} {
		t.Run(tc.jitter.String(), func(t *testing.T) {
			p := Policy{Jitter: tc.jitter, MaxRetries: 1000}
			b := p.StartWith(seeded())
			got := drain(&b)[10:] // past the point where the curve reaches Max
			if lo := slices.Min(got); lo >= tc.below {
				t.Errorf("smallest of %d delays %v, want one below %v", len(got), lo, tc.below)
			}
			if hi := slices.Max(got); hi <= tc.beyond {
				t.Errorf("largest of %d delays %v, want one above %v", len(got), hi, tc.beyond)
			}
		})
	}
}

func TestJitterEdges(t *testing.T) {
	curve := ms(100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000)
	tests := []struct {
		jitter Jitter
		high   bool
		want   []time.Duration
	}{
		{Full, false, ms(0, 0, 0, 0, 0, 0, 0, 0, 0)},
		{Full, true, curve},
		{Equal, false, ms(50, 100, 200, 400, 800, 1600, 3200, 5000, 5000)},
		{Equal, true, curve},
		{Decorrelated, false, ms(100, 100, 100, 100, 100, 100, 100, 100, 100)},
		{Decorrelated, true, ms(300, 900, 2700, 8100, 10000, 10000, 10000, 10000, 10000)},
		{None, false, curve},
		{None, true, curve},
	}
	for _, tc := range tests {
		name := tc.jitter.String() + map[bool]string{false: "/low", true: "/high"}[tc.high]
		t.Run(name, func(t *testing.T) {
			b := Policy{Jitter: tc.jitter, MaxRetries: len(tc.want)}.StartWith(edgeRand{tc.high})
			if got := drain(&b); !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestBrokenRandStaysInBounds(t *testing.T) {
	for _, v := range []int64{-1, math.MinInt64, math.MaxInt64} {
		for _, j := range []Jitter{Full, Equal, Decorrelated} {
			p := Policy{Jitter: j, MaxRetries: 20}
			b := p.StartWith(badRand{v})
			for i, d := range drain(&b) {
				if d < 0 || d > DefaultMax {
					t.Errorf("%v, rand %d: retry %d: %v out of [0, %v]", j, v, i+1, d, DefaultMax)
				}
			}
		}
	}
}

func TestNoneSequence(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want []time.Duration
	}{
		{"defaults", Policy{Jitter: None, MaxRetries: 10},
			ms(100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000)},
		{"multiplier 1.5", Policy{Initial: time.Second, Max: 5 * time.Second, Multiplier: 1.5, Jitter: None, MaxRetries: 6},
			ms(1000, 1500, 2250, 3375, 5000, 5000)},
		{"multiplier 1", Policy{Initial: 250 * time.Millisecond, Multiplier: 1, Jitter: None, MaxRetries: 4},
			ms(250, 250, 250, 250)},
		{"initial equals max", Policy{Initial: time.Second, Max: time.Second, Jitter: None, MaxRetries: 3},
			ms(1000, 1000, 1000)},
		{"initial above max", Policy{Initial: time.Minute, Max: time.Second, Jitter: None, MaxRetries: 2},
			ms(1000, 1000)},
		{"contract llm_api", Policy{Initial: time.Second, Max: 30 * time.Second, Multiplier: 2, Jitter: None, MaxRetries: 3},
			ms(1000, 2000, 4000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.p.Start()
			if got := drain(&b); !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestMaxRetries(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 3, 1000} {
		b := Policy{MaxRetries: n}.Start()
		want := max(n, 0)
		for i := range want {
			if _, ok := b.Next(); !ok {
				t.Fatalf("MaxRetries %d: Next %d reported false", n, i+1)
			}
		}
		for range 3 {
			if d, ok := b.Next(); ok || d != 0 {
				t.Fatalf("MaxRetries %d: Next after %d retries = %v, %v; want 0, false", n, want, d, ok)
			}
			if d, ok := b.NextAfter(time.Second); ok || d != 0 {
				t.Fatalf("MaxRetries %d: NextAfter when spent = %v, %v; want 0, false", n, d, ok)
			}
		}
		if got := b.Retries(); got != want {
			t.Errorf("MaxRetries %d: Retries() = %d, want %d", n, got, want)
		}
	}
}

func TestZeroBackoffHandsOutNothing(t *testing.T) {
	var b Backoff
	if d, ok := b.Next(); ok || d != 0 {
		t.Errorf("zero Backoff: Next = %v, %v; want 0, false", d, ok)
	}
	if b.Retries() != 0 {
		t.Errorf("zero Backoff: Retries = %d", b.Retries())
	}
}

func TestStartWithNilRand(t *testing.T) {
	b := Policy{MaxRetries: 5}.StartWith(nil)
	for i, d := range drain(&b) {
		if hi := (Policy{}).Delay(i + 1); d < 0 || d > hi {
			t.Errorf("retry %d: %v outside [0, %v]", i+1, d, hi)
		}
	}
}

func TestNextAfter(t *testing.T) {
	p := Policy{Max: 10 * time.Second, Jitter: None, MaxRetries: 6}
	b := p.Start()
	steps := []struct {
		server time.Duration
		want   time.Duration
	}{
		{3 * time.Second, 3 * time.Second},     // replaces the computed 100ms
		{time.Hour, 10 * time.Second},          // capped at Max
		{0, 400 * time.Millisecond},            // no server delay: the curve, at retry 3
		{-time.Second, 800 * time.Millisecond}, // a negative one is ignored
		{time.Nanosecond, time.Nanosecond},     // shorter than computed still replaces
		{math.MaxInt64, 10 * time.Second},
	}
	for i, s := range steps {
		d, ok := b.NextAfter(s.server)
		if !ok || d != s.want {
			t.Fatalf("step %d NextAfter(%v) = %v, %v; want %v, true", i+1, s.server, d, ok, s.want)
		}
		if b.Retries() != i+1 {
			t.Fatalf("step %d: Retries = %d", i+1, b.Retries())
		}
	}
	if _, ok := b.NextAfter(time.Second); ok {
		t.Fatal("NextAfter past MaxRetries reported true")
	}
}

func TestNextAfterFeedsDecorrelated(t *testing.T) {
	b := Policy{Jitter: Decorrelated, MaxRetries: 3}.StartWith(edgeRand{high: true})
	if d, _ := b.NextAfter(2 * time.Second); d != 2*time.Second {
		t.Fatalf("NextAfter(2s) = %v", d)
	}
	if d, _ := b.Next(); d != 6*time.Second {
		t.Errorf("after a 2s server delay Next = %v, want 6s (3 x previous)", d)
	}
	b = Policy{Jitter: Decorrelated, MaxRetries: 2}.StartWith(edgeRand{high: true})
	b.NextAfter(time.Millisecond)
	if d, _ := b.Next(); d != 300*time.Millisecond {
		t.Errorf("after a server delay below Initial Next = %v, want 300ms (3 x Initial)", d)
	}
}

func TestDelay(t *testing.T) {
	const maxD = time.Duration(math.MaxInt64)
	tests := []struct {
		name  string
		p     Policy
		retry int
		want  time.Duration
	}{
		{"first", Policy{}, 1, 100 * time.Millisecond},
		{"retry 0 counts as 1", Policy{}, 0, 100 * time.Millisecond},
		{"negative retry counts as 1", Policy{}, -7, 100 * time.Millisecond},
		{"fourth", Policy{}, 4, 800 * time.Millisecond},
		{"capped", Policy{}, 8, 10 * time.Second},
		{"huge retry", Policy{}, math.MaxInt, 10 * time.Second},
		{"huge multiplier", Policy{Multiplier: 1e308}, 2, 10 * time.Second},
		{"max float multiplier", Policy{Multiplier: math.MaxFloat64}, 3, 10 * time.Second},
		{"infinite multiplier", Policy{Multiplier: math.Inf(1)}, 2, 10 * time.Second},
		{"NaN multiplier", Policy{Multiplier: math.NaN()}, 2, 10 * time.Second},
		{"multiplier below 1", Policy{Multiplier: 0.5}, 2, 50 * time.Millisecond},
		{"negative multiplier", Policy{Multiplier: -2}, 2, 0},
		{"largest max, 2^62", Policy{Initial: 1, Max: maxD, Multiplier: 2}, 63, 1 << 62},
		{"largest max, 2^63 saturates", Policy{Initial: 1, Max: maxD, Multiplier: 2}, 64, maxD},
		{"largest max, huge retry", Policy{Initial: time.Hour, Max: maxD, Multiplier: 2}, math.MaxInt, maxD},
		{"initial above max", Policy{Initial: time.Hour, Max: time.Second}, 1, time.Second},
		{"negative initial", Policy{Initial: -time.Second}, 3, 0},
		{"negative max", Policy{Max: -time.Second}, 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Delay(tc.retry); got != tc.want {
				t.Errorf("%+v.Delay(%d) = %v (%d), want %v (%d)", tc.p, tc.retry, got, got, tc.want, tc.want)
			}
		})
	}
}

func TestNextAllocatesNothing(t *testing.T) {
	for _, j := range []Jitter{Full, Equal, Decorrelated, None} {
		p := Policy{Jitter: j, MaxRetries: 20}
		r := seeded()
		for name, start := range map[string]func() Backoff{
			"default":  p.Start,
			"injected": func() Backoff { return p.StartWith(r) },
		} {
			allocs := testing.AllocsPerRun(200, func() {
				b := start()
				for {
					if _, ok := b.Next(); !ok {
						break
					}
				}
				b.NextAfter(time.Second)
			})
			if allocs != 0 {
				t.Errorf("%v/%s: %v allocs per run, want 0", j, name, allocs)
			}
		}
	}
}

func BenchmarkBackoffNext(b *testing.B) {
	for _, j := range []Jitter{Full, Equal, Decorrelated, None} {
		b.Run(j.String(), func(b *testing.B) {
			p := Policy{Jitter: j, MaxRetries: 1000}
			bo := p.Start()
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := bo.Next(); !ok {
					bo = p.Start()
				}
			}
		})
	}
}

// FuzzPolicyValidate checks that a policy Validate accepts never yields a
// delay outside [0, Max], whatever the jitter, randomness or server delay.
func FuzzPolicyValidate(f *testing.F) {
	f.Add(int64(0), int64(0), 0.0, uint8(0), 3, uint64(1), int64(0))
	f.Add(int64(time.Second), int64(30*time.Second), 2.0, uint8(2), 1000, uint64(7), int64(time.Hour))
	f.Add(int64(1), int64(math.MaxInt64), 1e308, uint8(1), 100, uint64(9), int64(-1))
	f.Add(int64(math.MaxInt64), int64(0), 1.0, uint8(3), 5, uint64(3), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, initial, maxD int64, mult float64, jitter uint8, retries int, seed uint64, server int64) {
		p := Policy{
			Initial:    time.Duration(initial),
			Max:        time.Duration(maxD),
			Multiplier: mult,
			Jitter:     Jitter(jitter),
			MaxRetries: retries,
		}
		if p.Validate() != nil {
			return
		}
		limit := p.WithDefaults().Max
		check := func(what string, d time.Duration) {
			if d < 0 || d > limit {
				t.Fatalf("%+v: %s = %v, outside [0, %v]", p, what, d, limit)
			}
		}
		b := p.StartWith(rand.New(rand.NewPCG(seed, seed>>1)))
		for n := 1; ; n++ {
			check("Delay", p.Delay(n))
			var d time.Duration
			var ok bool
			if n%3 == 0 {
				d, ok = b.NextAfter(time.Duration(server))
			} else {
				d, ok = b.Next()
			}
			if !ok {
				if n != p.MaxRetries+1 {
					t.Fatalf("%+v: retries ended at %d", p, n-1)
				}
				return
			}
			check("delay", d)
		}
	})
}
