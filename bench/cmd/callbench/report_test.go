package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	f := func(rate float64, p50, p99 time.Duration) Figures {
		return Figures{Rate: rate, P50: p50, P99: p99, CPU: time.Duration(6e8 / rate)}
	}
	return &Report{
		When:     time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC),
		Command:  "cd bench && go run ./cmd/callbench -write",
		Machine:  Machine{CPU: "Xeon", Cores: 2, GOMAXPROCS: 2, Go: "go version go1.26.8 linux/amd64", RabbitMQ: "3.10.8", Erlang: "Erlang/OTP 25.2.3"},
		Settings: Settings{Rounds: 3, Warmup: 500 * time.Millisecond, Duration: 3 * time.Second, BodyBytes: 256, Responders: 2, Prefetch: 128},
		Rounds: []CallRound{
			{Round: 1, Callers: 1, ClientFirst: true, Client: f(3300, 280*time.Microsecond, time.Millisecond), Plain: f(3000, 300*time.Microsecond, 2*time.Millisecond)},
			{Round: 1, Callers: 64, ClientFirst: true, Client: f(13000, 4*time.Millisecond, 9*time.Millisecond), Plain: f(13000, 4*time.Millisecond, 10*time.Millisecond)},
			{Round: 2, Callers: 1, ClientFirst: false, Client: f(3000, 290*time.Microsecond, time.Millisecond), Plain: f(3000, 300*time.Microsecond, 2*time.Millisecond)},
			{Round: 2, Callers: 64, ClientFirst: false, Client: f(12000, 4*time.Millisecond, 9*time.Millisecond), Plain: f(13000, 4*time.Millisecond, 9*time.Millisecond)},
			{Round: 3, Callers: 1, ClientFirst: true, Client: f(2000, 300*time.Microsecond, time.Millisecond), Plain: f(1000, 300*time.Microsecond, 2*time.Millisecond)},
			{Round: 3, Callers: 64, ClientFirst: true, Client: f(14000, 4*time.Millisecond, 9*time.Millisecond), Plain: f(13000, 4*time.Millisecond, 9*time.Millisecond)},
		},
	}
}

func TestMediansTakeTheMedianOfTheRoundsRatios(t *testing.T) {
	m := sampleReport().Medians()
	if len(m) != 2 || m[0].Callers != 1 || m[1].Callers != 64 {
		t.Fatalf("Medians = %+v", m)
	}
	// Round ratios 1.1, 1.0, 2.0: the median is 1.1, where the ratio of
	// the medians would be 3000 / 3000.
	if m[0].Ratio != 1.1 || m[0].RatioLow != 1.0 || m[0].RatioHigh != 2.0 || m[0].ClientRate != 3000 || m[0].PlainRate != 3000 {
		t.Errorf("1 caller: %+v", m[0])
	}
	// CPU per call follows 1/rate here: round ratios 1/1.1, 1, 1/2.
	if r := m[0].CPURatio; r < 0.909 || r > 0.910 || m[0].ClientCPU != 200*time.Microsecond {
		t.Errorf("1 caller CPU: %+v", m[0])
	}
	if m[1].ClientP99 != 9*time.Millisecond || m[1].PlainP99 != 9*time.Millisecond {
		t.Errorf("64 callers: %+v", m[1])
	}
}

func TestSummaryAndMarkdown(t *testing.T) {
	r := sampleReport()
	want := "summary: client.Call vs plain loop: 1 caller 1.10x (3,000 vs 3,000 calls/s, p99 1.00 ms vs 2.00 ms, CPU per call 0.91x) · 64 callers 1.00x (13,000 vs 13,000 calls/s, p99 9.00 ms vs 9.00 ms, CPU per call 1.00x)"
	if got := r.Summary(); got != want {
		t.Errorf("Summary:\n%s\nwant\n%s", got, want)
	}
	md := r.Markdown()
	for _, line := range []string{
		"## The Go client's Call against a hand-written request/reply loop",
		"Measured 2026-12-02 09:00 UTC.",
		"| 1 | 3,000 | 3,000 | 1.10x | 1.00x – 2.00x | 0.29 ms / 1.00 ms | 0.30 ms / 2.00 ms | 200 µs / 200 µs (0.91x) | 0 / 0 |",
		"| 2 | 64 | plain, Call | 12,000 | 13,000 | 0.92x | 50 µs / 46 µs |",
		"not the relay but a responder in the benchmark's process",
		"```\n" + want + "\n```",
	} {
		if !strings.Contains(md, line) {
			t.Errorf("Markdown lacks %q:\n%s", line, md)
		}
	}
}

func TestWriteSectionReplacesOnlyItsOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	before := "# Benchmarks\n\n<!-- throughput:begin -->\nold throughput\n<!-- throughput:end -->\n"
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, gen := range []string{"first\n", "second\n"} {
		if err := writeSection(path, gen); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := before + "\n" + beginMarker + "\nsecond\n" + endMarker + "\n"; string(got) != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"remote broker", []string{"-url", "amqp://guest:guest@broker.example:5672/"}},
		{"no rounds", []string{"-rounds", "0"}},
		{"bad callers", []string{"-callers", "1,x"}},
		{"zero callers", []string{"-callers", "0"}},
		{"zero duration", []string{"-duration", "0s"}},
		{"unknown flag", []string{"-nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := run(tt.args, io.Discard, io.Discard); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
		})
	}
}

// A short run against the broker on this host: both implementations
// answer every call with the right body.
func TestMeasureSmoke(t *testing.T) {
	url := "amqp://guest:guest@127.0.0.1:5672/"
	c, err := net.DialTimeout("tcp", "127.0.0.1:5672", time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no broker on 127.0.0.1:5672 under CI=true: %v", err)
		}
		t.Skipf("no broker on 127.0.0.1:5672: %v", err)
	}
	c.Close()
	o := options{url: url, rounds: 1, warmup: 50 * time.Millisecond, duration: 200 * time.Millisecond,
		callers: []int{1, 4}, body: 64, responders: 1, prefetch: 16}
	rep, err := measure(context.Background(), o, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 2 {
		t.Fatalf("%d rounds", len(rep.Rounds))
	}
	for _, r := range rep.Rounds {
		if r.Client.Rate <= 0 || r.Plain.Rate <= 0 || r.Client.Failed != 0 || r.Plain.Failed != 0 {
			t.Errorf("round %+v", r)
		}
	}
}
