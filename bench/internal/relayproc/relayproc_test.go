package relayproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vsm-relay/relay/config"
)

func TestParseRunning(t *testing.T) {
	tests := []struct {
		name string
		line string
		addr string
		ok   bool
	}{
		{"running", `{"time":"2026-11-29T14:00:00Z","level":"INFO","msg":"relay running","instance":"b","http":"127.0.0.1:40123","work_queues":1}`, "127.0.0.1:40123", true},
		{"other message", `{"level":"INFO","msg":"consuming","http":"127.0.0.1:1"}`, "", false},
		{"no address", `{"level":"INFO","msg":"relay running"}`, "", false},
		{"text format", `time=... level=INFO msg="relay running" http=127.0.0.1:1`, "", false},
		{"empty", ``, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ok := ParseRunning([]byte(tt.line))
			if addr != tt.addr || ok != tt.ok {
				t.Errorf("ParseRunning = %q, %v; want %q, %v", addr, ok, tt.addr, tt.ok)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	c := Config{
		Instance: "relaybench-1", URL: "amqp://guest:guest@127.0.0.1:5672/", Prefetch: 64,
		WorkQueue: "rb.work", TargetURL: "http://127.0.0.1:8081/", Redelivery: []time.Duration{5 * time.Second},
		Concurrency: 32, Bulkhead: 64,
		OutboundQueue: "rb.out", OutboundExchange: "rb.dest", OutboundPrefetch: 1000, OutboundBulkhead: 1000,
		PainExchange: "rb.pain", PleasureExchange: "rb.pleasure", HealthExchange: "rb.health",
	}
	want := `instance: "relaybench-1"
shutdown_timeout: 10s
amqp: {url: "amqp://guest:guest@127.0.0.1:5672/", prefetch: 64}
http: {listen: "127.0.0.1:0"}
breakers:
  bench_http: {}
  bench_amqp: {}
bulkheads:
  bench_http: {size: 64, overflow: 0, timeout: 5s}
  bench_amqp: {size: 1000, overflow: 0, timeout: 5s}
backoff:
  bench: {}
targets:
  bench: {url: "http://127.0.0.1:8081/", breaker: bench_http, bulkhead: bench_http, backoff: bench, concurrency: 32}
work:
  - {queue: "rb.work", target: bench, redelivery: ["5s"]}
outbound:
  - {queue: "rb.out", breaker: bench_amqp, bulkhead: bench_amqp, exchanges: ["rb.dest"], prefetch: 1000}
algedonic: {pain_exchange: "rb.pain", pleasure_exchange: "rb.pleasure"}
health: {exchange: "rb.health", interval: "15s"}
`
	if got := string(c.YAML()); got != want {
		t.Errorf("YAML:\n%s\nwant:\n%s", got, want)
	}

	quorum := c
	quorum.QueueType = "quorum"
	if line, got := `amqp: {url: "amqp://guest:guest@127.0.0.1:5672/", prefetch: 64, queue_type: "quorum"}`+"\n", string(quorum.YAML()); !strings.Contains(got, line) {
		t.Errorf("quorum YAML lacks %q:\n%s", line, got)
	}

	only := Config{Instance: "x", URL: "amqp://h/", OutboundQueue: "o", OutboundExchange: "d"}
	got := string(only.YAML())
	for _, line := range []string{"work: []\n", `  bench: {url: "http://127.0.0.1:1/", breaker: bench_http, bulkhead: bench_http, backoff: bench, concurrency: 1}` + "\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("outbound-only YAML lacks %q:\n%s", line, got)
		}
	}
}

// TestConfigLoads feeds generated configurations to the relay's own
// loader, so that a key the relay renames or drops fails here rather than
// minutes into a run.
func TestConfigLoads(t *testing.T) {
	base := Config{
		Instance: "relaybench-1", URL: "amqp://guest:guest@127.0.0.1:5672/", Prefetch: 64,
		WorkQueue: "rb.work", TargetURL: "http://127.0.0.1:8081/", Redelivery: []time.Duration{5 * time.Second},
		Concurrency: 32, Bulkhead: 64,
		PainExchange: "rb.pain", PleasureExchange: "rb.pleasure", HealthExchange: "rb.health",
	}
	tests := []struct {
		name      string
		queueType string
		want      string
	}{
		{"classic by default", "", config.QueueClassic},
		{"classic", "classic", config.QueueClassic},
		{"quorum", "quorum", config.QueueQuorum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.QueueType = tt.queueType
			cfg, err := config.LoadBytes(c.YAML(), nil)
			if err != nil {
				t.Fatalf("LoadBytes: %v\n%s", err, c.YAML())
			}
			if cfg.AMQP.QueueType != tt.want {
				t.Errorf("amqp.queue_type = %q, want %q", cfg.AMQP.QueueType, tt.want)
			}
			if len(cfg.Work) != 1 || cfg.Work[0].QueueType != tt.want {
				t.Errorf("work = %+v, want one queue of type %q", cfg.Work, tt.want)
			}
		})
	}
}

// fakeRelay writes a shell script that logs like the relay does.
func fakeRelay(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStartAndStop(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	bin := fakeRelay(t, `trap 'exit 0' TERM
echo '{"msg":"starting"}' >&2
echo '{"msg":"relay running","http":"127.0.0.1:4321"}' >&2
while :; do sleep 0.05; done`)
	p, err := Start(context.Background(), bin, nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p.Addr() != "127.0.0.1:4321" {
		t.Errorf("Addr = %q", p.Addr())
	}
	if p.PID() <= 0 || p.Exited() {
		t.Errorf("PID %d, exited %v", p.PID(), p.Exited())
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if !p.Exited() {
		t.Error("not exited after Stop")
	}
}

func TestStartExitsEarly(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	bin := fakeRelay(t, `echo 'invalid configuration: amqp.url: missing' >&2; exit 2`)
	_, err := Start(context.Background(), bin, nil, 10*time.Second)
	if !errors.Is(err, ErrExited) {
		t.Fatalf("err = %v, want ErrExited", err)
	}
	if want := "invalid configuration: amqp.url: missing"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to carry %q", err, want)
	}
}

func TestStartUntil(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	bin := fakeRelay(t, `trap 'exit 0' TERM
echo 'ready at 1.2.3.4:5' >&2
while :; do sleep 0.05; done`)
	p, err := StartUntil(context.Background(), bin, nil, 10*time.Second, func(line []byte) (string, bool) {
		addr, ok := strings.CutPrefix(string(line), "ready at ")
		return addr, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(10 * time.Second)
	if p.Addr() != "1.2.3.4:5" {
		t.Errorf("Addr = %q", p.Addr())
	}
}

func ExampleParseRunning() {
	addr, ok := ParseRunning([]byte(`{"level":"INFO","msg":"relay running","http":"127.0.0.1:40123"}`))
	fmt.Println(addr, ok)
	// Output: 127.0.0.1:40123 true
}
