package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	return &Report{
		When:    time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC),
		Command: "cd bench && go run ./cmd/throughput -write",
		Relay:   "commit 1a2b3c4",
		Machine: Machine{CPU: "AMD EPYC", Cores: 2, GOMAXPROCS: 2, Go: "go version go1.26.8 linux/amd64", RabbitMQ: "3.10.8", Erlang: "Erlang/OTP 25.2.3"},
		Settings: Settings{Rounds: 3, Warmup: 2 * time.Second, Duration: 8 * time.Second, BodyBytes: 256, InFlight: 128,
			Prefetch: 64, Workers: 32, Bulkhead: 64, Messages: 40000, OutboundPrefetch: 1000},
		Work: []WorkRound{
			{RelayFirst: true, Relay: TaskFigures{Rate: 3600, P50: 30 * time.Millisecond, P99: 60 * time.Millisecond, CPUPer10k: 1.5},
				Plain: TaskFigures{Rate: 3000, P50: 40 * time.Millisecond, P99: 80 * time.Millisecond, CPUPer10k: 1.1}},
			{RelayFirst: false, Relay: TaskFigures{Rate: 3000, P50: 35 * time.Millisecond, P99: 70 * time.Millisecond, CPUPer10k: 1.7},
				Plain: TaskFigures{Rate: 3000, P50: 41 * time.Millisecond, P99: 90 * time.Millisecond, Failed: 2}},
			{RelayFirst: true, Relay: TaskFigures{Rate: 2000, P50: 50 * time.Millisecond, P99: 99 * time.Millisecond, CPUPer10k: 1.6},
				Plain: TaskFigures{Rate: 2500, P50: 42 * time.Millisecond, P99: 85 * time.Millisecond}},
		},
		WorkPeakRSS: 30 << 20, PlainPeakRSS: 12 << 20,
		Quorum: []WorkRound{
			{RelayFirst: true, Relay: TaskFigures{Rate: 1500, P50: 60 * time.Millisecond, P99: 120 * time.Millisecond, CPUPer10k: 2.0},
				Plain: TaskFigures{Rate: 1200, P50: 70 * time.Millisecond, P99: 140 * time.Millisecond, CPUPer10k: 1.8}},
			{RelayFirst: false, Relay: TaskFigures{Rate: 1100, P50: 65 * time.Millisecond, P99: 130 * time.Millisecond, CPUPer10k: 2.2, Lost: 1},
				Plain: TaskFigures{Rate: 1000, P50: 72 * time.Millisecond, P99: 150 * time.Millisecond, CPUPer10k: 1.9}},
			{RelayFirst: true, Relay: TaskFigures{Rate: 900, P50: 80 * time.Millisecond, P99: 160 * time.Millisecond, CPUPer10k: 2.4},
				Plain: TaskFigures{Rate: 1000, P50: 75 * time.Millisecond, P99: 145 * time.Millisecond, CPUPer10k: 2.0}},
		},
		QuorumPeakRSS: 33 << 20, QuorumPlainPeakRSS: 13 << 20,
		Outbound: []OutboundRound{
			{RelayFirst: true, Relay: 9000, Shovel: 10000, RelayCPUPer10k: 1.2, RelayPeakRSS: 40 << 20},
			{RelayFirst: false, Relay: 11000, Shovel: 10000, RelayCPUPer10k: 1.0, RelayPeakRSS: 42 << 20},
		},
		ShovelNote: "The broker's `rabbitmq_shovel` plugin was already enabled.",
	}
}

func TestRatios(t *testing.T) {
	r := sampleReport()
	// Round ratios 1.2, 1.0, 0.8: the median is 1.0.
	if got := r.WorkRatio(); got != 1.0 {
		t.Errorf("WorkRatio = %v, want 1.0", got)
	}
	// Round ratios 1.2, 1.0, 2.0: the median is 1.2, where the ratio of
	// the medians would still be 3000 / 3000.
	r.Work[2].Plain.Rate = 1000
	if got := r.WorkRatio(); got != 1.2 {
		t.Errorf("WorkRatio = %v, want 1.2 (median of the round ratios, not ratio of the medians)", got)
	}
	// Quorum round ratios 1.25, 1.1, 0.9: the median is 1.1, apart from
	// the classic rounds.
	if got := r.QuorumRatio(); got != 1.1 {
		t.Errorf("QuorumRatio = %v, want 1.1", got)
	}
	if got := r.OutboundRatio(); got != 1.0 {
		t.Errorf("OutboundRatio = %v, want 1.0 (median of 0.9 and 1.1)", got)
	}
	r.Outbound[1].Shovel = 0
	if got := r.OutboundRatio(); got != 0.9 {
		t.Errorf("OutboundRatio without a second shovel = %v, want 0.9", got)
	}
}

func TestSummary(t *testing.T) {
	want := "summary: work 1.00x plain (3,000 vs 3,000 tasks/s, p99 70.0 ms vs 85.0 ms) · quorum work 1.10x plain (1,100 vs 1,000 tasks/s, p99 130.0 ms vs 145.0 ms) · outbound 1.00x shovel (10,000 vs 10,000 msg/s) · peak RSS 30.0 MiB · CPU 1.60 s/10k tasks (plain 0.00) · hot paths 0/0 allocs/op"
	if got := sampleReport().Summary(); got != want {
		t.Errorf("Summary:\n%s\nwant\n%s", got, want)
	}
	r := sampleReport()
	r.Work, r.WorkPeakRSS, r.Quorum = nil, 0, nil
	r.Outbound = []OutboundRound{{Relay: 5000}}
	r.AllocsErr = "no"
	if got, want := r.Summary(), "summary: outbound 5,000 msg/s (no shovel)"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func TestMarkdown(t *testing.T) {
	md := sampleReport().Markdown()
	for _, want := range []string{
		"Measured 2026-11-29 15:00 UTC.\n",
		"- Command: `cd bench && go run ./cmd/throughput -write`\n",
		"- Relay: `./cmd/relay` built from commit 1a2b3c4\n",
		"- Load: 256-byte persistent messages published with confirms; 3 rounds, each running both implementations; on the work path each gets 2s of warm-up, then 8s measured\n",
		"- Machine: AMD EPYC, 2 cores (GOMAXPROCS 2); `go version go1.26.8 linux/amd64`; RabbitMQ 3.10.8 (Erlang/OTP 25.2.3) on the same host\n",
		"| 1 | relay, plain | 3,600 | 3,000 | 1.20x | 30.0 ms / 60.0 ms | 40.0 ms / 80.0 ms | 1.50 / 1.10 |\n",
		"| 2 | plain, relay | 3,000 | 3,000 | 1.00x | 35.0 ms / 70.0 ms | 41.0 ms / 90.0 ms | 1.70 / 0.00 |\n",
		"| median | | 3,000 | 3,000 | 1.00x | 35.0 ms / 70.0 ms | 41.0 ms / 85.0 ms | 1.60 / 0.00 |\n",
		"Peak resident set over all rounds: relay 30.0 MiB, plain loop 12.0 MiB.\n",
		"Not every task succeeded: round 2 plain: 2 failed, 0 lost.\n",
		"| 2 | shovel, relay | 11,000 | 10,000 | 1.10x | 1.00 | 42.0 MiB |\n",
		"| median | | 10,000 | 10,000 | 1.00x | 1.10 | 42.0 MiB (max) |\n",
		"| work path ≥ 1.0x the plain loop, every protection on | 1.00x (median of 3 rounds' ratios; lowest 0.80x) | yes |\n",
		"| outbound path ≥ 1.0x the shovel | 1.00x (median of 2 rounds' ratios; lowest 0.90x) | yes |\n",
		"| peak RSS ≤ 64 MiB at prefetch 64 under sustained load | 30.0 MiB | yes |\n",
		"| breaker and bulkhead hot paths 0 allocs/op | 0 / 0 allocs/op | yes |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	r := sampleReport()
	r.Work[1].Relay.Rate = 2000
	r.WorkPeakRSS = 65 << 20
	md = r.Markdown()
	for _, want := range []string{
		"| work path ≥ 1.0x the plain loop, every protection on | 0.80x (median of 3 rounds' ratios; lowest 0.67x) | no |\n",
		"| peak RSS ≤ 64 MiB at prefetch 64 under sustained load | 65.0 MiB | no |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
}

func TestSummaryQuorumOnly(t *testing.T) {
	r := sampleReport()
	r.Work, r.WorkPeakRSS, r.Outbound, r.AllocsErr = nil, 0, nil, "no"
	if got, want := r.Summary(), "summary: quorum work 1.10x plain (1,100 vs 1,000 tasks/s, p99 130.0 ms vs 145.0 ms)"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

// TestMarkdownQuorum checks the section of the work path on quorum queues:
// between the classic work path and the outbound path, with its own
// rounds, peaks, failures and target.
func TestMarkdownQuorum(t *testing.T) {
	md := sampleReport().Markdown()
	const heading = "### Work path on quorum queues: relay vs plain amqp091-go loop\n"
	classicAt, quorumAt, outboundAt := strings.Index(md, "### Work path: relay vs plain"), strings.Index(md, heading), strings.Index(md, "### Outbound path")
	if classicAt < 0 || quorumAt < 0 || outboundAt < 0 || !(classicAt < quorumAt && quorumAt < outboundAt) {
		t.Fatalf("sections at %d (classic), %d (quorum), %d (outbound), want them in that order:\n%s", classicAt, quorumAt, outboundAt, md)
	}
	classic, quorum := md[classicAt:quorumAt], md[quorumAt:outboundAt]
	for _, want := range []string{
		"| 1 | relay, plain | 1,500 | 1,200 | 1.25x | 60.0 ms / 120.0 ms | 70.0 ms / 140.0 ms | 2.00 / 1.80 |\n",
		"| 2 | plain, relay | 1,100 | 1,000 | 1.10x | 65.0 ms / 130.0 ms | 72.0 ms / 150.0 ms | 2.20 / 1.90 |\n",
		"| median | | 1,100 | 1,000 | 1.10x | 65.0 ms / 130.0 ms | 72.0 ms / 145.0 ms | 2.20 / 1.90 |\n",
		"Peak resident set over all rounds: relay 33.0 MiB, plain loop 13.0 MiB.\n",
		"Not every task succeeded: round 2 relay: 0 failed, 1 lost.\n",
	} {
		if !strings.Contains(quorum, want) {
			t.Errorf("quorum section lacks %q:\n%s", want, quorum)
		}
	}
	for _, want := range []string{
		"Peak resident set over all rounds: relay 30.0 MiB, plain loop 12.0 MiB.\n",
		"Not every task succeeded: round 2 plain: 2 failed, 0 lost.\n",
	} {
		if !strings.Contains(classic, want) {
			t.Errorf("classic section lacks %q:\n%s", want, classic)
		}
	}
	for _, want := range []string{
		"- Work path on quorum queues: the same load and settings; the relay with `amqp.queue_type: quorum`",
		"| work path on quorum queues ≥ 1.0x the plain loop on quorum queues | 1.10x (median of 3 rounds' ratios; lowest 0.90x) | yes |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}

	r := sampleReport()
	r.Quorum[1].Relay.Rate = 800
	if want := "| work path on quorum queues ≥ 1.0x the plain loop on quorum queues | 0.90x (median of 3 rounds' ratios; lowest 0.80x) | no |\n"; !strings.Contains(r.Markdown(), want) {
		t.Errorf("Markdown lacks %q", want)
	}

	r = sampleReport()
	r.Quorum = nil
	if md := r.Markdown(); strings.Contains(md, "quorum") {
		t.Errorf("Markdown without quorum rounds mentions quorum queues:\n%s", md)
	}
}

func TestReplaceSection(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"empty file", "", beginMarker + "\nnew\n" + endMarker + "\n"},
		{"no markers", "# Benchmarks\n\nintro", "# Benchmarks\n\nintro\n\n" + beginMarker + "\nnew\n" + endMarker + "\n"},
		{
			"between other sections",
			"# B\n\n<!-- compare:begin -->\nc\n<!-- compare:end -->\n\n" + beginMarker + "\nold\n" + endMarker + "\n\ntail\n",
			"# B\n\n<!-- compare:begin -->\nc\n<!-- compare:end -->\n\n" + beginMarker + "\nnew\n" + endMarker + "\n\ntail\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replaceSection(tt.text, "new\n"); got != tt.want {
				t.Errorf("replaceSection:\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, gen := range []string{"first\n", "second\n"} {
		if err := writeSection(path, gen); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	if want := "# Benchmarks\n\n" + beginMarker + "\nsecond\n" + endMarker + "\n"; string(data) != want {
		t.Errorf("file:\n%q\nwant\n%q", data, want)
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuModel([]byte(info)); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel([]byte("processor : 0\n")); got != "" {
		t.Errorf("cpuModel without a model = %q", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	good := options{url: "amqp://guest:guest@127.0.0.1:5672/", rounds: 3, warmup: time.Second, duration: time.Second,
		inflight: 1, prefetch: 1, workers: 1, bulkhead: 1, body: 1, messages: 100, outboundPrefetch: 1}
	if err := good.validate(); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for _, only := range []string{"", "work", "quorum", "outbound"} {
		o := good
		o.only, o.quorum = only, true
		if err := o.validate(); err != nil {
			t.Errorf("-only %q: %v", only, err)
		}
	}
	tests := []struct {
		name   string
		change func(*options)
	}{
		{"remote broker", func(o *options) { o.url = "amqp://guest:guest@broker.example:5672/" }},
		{"no rounds", func(o *options) { o.rounds = 0 }},
		{"no window", func(o *options) { o.duration = 0 }},
		{"too few messages", func(o *options) { o.messages = 10 }},
		{"unknown path", func(o *options) { o.only = "both" }},
		{"quorum only without quorum", func(o *options) { o.only, o.quorum = "quorum", false }},
		{"revision and binary", func(o *options) { o.rev, o.relayBin = "HEAD", "relay" }},
		{"revision like a flag", func(o *options) { o.rev = "--output=x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.change(&o)
			if err := o.validate(); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestBrokerURI(t *testing.T) {
	if got, want := brokerURI("amqp://guest:guest@127.0.0.1:5672/"), "amqp://guest:guest@127.0.0.1:5672"; got != want {
		t.Errorf("brokerURI = %q, want %q", got, want)
	}
}
