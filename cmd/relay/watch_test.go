package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/health"
	"github.com/vsm-relay/relay/internal/testbroker"
)

const (
	painEvent = `{
  "signal": "pain", "source": "breaker", "name": "llm_api", "event": "open",
  "severity": "critical", "intensity": 0.8,
  "reason": "3 failures within 60s; last: HTTP 503",
  "count": 1, "instance": "relay-7f3a", "at": "2026-11-29T14:00:00.123Z",
  "details": {}
}`
	pleasureEvent = `{"signal": "pleasure", "source": "breaker", "name": "llm_api", "event": "closed",
  "severity": "info", "intensity": 0.5, "reason": "3 half-open probes succeeded",
  "count": 1, "instance": "relay-7f3a", "at": "2026-11-29T14:02:00.000Z", "details": {}}`
	healthReport = `{"overall": "degraded", "instance": "relay-7f3a", "at": "2026-11-29T14:00:15.000Z",
  "amqp": {"connected": true, "blocked": false},
  "circuit_breakers": {"llm_api": {"state": "open", "failure_count": 3, "success_count": 0},
                       "amqp": {"state": "closed", "failure_count": 0, "success_count": 0}},
  "bulkheads": {"llm_worker": {"available": 4, "busy": 3, "waiting": 1, "capacity": 7}}}`
)

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// eventExchanges gives a test its own event exchanges, through the
// environment as a user would, and deletes them at the end.
func eventExchanges(t *testing.T, url string) (pain, pleasure, hl string, env []string) {
	t.Helper()
	pain, pleasure, hl = testbroker.Unique("cli.pain"), testbroker.Unique("cli.pleasure"), testbroker.Unique("cli.health")
	testbroker.CleanupExchanges(t, url, pain, pleasure, hl)
	env = []string{
		"RELAY_AMQP_URL=" + url,
		"RELAY_ALGEDONIC_PAIN_EXCHANGE=" + pain,
		"RELAY_ALGEDONIC_PLEASURE_EXCHANGE=" + pleasure,
		"RELAY_HEALTH_EXCHANGE=" + hl,
		"TZ=UTC",
	}
	return pain, pleasure, hl, env
}

func TestWatchUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown signal", []string{"watch", "--signal", "joy"}, "relay: --signal \"joy\": want pain, pleasure, health or all\n"},
		{"unknown format", []string{"watch", "--format", "xml"}, "relay: --format \"xml\": want json or text\n"},
		{"negative n", []string{"watch", "--n", "-1"}, "relay: --n must not be negative, got -1\n"},
		{"argument", []string{"watch", "pain"}, "relay: unknown command \"pain\" for \"relay watch\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runExe(t, nil, tt.args...)
			if code != 2 || out != "" || errOut != tt.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, \"\", %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestWatchPrintsEveryEventAsOneJSONLine(t *testing.T) {
	url := testbroker.URL(t)
	pain, pleasure, hl, env := eventExchanges(t, url)
	w := start(t, env, "watch", "--n", "3")
	w.waitStderr("watching "+pain+", "+pleasure+", "+hl+" on amqp://guest:***@", 10*time.Second)

	ch := confirmChannel(t, url)
	publishJSON(t, ch, pain, "breaker.llm_api.open", "not JSON: skipped")
	publishJSON(t, ch, pain, "breaker.llm_api.open", painEvent)
	publishJSON(t, ch, pleasure, "breaker.llm_api.closed", pleasureEvent)
	publishJSON(t, ch, hl, "health.relay-7f3a", healthReport)

	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, w.errText())
	}
	want := compact(t, painEvent) + "\n" + compact(t, pleasureEvent) + "\n" + compact(t, healthReport) + "\n"
	if w.out() != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", w.out(), want)
	}
}

func TestWatchSignalSelectsTheExchanges(t *testing.T) {
	url := testbroker.URL(t)
	tests := []struct {
		signal string
		want   string // the one event printed
	}{
		{"pain", painEvent},
		{"pleasure", pleasureEvent},
		{"health", healthReport},
	}
	for _, tt := range tests {
		t.Run(tt.signal, func(t *testing.T) {
			pain, pleasure, hl, env := eventExchanges(t, url)
			w := start(t, env, "watch", "--signal", tt.signal, "--n", "1")
			w.waitStderr("watching ", 10*time.Second)
			ch := confirmChannel(t, url)
			// The other signals' exchanges must exist to take a publish.
			for _, x := range []string{pain, pleasure, hl} {
				if err := ch.ExchangeDeclare(x, "topic", true, false, false, false, nil); err != nil {
					t.Fatal(err)
				}
			}
			// Published in an order that puts the wanted one last.
			all := map[string][2]string{"pain": {pain, painEvent}, "pleasure": {pleasure, pleasureEvent}, "health": {hl, healthReport}}
			for _, s := range []string{"pain", "pleasure", "health"} {
				if s != tt.signal {
					publishJSON(t, ch, all[s][0], "x.y.z", all[s][1])
				}
			}
			publishJSON(t, ch, all[tt.signal][0], "x.y.z", all[tt.signal][1])
			if code := w.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, w.errText())
			}
			if want := compact(t, tt.want) + "\n"; w.out() != want {
				t.Errorf("stdout %q, want %q", w.out(), want)
			}
		})
	}
}

func TestWatchTextFormat(t *testing.T) {
	url := testbroker.URL(t)
	pain, pleasure, hl, env := eventExchanges(t, url)
	w := start(t, env, "watch", "--format", "text", "--n", "3")
	w.waitStderr("watching ", 10*time.Second)
	ch := confirmChannel(t, url)
	publishJSON(t, ch, pain, "breaker.llm_api.open", painEvent)
	publishJSON(t, ch, pleasure, "breaker.llm_api.closed", pleasureEvent)
	publishJSON(t, ch, hl, "health.relay-7f3a", healthReport)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, w.errText())
	}
	want := "14:00:00.123 PAIN     critical breaker llm_api open (intensity 0.80) relay-7f3a: 3 failures within 60s; last: HTTP 503\n" +
		"14:02:00.000 PLEASURE info     breaker llm_api closed (intensity 0.50) relay-7f3a: 3 half-open probes succeeded\n" +
		"14:00:15.000 HEALTH   degraded relay-7f3a breakers: llm_api open (1 closed); bulkheads: llm_worker 3/7 busy 1 waiting\n"
	if w.out() != want {
		t.Errorf("stdout (no colours off a terminal):\n%s\nwant:\n%s", w.out(), want)
	}
}

func TestWatchExitsZeroOnSignals(t *testing.T) {
	url := testbroker.URL(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			_, _, _, env := eventExchanges(t, url)
			w := start(t, env, "watch")
			w.waitStderr("(Ctrl-C to stop)", 10*time.Second)
			w.signal(sig)
			if code := w.wait(10 * time.Second); code != 0 || w.out() != "" {
				t.Fatalf("exit %d, stdout %q; want 0 and nothing", code, w.out())
			}
		})
	}
}

func TestWatchUnreachableBrokerExits1(t *testing.T) {
	code, _, errOut := runExe(t, nil, "watch", "--url", "amqp://guest:guest@127.0.0.1:1/", "--connect-timeout", "200ms")
	if code != 1 || !strings.HasPrefix(errOut, "relay: could not connect to broker amqp://guest:***@127.0.0.1:1/ within 200ms") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestFormatEventColours(t *testing.T) {
	ev, err := algedonic.Decode([]byte(painEvent))
	if err != nil {
		t.Fatal(err)
	}
	ev.Count = 4
	ev.Reason = "multi\nline \x1b[2J  reason"
	at := ev.At.Local().Format("15:04:05.000")
	tests := []struct {
		colour bool
		want   string
	}{
		{false, at + " PAIN     critical breaker llm_api open x4 (intensity 0.80) relay-7f3a: multi line [2J reason"},
		{true, "\x1b[2m" + at + "\x1b[0m \x1b[1m\x1b[31mPAIN    \x1b[0m \x1b[31mcritical\x1b[0m breaker llm_api open x4 (intensity 0.80) \x1b[2mrelay-7f3a\x1b[0m: multi line [2J reason"},
	}
	for _, tt := range tests {
		if got := formatEvent(ev, tt.colour); got != tt.want {
			t.Errorf("formatEvent(colour %v) =\n%q\nwant\n%q", tt.colour, got, tt.want)
		}
	}
}

func TestFormatTextFallsBackToCompactJSON(t *testing.T) {
	tests := []struct {
		kind, body, want string
	}{
		{"pain", `{"signal": "sorrow"}`, `PAIN     {"signal":"sorrow"}`},
		{"health", `{"at": 1}`, `HEALTH   {"at":1}`},
		{"", `[1, 2]`, `EVENT    [1,2]`},
	}
	for _, tt := range tests {
		if got := formatText(tt.kind, []byte(tt.body), false); got != tt.want {
			t.Errorf("formatText(%q, %s) = %q, want %q", tt.kind, tt.body, got, tt.want)
		}
	}
}

func TestFormatHealthWithoutBroker(t *testing.T) {
	r := health.Report{Overall: health.Unhealthy, Instance: "r1", AMQP: health.AMQPStatus{Connected: false}}
	want := r.At.Local().Format("15:04:05.000") + " HEALTH   unhealthy r1 broker: disconnected"
	if got := formatHealth(r, false); got != want {
		t.Errorf("formatHealth = %q, want %q", got, want)
	}
}

func FuzzFormatText(f *testing.F) {
	for _, s := range []string{painEvent, pleasureEvent, healthReport, `{}`, `null`} {
		f.Add(uint8(0), s)
		f.Add(uint8(2), s)
	}
	kinds := []string{"pain", "pleasure", "health", ""}
	f.Fuzz(func(t *testing.T, k uint8, body string) {
		if !json.Valid([]byte(body)) {
			return
		}
		kind := kinds[int(k)%len(kinds)]
		line := formatText(kind, []byte(body), false)
		if i := strings.IndexFunc(line, unicode.IsControl); i >= 0 {
			t.Fatalf("formatText(%q, %q) = %q has a control character at %d", kind, body, line, i)
		}
	})
}
