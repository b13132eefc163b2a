package backoff

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/vsm-relay/relay/internal/fielderr"
)

func TestParseJitter(t *testing.T) {
	for _, j := range []Jitter{Full, Equal, Decorrelated, None} {
		got, err := ParseJitter(j.String())
		if err != nil || got != j {
			t.Errorf("ParseJitter(%q) = %v, %v; want %v", j.String(), got, err, j)
		}
	}
	for _, s := range []string{"", "Full", "random", "none "} {
		if _, err := ParseJitter(s); err == nil {
			t.Errorf("ParseJitter(%q) accepted", s)
		}
	}
	if got := Jitter(9).String(); got != "Jitter(9)" {
		t.Errorf("Jitter(9).String() = %q", got)
	}
}

func TestWithDefaults(t *testing.T) {
	got := Policy{}.WithDefaults()
	want := Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, Jitter: Full}
	if got != want {
		t.Errorf("Policy{}.WithDefaults() = %+v, want %+v", got, want)
	}
	set := Policy{Initial: time.Second, Max: time.Minute, Multiplier: 3, Jitter: None, MaxRetries: 4}
	if got := set.WithDefaults(); got != set {
		t.Errorf("WithDefaults changed set fields: %+v", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want []string
	}{
		{"zero", Policy{}, nil},
		{"contract defaults", Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, MaxRetries: 3}, nil},
		{"negatives", Policy{Initial: -1, Max: -1, MaxRetries: -1}, []string{
			"initial: must not be negative, got -1ns",
			"max: must not be negative, got -1ns",
			"max_retries: must not be negative, got -1",
		}},
		{"max below initial", Policy{Initial: time.Second, Max: time.Millisecond}, []string{
			"max: must not be less than initial (1s), got 1ms",
		}},
		{"initial above default max", Policy{Initial: 20 * time.Second}, []string{
			"max: must not be less than initial (20s), got 10s by default",
		}},
		{"max below default initial", Policy{Max: 50 * time.Millisecond}, []string{
			"max: must not be less than initial (100ms by default), got 50ms",
		}},
		{"initial at default max", Policy{Initial: 10 * time.Second}, nil},
		{"multiplier below 1", Policy{Multiplier: 0.5}, []string{"multiplier: must be at least 1, got 0.5"}},
		{"multiplier NaN", Policy{Multiplier: math.NaN()}, []string{"multiplier: must be at least 1, got NaN"}},
		{"multiplier Inf", Policy{Multiplier: math.Inf(1)}, []string{"multiplier: must be at least 1, got +Inf"}},
		{"jitter", Policy{Jitter: 4}, []string{"jitter: unknown jitter 4"}},
		{"too many retries", Policy{MaxRetries: 1001}, []string{"max_retries: must be at most 1000, got 1001"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fielderr.Lines(tc.p.Validate()); !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
