package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"},
		{"amqps://relay:s3cret@broker:5671/prod?heartbeat=10", "amqps://relay:***@broker:5671/prod?heartbeat=10"},
		{"amqp://relay:p%40ss@broker/", "amqp://relay:***@broker/"},
		{"amqp://user@broker/", "amqp://user@broker/"},
		{"amqp://broker:5672/", "amqp://broker:5672/"},
		{"amqp://u:p@/", "amqp://u:***@/"},
		{"amqp://u:p ss@broker/", "amqp://***@broker/"},
		{"u:p ss@broker", "***@broker"},
		{"https://api:key@example.com/v1", "https://api:***@example.com/v1"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

const secretFile = `
instance: edge-1
amqp: {url: "amqps://relay:s3cret@broker:5671/prod", tls: {server_name: broker.internal}, queue_type: quorum}
http: {admin_token: adm1n-t0ken}
bulkheads:
  pool: {size: 4, overflow: 1, timeout: 2s, rate_limit: 2.5, max_waiting: -1, hold_warning: 1m}
  out: {size: 1}
breakers: {defaults: {slow_call_duration: 2s}, api: {failure_rate_threshold: 0.5}, bus: {}}
backoff: {api: {jitter: decorrelated, multiplier: 1.5}}
targets:
  api:
    url: https://svc:p4ss@api.example.com/v1
    method: PUT
    headers: {Authorization: "Bearer ${TOKEN}", X-Static: "t0psecret"}
    breaker: api
    bulkhead: pool
    backoff: api
    max_response_bytes: 1000
work:
  - {queue: tasks.api, target: api, redelivery: [1s, 1h30m], prefetch: 3}
  - {queue: tasks.api2, target: api}
outbound:
  - {queue: out, url: "amqp://fed:f3d@remote:5672/", breaker: bus, bulkhead: out, exchanges: [a, "b:c"]}
`

func TestRedacted(t *testing.T) {
	for name, file := range map[string]string{"default": "", "with secrets": secretFile} {
		t.Run(name, func(t *testing.T) {
			c := mustLoad(t, file, nil)
			out, err := c.Redacted()
			if err != nil {
				t.Fatal(err)
			}
			text := string(out)
			for _, secret := range []string{"s3cret", "p4ss", "f3d", "${TOKEN}", "t0psecret", "guest:guest", "adm1n-t0ken"} {
				if strings.Contains(text, secret) {
					t.Errorf("redacted output shows %q:\n%s", secret, text)
				}
			}

			back := mustLoad(t, text, nil)
			// Put the secrets back, then nothing may differ.
			back.AMQP.URL = c.AMQP.URL
			back.HTTP.AdminToken = c.HTTP.AdminToken
			for name, tg := range back.Targets {
				tg.URL = c.Targets[name].URL
				tg.Headers = c.Targets[name].Headers
				back.Targets[name] = tg
			}
			for i := range back.Outbound {
				back.Outbound[i].URL = c.Outbound[i].URL
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("round trip differs\n got %+v\nwant %+v\nYAML:\n%s", back, c, text)
			}
		})
	}
}

func TestRedactedShape(t *testing.T) {
	c := mustLoad(t, secretFile, nil)
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"url: amqps://relay:***@broker:5671/prod\n",
		"url: https://svc:***@api.example.com/v1\n",
		"url: amqp://fed:***@remote:5672/\n",
		"authorization: '***'\n",
		"x-static: '***'\n",
		"redelivery: [1s, 1h30m]\n",
		"exchanges: [a, 'b:c']\n",
		"jitter: decorrelated\n",
		"max_waiting: -1\n",
		"hold_warning: 1m\n",
		"slow_call_duration: 2s\n",
		"instance: edge-1\n",
		"server_name: broker.internal\n",
		"admin_token: '***'\n",
		"queue_type: quorum\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("redacted output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "defaults:") {
		t.Errorf("redacted output has a defaults entry:\n%s", out)
	}
	// The bulkhead extensions left zero are left out, as in configs/relay.yaml.
	if strings.Count(string(out), "max_waiting:") != 1 || strings.Count(string(out), "hold_warning:") != 1 || strings.Count(string(out), "rate_limit:") != 1 {
		t.Errorf("redacted output shows zero bulkhead extensions:\n%s", out)
	}
	// Redacted must not change c.
	if c.Targets["api"].Headers["x-static"] != "t0psecret" || !strings.Contains(c.AMQP.URL, "s3cret") {
		t.Errorf("Redacted changed the config: %+v", c)
	}
}
