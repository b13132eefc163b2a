package procstat

import (
	"errors"
	"os"
	"testing"
)

const status = `Name:	relay
Umask:	0022
State:	S (sleeping)
VmPeak:	 1261852 kB
VmSize:	 1261852 kB
VmHWM:	   31512 kB
VmRSS:	   29880 kB
Threads:	9
`

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Memory
		err  bool
	}{
		{"linux status", status, Memory{Peak: 31512 * 1024, Current: 29880 * 1024}, false},
		{"missing VmRSS", "VmHWM:\t 10 kB\n", Memory{}, true},
		{"kernel thread without memory", "Name:\tkthreadd\nState:\tS\n", Memory{}, true},
		{"bad unit", "VmHWM:\t 10 MB\nVmRSS:\t 1 kB\n", Memory{}, true},
		{"bad number", "VmHWM:\t x kB\nVmRSS:\t 1 kB\n", Memory{}, true},
		{"no trailing newline", "VmRSS: 1 kB\nVmHWM: 2 kB", Memory{Peak: 2048, Current: 1024}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrFormat) {
				t.Errorf("err = %v, not ErrFormat", err)
			}
			if got != tt.want {
				t.Errorf("ParseStatus = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Ticks
		err  bool
	}{
		{
			name: "plain name",
			in:   "4242 (relay) S 1 4242 4242 0 -1 4194560 5000 0 0 0 731 219 0 0 20 0 9 0 123 1292136448 7470 18446744073709551615\n",
			want: Ticks{User: 731, System: 219},
		},
		{
			name: "name with spaces and parentheses",
			in:   "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 12 3 0 0 20 0 1 0 5 0 0\n",
			want: Ticks{User: 12, System: 3},
		},
		{name: "truncated", in: "7 (relay) S 1 2 3", err: true},
		{name: "no name", in: "7 relay S", err: true},
		{name: "negative", in: "7 (r) S 1 7 7 0 -1 0 0 0 0 0 -1 3 0\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrFormat) {
				t.Errorf("err = %v, not ErrFormat", err)
			}
			if got != tt.want {
				t.Errorf("ParseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTicks(t *testing.T) {
	a, b := Ticks{User: 100, System: 50}, Ticks{User: 340, System: 110}
	d := b.Sub(a)
	if d != (Ticks{User: 240, System: 60}) {
		t.Errorf("Sub = %+v", d)
	}
	if got := d.Seconds(100); got != 3 {
		t.Errorf("Seconds(100) = %v, want 3", got)
	}
	if got := d.Seconds(0); got != 0 {
		t.Errorf("Seconds(0) = %v, want 0", got)
	}
}

func TestReadSelf(t *testing.T) {
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if m.Peak < m.Current || m.Current <= 0 {
		t.Errorf("own memory = %+v: peak below current, or none", m)
	}
	if _, err := ReadTicks(os.Getpid()); err != nil {
		t.Errorf("ReadTicks(self): %v", err)
	}
	if hz := ClockTicks(); hz <= 0 {
		t.Errorf("ClockTicks = %d", hz)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (relay) S 1 4242 4242 0 -1 4194560 5000 0 0 0 731 219 0 0 20 0 9 0 123\n"))
	f.Add([]byte("7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 12 3 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseStat(b)
		if err != nil {
			return
		}
		if got.User < 0 || got.System < 0 {
			t.Errorf("negative ticks %+v from %q", got, b)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(status))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseStatus(b)
		if err != nil {
			return
		}
		if got.Peak < 0 || got.Current < 0 {
			t.Errorf("negative memory %+v from %q", got, b)
		}
	})
}
