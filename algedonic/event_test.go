package algedonic

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEventJSON(t *testing.T) {
	at := time.Date(2026, 11, 29, 16, 0, 0, 123456789, time.FixedZone("EET", 2*3600))
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{
			name: "contract example",
			ev: Event{
				Signal: Pain, Source: "breaker", Name: "llm_api", Event: "open",
				Severity: Critical, Intensity: 0.8, Reason: "3 failures within 60s; last: HTTP 503",
				Count: 1, Instance: "relay-7f3a", At: at, Details: map[string]any{},
			},
			want: `{"signal":"pain","source":"breaker","name":"llm_api","event":"open",` +
				`"severity":"critical","intensity":0.8,"reason":"3 failures within 60s; last: HTTP 503",` +
				`"count":1,"instance":"relay-7f3a","at":"2026-11-29T14:00:00.123Z","details":{}}`,
		},
		{
			name: "nil details and whole seconds",
			ev: Event{
				Signal: Pleasure, Source: "amqp", Name: "broker", Event: "restored",
				Severity: Info, Intensity: 1, Count: 2,
				At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			},
			want: `{"signal":"pleasure","source":"amqp","name":"broker","event":"restored",` +
				`"severity":"info","intensity":1,"reason":"","count":2,"instance":"",` +
				`"at":"2026-01-02T03:04:05.000Z","details":{}}`,
		},
		{
			name: "details kept",
			ev: Event{
				Signal: Pain, Source: "queue", Name: "q", Event: "dead_lettered", Severity: Warning,
				Count: 1, At: time.Date(2026, 1, 2, 3, 4, 5, 7e6, time.UTC),
				Details: map[string]any{"status": 503},
			},
			want: `{"signal":"pain","source":"queue","name":"q","event":"dead_lettered",` +
				`"severity":"warning","intensity":0,"reason":"","count":1,"instance":"",` +
				`"at":"2026-01-02T03:04:05.007Z","details":{"status":503}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestRoutingKey(t *testing.T) {
	tests := []struct {
		source, name, event string
		want                string
	}{
		{"breaker", "llm_api", "open", "breaker.llm_api.open"},
		{"queue", "vsm.tasks.echo", "dead_lettered", "queue.vsm_tasks_echo.dead_lettered"},
		{"bulkhead", "a#b*c", "rejected", "bulkhead.a_b_c.rejected"},
		{"bulkhead", "two words\tand\nlines", "rejected", "bulkhead.two_words_and_lines.rejected"},
		{"bulkhead", "größe", "rejected", "bulkhead.größe.rejected"},
		{"bulkhead", "a\u00a0b\u2028c.ü", "rejected", "bulkhead.a_b_c_ü.rejected"},
		{"my.src", "n", "ev.t", "my_src.n.ev_t"},
		{"health", "", "degraded", "health..degraded"},
	}
	for _, tt := range tests {
		got := Event{Source: tt.source, Name: tt.name, Event: tt.event}.RoutingKey()
		if got != tt.want {
			t.Errorf("RoutingKey(%q, %q, %q) = %q, want %q", tt.source, tt.name, tt.event, got, tt.want)
		}
		if n := strings.Count(got, "."); n != 2 {
			t.Errorf("%q has %d dots, want 2", got, n)
		}
	}
}

func TestRoutingWord(t *testing.T) {
	for in, want := range map[string]string{
		"relay-7f3a":           "relay-7f3a",
		"host.example.com-123": "host_example_com-123",
		"*":                    "_",
		"":                     "",
	} {
		if got := RoutingWord(in); got != want {
			t.Errorf("RoutingWord(%q) = %q, want %q", in, got, want)
		}
	}
}

const contractExample = `{"signal": "pain", "source": "breaker", "name": "llm_api", "event": "open",
 "severity": "critical", "intensity": 0.8,
 "reason": "3 failures within 60s; last: HTTP 503",
 "count": 1, "instance": "relay-7f3a", "at": "2026-11-29T14:00:00.123Z",
 "details": {}}`

func TestDecodeContractExample(t *testing.T) {
	got, err := Decode([]byte(contractExample))
	if err != nil {
		t.Fatal(err)
	}
	want := Event{
		Signal: Pain, Source: "breaker", Name: "llm_api", Event: "open",
		Severity: Critical, Intensity: 0.8, Reason: "3 failures within 60s; last: HTTP 503",
		Count: 1, Instance: "relay-7f3a", At: time.Date(2026, 11, 29, 14, 0, 0, 123e6, time.UTC),
		Details: map[string]any{},
	}
	assertEventEqual(t, got, want)
}

func TestDecodeNormalises(t *testing.T) {
	in := `{"signal":"pleasure","source":"amqp","name":"broker","event":"restored","severity":"info",` +
		`"intensity":0,"count":3,"at":"2026-11-29T16:00:00.123456+02:00","details":null,"extra":"ignored"}`
	got, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 29, 14, 0, 0, 123e6, time.UTC); !got.At.Equal(want) || got.At.Location() != time.UTC {
		t.Errorf("At = %v, want %v in UTC", got.At, want)
	}
	if got.Details == nil || len(got.Details) != 0 {
		t.Errorf("Details = %#v, want empty non-nil map", got.Details)
	}
	if got.Count != 3 || got.Reason != "" || got.Instance != "" {
		t.Errorf("got %+v", got)
	}
}

func TestDecodeStrict(t *testing.T) {
	valid := map[string]any{
		"signal": "pain", "source": "bulkhead", "name": "api_agent", "event": "rejected",
		"severity": "warning", "intensity": 0.5, "reason": "full", "count": 7,
		"instance": "i", "at": "2026-11-29T14:00:00.123Z", "details": map[string]any{},
	}
	with := func(k string, v any) []byte {
		m := map[string]any{}
		for kk, vv := range valid {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return b
	}
	if _, err := Decode(with("count", 7)); err != nil {
		t.Fatalf("the valid base event fails: %v", err)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"unknown signal", with("signal", "joy")},
		{"empty signal", with("signal", "")},
		{"unknown severity", with("severity", "fatal")},
		{"missing severity", with("severity", nil)},
		{"intensity below 0", with("intensity", -0.01)},
		{"intensity above 1", with("intensity", 1.01)},
		{"intensity as string", with("intensity", "0.5")},
		{"missing source", with("source", nil)},
		{"empty name", with("name", "")},
		{"missing event", with("event", nil)},
		{"count zero", with("count", 0)},
		{"missing count", with("count", nil)},
		{"missing at", with("at", nil)},
		{"at not RFC 3339", with("at", "29 Nov 2026 14:00")},
		{"at before year 0 in UTC", with("at", "0000-01-01T00:30:00+01:00")},
		{"at after year 9999 in UTC", with("at", "9999-12-31T23:30:00-01:00")},
		{"details an array", with("details", []int{1})},
		{"not an object", []byte(`[1,2]`)},
		{"trailing data", append(with("count", 7), []byte(` {}`)...)},
		{"empty", nil},
		{"truncated", []byte(`{"signal":"pain"`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode(tt.in)
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("Decode(%s) = %+v, %v; want ErrInvalidEvent", tt.in, ev, err)
			}
		})
	}
}

func assertEventEqual(t *testing.T, got, want Event) {
	t.Helper()
	if !eventsEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func eventsEqual(a, b Event) bool {
	if !a.At.Equal(b.At) {
		return false
	}
	a.At, b.At = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(contractExample))
	f.Add([]byte(`{"signal":"pleasure","source":"health","name":"overall","event":"healthy","severity":"info",` +
		`"intensity":1,"reason":"ok","count":2,"instance":"x","at":"2026-11-29T14:00:00.1+01:00","details":{"a":[1,"b",null,{"c":true}]}}`))
	f.Add([]byte(`{"signal":"pain","at":"2026-11-29T14:00:00Z"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"count":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err != nil {
			return
		}
		if !(ev.Intensity >= 0 && ev.Intensity <= 1) || ev.Count < 1 || ev.Details == nil {
			t.Fatalf("Decode accepted %+v", ev)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", ev, err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("decoding the re-encoded %s: %v", again, err)
		}
		if !eventsEqual(ev, back) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, back)
		}
	})
}
