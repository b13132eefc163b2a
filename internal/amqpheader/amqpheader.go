// Package amqpheader reads numbers out of AMQP header values. A header
// arrives as whatever type the publisher's library chose for it: any
// width of integer, signed or not, a float, or the number as text. The
// relay's settler, its dead-letter commands and the Go client read the
// relay's own headers (x-relay-status, x-relay-attempts, ...) and those
// of other publishers with this one reading.
package amqpheader

import (
	"math"
	"strconv"
	"strings"
)

// Int returns v as an int when it is a whole number within the range of a
// signed 32-bit integer (the AMQP field type the relay writes): an integer
// of any width, a float (its fraction dropped), or decimal text, spaces
// around it allowed, as a string or bytes. Anything else, nil included,
// gives false.
func Int(v any) (int, bool) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint8:
		n = int64(x)
	case uint16:
		n = int64(x)
	case uint32:
		n = int64(x)
	case uint64:
		if x > math.MaxInt32 {
			return 0, false
		}
		n = int64(x)
	case float32:
		return fromFloat(float64(x))
	case float64:
		return fromFloat(x)
	case string:
		return fromText(x)
	case []byte:
		return fromText(string(x))
	default:
		return 0, false
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, false
	}
	return int(n), true
}

func fromFloat(f float64) (int, bool) {
	if math.IsNaN(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, false
	}
	return int(f), true
}

func fromText(s string) (int, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}
