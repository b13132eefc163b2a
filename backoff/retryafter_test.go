package backoff

import (
	"math"
	"testing"
	"time"
)

var retryAfterNow = time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)

func TestParseRetryAfter(t *testing.T) {
	const maxD = time.Duration(math.MaxInt64)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 120 * time.Second, true},
		{"0", 0, true},
		{" 5\t", 5 * time.Second, true},
		{"007", 7 * time.Second, true},
		{"-5", 0, true},
		{"-0", 0, true},
		{"9223372036", 9223372036 * time.Second, true},
		{"9223372037", maxD, true},
		{"99999999999999999999999999999999999999", maxD, true},
		{"-99999999999999999999999999999999999999", 0, true},
		{"Sun, 29 Nov 2026 14:02:00 GMT", 2 * time.Minute, true},
		{"Sunday, 29-Nov-26 14:00:30 GMT", 30 * time.Second, true},
		{"Sun Nov 29 14:01:00 2026", time.Minute, true},
		{"Sun Nov  1 14:00:00 2026", 0, true},
		{"Sat, 28 Nov 2026 14:00:00 GMT", 0, true},
		{"Thu, 01 Jan 1970 00:00:00 GMT", 0, true},
		{"Fri, 31 Dec 9999 23:59:59 GMT", maxD, true},
		{"", 0, false},
		{"   ", 0, false},
		{"-", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"5 6", 0, false},
		{"soon", 0, false},
		{"0x10", 0, false},
		{"Sun, 29 Nov 2026 14:02:00 PST", 0, false},
		{"Sun, 32 Nov 2026 14:02:00 GMT", 0, false},
		{"2026-11-29T14:02:00Z", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseRetryAfter(tc.in, retryAfterNow)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "-5", "+5", "", "99999999999999999999", "Sun, 29 Nov 2026 14:02:00 GMT",
		"Sunday, 29-Nov-26 14:00:30 GMT", "Sun Nov 29 14:01:00 2026", "Fri, 31 Dec 9999 23:59:59 GMT"} {
		f.Add(s, retryAfterNow.UnixNano())
	}
	f.Fuzz(func(t *testing.T, v string, nowNanos int64) {
		d, ok := ParseRetryAfter(v, time.Unix(0, nowNanos))
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, negative", v, d)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, false; want 0 when not ok", v, d)
		}
	})
}
