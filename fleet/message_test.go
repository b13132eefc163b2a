package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMessageRoundTrip(t *testing.T) {
	m := Message{
		Version: Version, Instance: "relay-7f3a", Breaker: "llm_api", Kind: KindFailures,
		Count: 3, Reason: "HTTP 503", At: time.Date(2026, 11, 29, 14, 0, 0, 123000000, time.UTC), Origin: "relay-7f3a",
	}
	body, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"instance":"relay-7f3a","breaker":"llm_api","kind":"failures","count":3,"reason":"HTTP 503","at":"2026-11-29T14:00:00.123Z","origin":"relay-7f3a"}`
	if string(body) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", body, want)
	}
	got, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if got != m {
		t.Fatalf("Decode = %+v, want %+v", got, m)
	}
	if k := (Message{Breaker: "vsm.tasks echo"}).RoutingKey(); k != "breaker.vsm_tasks_echo" {
		t.Fatalf("RoutingKey = %q", k)
	}
}

func TestDecode(t *testing.T) {
	const at = `"at":"2026-11-29T14:00:00Z"`
	tests := []struct {
		name, body, wantErr string
	}{
		{"open", `{"v":1,"instance":"a","breaker":"b","kind":"open",` + at + `}`, ""},
		{"closed", `{"v":1,"instance":"a","breaker":"b","kind":"closed",` + at + `}`, ""},
		{"half_open", `{"v":1,"instance":"a","breaker":"b","kind":"half_open",` + at + `}`, ""},
		{"failures", `{"v":1,"instance":"a","breaker":"b","kind":"failures","count":2,` + at + `}`, ""},
		{"unknown fields ignored", `{"v":1,"instance":"a","breaker":"b","kind":"open","extra":[1],` + at + `}`, ""},
		{"not JSON", `open`, "invalid character"},
		{"no version", `{"instance":"a","breaker":"b","kind":"open",` + at + `}`, "version 0"},
		{"newer version", `{"v":2,"instance":"a","breaker":"b","kind":"open",` + at + `}`, "version 2"},
		{"unknown kind", `{"v":1,"instance":"a","breaker":"b","kind":"exploded",` + at + `}`, `unknown kind "exploded"`},
		{"no instance", `{"v":1,"breaker":"b","kind":"open",` + at + `}`, "missing instance"},
		{"no breaker", `{"v":1,"instance":"a","kind":"open",` + at + `}`, "missing breaker"},
		{"no time", `{"v":1,"instance":"a","breaker":"b","kind":"open"}`, "missing at"},
		{"bad time", `{"v":1,"instance":"a","breaker":"b","kind":"open","at":"yesterday"}`, "cannot parse"},
		{"no failures", `{"v":1,"instance":"a","breaker":"b","kind":"failures",` + at + `}`, "counts 0"},
		{"negative failures", `{"v":1,"instance":"a","breaker":"b","kind":"failures","count":-1,` + at + `}`, "counts -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Decode error %v, want ErrInvalidMessage saying %q", err, tt.wantErr)
			}
		})
	}
}

// Messages come from other processes: whatever the body, Decode returns
// a message that passes its own checks or an error, and never panics.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"instance":"a","breaker":"b","kind":"failures","count":2,"at":"2026-11-29T14:00:00Z"}`))
	f.Add([]byte(`{"v":1,"instance":"a","breaker":"b","kind":"open","at":"2026-11-29T14:00:00Z","origin":"a"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Decode(body)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		if m.Version != Version || !m.Kind.valid() || m.Instance == "" || m.Breaker == "" || m.At.IsZero() ||
			m.Kind == KindFailures && m.Count < 1 {
			t.Fatalf("Decode accepted %+v", m)
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a decoded message: %v", err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("a decoded message does not decode again: %v", err)
		}
	})
}
