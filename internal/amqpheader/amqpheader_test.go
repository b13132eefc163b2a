package amqpheader

import (
	"math"
	"testing"
)

func TestInt(t *testing.T) {
	cases := []struct {
		v    any
		want int
		ok   bool
	}{
		{int32(3), 3, true}, {int64(4), 4, true}, {int8(5), 5, true}, {int16(-6), -6, true}, {7, 7, true},
		{uint8(8), 8, true}, {uint16(9), 9, true}, {uint32(10), 10, true}, {uint64(11), 11, true},
		{float32(12), 12, true}, {float64(13.9), 13, true}, {"14", 14, true}, {" 15 ", 15, true}, {[]byte("16"), 16, true},
		{"-17", -17, true},
		{int64(1) << 40, 0, false}, {uint64(math.MaxUint64), 0, false}, {uint32(math.MaxUint32), 0, false},
		{math.NaN(), 0, false}, {math.Inf(1), 0, false}, {float64(1 << 40), 0, false},
		{"99999999999", 0, false}, {"x", 0, false}, {"1.5", 0, false}, {"", 0, false},
		{nil, 0, false}, {true, 0, false}, {map[string]any{}, 0, false},
	}
	for _, c := range cases {
		got, ok := Int(c.v)
		if got != c.want || ok != c.ok {
			t.Errorf("Int(%#v) = %d, %t; want %d, %t", c.v, got, ok, c.want, c.ok)
		}
	}
}
