package backoff

import (
	"math"
	"strings"
	"time"
)

// httpDateLayouts are the three HTTP-date forms a recipient must accept
// (RFC 9110, section 5.6.7): IMF-fixdate, then the obsolete RFC 850 and
// asctime forms.
var httpDateLayouts = [...]string{
	"Mon, 02 Jan 2006 15:04:05 GMT",
	time.RFC850,
	time.ANSIC,
}

// ParseRetryAfter reads an HTTP Retry-After value: delta-seconds ("120")
// or an HTTP-date ("Fri, 31 Dec 1999 23:59:59 GMT", measured from now).
//
// It reports false, with 0, for anything else (empty, fractional, signed
// with "+", a malformed date). It never returns a negative delay: a date
// in the past and a negative number of seconds, which the server can only
// mean as "now", give 0 and true. A value too large for a Duration gives
// the largest Duration instead of overflowing; callers cap it at their
// policy's Max.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return 0, false
	}
	if d, ok, numeric := parseSeconds(v); numeric {
		return d, ok
	}
	for _, layout := range httpDateLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			// Sub saturates instead of overflowing for far-off dates.
			return max(t.Sub(now), 0), true
		}
	}
	return 0, false
}

// parseSeconds reads an optional "-" and digits. numeric is false when v
// is not of that shape, so that it can be tried as a date.
func parseSeconds(v string) (d time.Duration, ok, numeric bool) {
	neg := v[0] == '-'
	digits := v
	if neg {
		digits = v[1:]
	}
	if digits == "" {
		return 0, false, false
	}
	const maxSeconds = int64(math.MaxInt64 / int64(time.Second))
	var n int64
	saturated := false
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, false, false
		}
		if !saturated {
			n = n*10 + int64(c-'0')
			saturated = n > maxSeconds
		}
	}
	switch {
	case neg:
		return 0, true, true
	case saturated:
		return math.MaxInt64, true, true
	default:
		return time.Duration(n) * time.Second, true, true
	}
}
