package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vsm-relay/relay/bench/internal/stats"
)

// TaskFigures are one implementation's figures in one work round.
type TaskFigures struct {
	Rate     float64 // replies per second
	P50, P99 time.Duration
	Failed   int
	Lost     int
	// CPUPer10k is the process's CPU seconds per 10,000 tasks.
	CPUPer10k float64
}

// WorkRound is one relay run and one plain-loop run, back to back.
type WorkRound struct {
	RelayFirst   bool
	Relay, Plain TaskFigures
}

// OutboundRound is one relay drain and one shovel drain of the same
// number of messages, back to back.
type OutboundRound struct {
	RelayFirst    bool
	Relay, Shovel float64 // messages per second
	// RelayCPUPer10k is the relay process's CPU seconds per 10,000
	// messages over its whole life (start-up included).
	RelayCPUPer10k float64
	RelayPeakRSS   int64
}

// Settings are the knobs of the run, printed with the figures.
type Settings struct {
	Rounds           int
	Warmup, Duration time.Duration
	BodyBytes        int
	InFlight         int
	Prefetch         int
	Workers          int
	Bulkhead         int
	Messages         int
	OutboundPrefetch int
}

// Report is everything one harness run measured.
type Report struct {
	When     time.Time
	Command  string
	Relay    string // what the measured relay was built from
	Machine  Machine
	Settings Settings

	Work         []WorkRound
	WorkPeakRSS  int64 // VmHWM of the relay process of the work rounds
	PlainPeakRSS int64 // VmHWM of the plain loop process
	// Quorum are the work rounds on quorum queues, with the peaks of
	// their own relay and plain-loop processes.
	Quorum             []WorkRound
	QuorumPeakRSS      int64
	QuorumPlainPeakRSS int64
	Outbound           []OutboundRound
	ShovelNote         string // why the shovel was not measured, or how it was set up
	Allocs             Allocs
	AllocsErr          string
}

// WorkRatio is the median over rounds of relay tasks/s ÷ plain tasks/s.
func (r *Report) WorkRatio() float64 { return workRatio(r.Work) }

// QuorumRatio is WorkRatio of the rounds on quorum queues.
func (r *Report) QuorumRatio() float64 { return workRatio(r.Quorum) }

func workRatio(rounds []WorkRound) float64 { return stats.Median(workRatios(rounds)) }

// workRatios are the rounds' relay tasks/s ÷ plain tasks/s.
func workRatios(rounds []WorkRound) []float64 {
	var a, b []float64
	for _, w := range rounds {
		a, b = append(a, w.Relay.Rate), append(b, w.Plain.Rate)
	}
	return stats.Ratios(a, b)
}

// OutboundRatio is the median over rounds of relay msg/s ÷ shovel msg/s;
// 0 when the shovel was not measured.
func (r *Report) OutboundRatio() float64 { return stats.Median(r.outboundRatios()) }

// outboundRatios are the rounds' relay msg/s ÷ shovel msg/s, for the
// rounds that measured the shovel.
func (r *Report) outboundRatios() []float64 {
	var a, b []float64
	for _, o := range r.Outbound {
		if o.Shovel > 0 {
			a, b = append(a, o.Relay), append(b, o.Shovel)
		}
	}
	return stats.Ratios(a, b)
}

// ratioSpread says what a target's ratio is: the median of the rounds'
// own ratios (each round measures both sides back to back), and the
// lowest of them. The median rates of the tables are medians of each
// column on its own, so their quotient is not this ratio.
func ratioSpread(median float64, ratios []float64) string {
	if len(ratios) == 0 {
		return fmt.Sprintf("%.2fx", median)
	}
	return fmt.Sprintf("%.2fx (median of %d rounds' ratios; lowest %.2fx)", median, len(ratios), slices.Min(ratios))
}

type workMedians struct {
	relayRate, plainRate float64
	relayP50, plainP50   time.Duration
	relayP99, plainP99   time.Duration
	cpu, plainCPU        float64
}

func medians(rounds []WorkRound) workMedians {
	var m workMedians
	var rr, pr, cpu, pcpu []float64
	var r50, p50, r99, p99 []time.Duration
	for _, w := range rounds {
		rr, pr = append(rr, w.Relay.Rate), append(pr, w.Plain.Rate)
		r50, p50 = append(r50, w.Relay.P50), append(p50, w.Plain.P50)
		r99, p99 = append(r99, w.Relay.P99), append(p99, w.Plain.P99)
		cpu, pcpu = append(cpu, w.Relay.CPUPer10k), append(pcpu, w.Plain.CPUPer10k)
	}
	m.relayRate, m.plainRate = stats.Median(rr), stats.Median(pr)
	m.relayP50, m.plainP50 = stats.MedianDuration(r50), stats.MedianDuration(p50)
	m.relayP99, m.plainP99 = stats.MedianDuration(r99), stats.MedianDuration(p99)
	m.cpu, m.plainCPU = stats.Median(cpu), stats.Median(pcpu)
	return m
}

func (r *Report) outboundMedians() (relay, shovel, cpu float64, peak int64) {
	var rr, sr, c []float64
	for _, o := range r.Outbound {
		rr, c = append(rr, o.Relay), append(c, o.RelayCPUPer10k)
		if o.Shovel > 0 {
			sr = append(sr, o.Shovel)
		}
		peak = max(peak, o.RelayPeakRSS)
	}
	return stats.Median(rr), stats.Median(sr), stats.Median(c), peak
}

// Targets of the performance issue.
const (
	targetWorkRatio     = 1.0
	targetQuorumRatio   = 1.0
	targetOutboundRatio = 1.0
	targetPeakRSS       = 64 << 20
)

// Summary is the one line of ratios the run ends with.
func (r *Report) Summary() string {
	var parts []string
	if len(r.Work) > 0 {
		m := medians(r.Work)
		parts = append(parts, fmt.Sprintf("work %.2fx plain (%s vs %s tasks/s, p99 %s vs %s)",
			r.WorkRatio(), rate(m.relayRate), rate(m.plainRate), ms(m.relayP99), ms(m.plainP99)))
	}
	if len(r.Quorum) > 0 {
		m := medians(r.Quorum)
		parts = append(parts, fmt.Sprintf("quorum work %.2fx plain (%s vs %s tasks/s, p99 %s vs %s)",
			r.QuorumRatio(), rate(m.relayRate), rate(m.plainRate), ms(m.relayP99), ms(m.plainP99)))
	}
	if len(r.Outbound) > 0 {
		relay, shovel, _, _ := r.outboundMedians()
		if shovel > 0 {
			parts = append(parts, fmt.Sprintf("outbound %.2fx shovel (%s vs %s msg/s)", r.OutboundRatio(), rate(relay), rate(shovel)))
		} else {
			parts = append(parts, fmt.Sprintf("outbound %s msg/s (no shovel)", rate(relay)))
		}
	}
	if r.WorkPeakRSS > 0 {
		parts = append(parts, fmt.Sprintf("peak RSS %s", mib(r.WorkPeakRSS)))
	}
	if len(r.Work) > 0 {
		m := medians(r.Work)
		parts = append(parts, fmt.Sprintf("CPU %.2f s/10k tasks (plain %.2f)", m.cpu, m.plainCPU))
	}
	if r.AllocsErr == "" {
		parts = append(parts, fmt.Sprintf("hot paths %g/%g allocs/op", r.Allocs.Breaker, r.Allocs.Bulkhead))
	}
	return "summary: " + strings.Join(parts, " · ")
}

func rate(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	if len(s) > 3 {
		s = s[:len(s)-3] + "," + s[len(s)-3:]
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func order(relayFirst bool, other string) string {
	if relayFirst {
		return "relay, " + other
	}
	return other + ", relay"
}

// Markdown renders the generated section of BENCHMARKS.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	s := r.Settings
	p("## Throughput against a plain client and the shovel")
	p("")
	p("Measured %s.", r.When.UTC().Format("2006-01-02 15:04 UTC"))
	p("")
	p("- Command: `%s`", r.Command)
	if r.Relay != "" {
		p("- Relay: `./cmd/relay` built from %s", r.Relay)
	}
	p("- Machine: %s, %d cores (GOMAXPROCS %d); `%s`; RabbitMQ %s (%s) on the same host", r.Machine.CPU, r.Machine.Cores, r.Machine.GOMAXPROCS, r.Machine.Go, r.Machine.RabbitMQ, r.Machine.Erlang)
	p("- Load: %d-byte persistent messages published with confirms; %s, each running both implementations; on the work path each gets %s of warm-up, then %s measured", s.BodyBytes, plural(s.Rounds, "round"), s.Warmup, s.Duration)
	p("- Work path: %d tasks kept outstanding; prefetch %d; the relay with target concurrency %d and a bulkhead of %d, the plain loop with %d workers", s.InFlight, s.Prefetch, s.Workers, s.Bulkhead, s.Workers)
	if len(r.Quorum) > 0 {
		p("- Work path on quorum queues: the same load and settings; the relay with `amqp.queue_type: quorum` (its work queue, delay queue and `.dlq` quorum queues), the plain loop declaring its queue with `x-queue-type: quorum`; queues of their own, apart from the classic ones")
	}
	p("- Outbound path: %d messages drained from a full queue; prefetch %d for the relay (bulkhead of the same size) and the shovel", s.Messages, s.OutboundPrefetch)
	p("")
	p("%s", "```")
	p("%s", r.Summary())
	p("%s", "```")
	if len(r.Work) > 0 {
		p("")
		p("### Work path: relay vs plain amqp091-go loop")
		p("")
		workSection(&b, r.Work, r.WorkPeakRSS, r.PlainPeakRSS)
	}
	if len(r.Quorum) > 0 {
		p("")
		p("### Work path on quorum queues: relay vs plain amqp091-go loop")
		p("")
		workSection(&b, r.Quorum, r.QuorumPeakRSS, r.QuorumPlainPeakRSS)
	}
	if len(r.Outbound) > 0 {
		relay, shovel, cpu, peak := r.outboundMedians()
		p("")
		p("### Outbound path: relay vs RabbitMQ shovel")
		p("")
		if r.ShovelNote != "" {
			p("%s", r.ShovelNote)
			p("")
		}
		p("| round | order | relay msg/s | shovel msg/s | ratio | relay CPU s/10k | relay peak RSS |")
		p("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
		for i, o := range r.Outbound {
			p("| %d | %s | %s | %s | %.2fx | %.2f | %s |", i+1, order(o.RelayFirst, "shovel"), rate(o.Relay), rate(o.Shovel),
				stats.Ratio(o.Relay, o.Shovel), o.RelayCPUPer10k, mib(o.RelayPeakRSS))
		}
		p("| median | | %s | %s | %.2fx | %.2f | %s (max) |", rate(relay), rate(shovel), r.OutboundRatio(), cpu, mib(peak))
	}
	p("")
	p("### Targets")
	p("")
	p("| target | measured | met |")
	p("| --- | --- | --- |")
	if len(r.Work) > 0 {
		p("| work path ≥ %.1fx the plain loop, every protection on | %s | %s |", targetWorkRatio, ratioSpread(r.WorkRatio(), workRatios(r.Work)), yesNo(r.WorkRatio() >= targetWorkRatio))
	}
	if len(r.Quorum) > 0 {
		p("| work path on quorum queues ≥ %.1fx the plain loop on quorum queues | %s | %s |", targetQuorumRatio, ratioSpread(r.QuorumRatio(), workRatios(r.Quorum)), yesNo(r.QuorumRatio() >= targetQuorumRatio))
	}
	if len(r.Outbound) > 0 && r.OutboundRatio() > 0 {
		p("| outbound path ≥ %.1fx the shovel | %s | %s |", targetOutboundRatio, ratioSpread(r.OutboundRatio(), r.outboundRatios()), yesNo(r.OutboundRatio() >= targetOutboundRatio))
	}
	if r.WorkPeakRSS > 0 {
		p("| peak RSS ≤ 64 MiB at prefetch %d under sustained load | %s | %s |", s.Prefetch, mib(r.WorkPeakRSS), yesNo(r.WorkPeakRSS <= targetPeakRSS))
	}
	if r.AllocsErr == "" {
		p("| breaker and bulkhead hot paths 0 allocs/op | %g / %g allocs/op | %s |", r.Allocs.Breaker, r.Allocs.Bulkhead, yesNo(r.Allocs.Breaker == 0 && r.Allocs.Bulkhead == 0))
	}
	return b.String()
}

// workSection renders one work path's table of rounds, its peaks and
// its failures.
func workSection(b *strings.Builder, rounds []WorkRound, relayPeak, plainPeak int64) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	m := medians(rounds)
	p("| round | order | relay tasks/s | plain tasks/s | ratio | relay p50 / p99 | plain p50 / p99 | CPU s/10k tasks, relay / plain |")
	p("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, w := range rounds {
		p("| %d | %s | %s | %s | %.2fx | %s / %s | %s / %s | %.2f / %.2f |", i+1, order(w.RelayFirst, "plain"),
			rate(w.Relay.Rate), rate(w.Plain.Rate), stats.Ratio(w.Relay.Rate, w.Plain.Rate),
			ms(w.Relay.P50), ms(w.Relay.P99), ms(w.Plain.P50), ms(w.Plain.P99), w.Relay.CPUPer10k, w.Plain.CPUPer10k)
	}
	p("| median | | %s | %s | %.2fx | %s / %s | %s / %s | %.2f / %.2f |", rate(m.relayRate), rate(m.plainRate), workRatio(rounds),
		ms(m.relayP50), ms(m.relayP99), ms(m.plainP50), ms(m.plainP99), m.cpu, m.plainCPU)
	p("")
	p("Peak resident set over all rounds: relay %s, plain loop %s.", mib(relayPeak), mib(plainPeak))
	if f := failures(rounds); f != "" {
		p("")
		p("%s", f)
	}
}

// failures notes tasks that failed or were lost: figures from a round
// where the relay failed tasks would flatter it.
func failures(rounds []WorkRound) string {
	var notes []string
	for i, w := range rounds {
		for _, x := range []struct {
			who string
			f   TaskFigures
		}{{"relay", w.Relay}, {"plain", w.Plain}} {
			if x.f.Failed > 0 || x.f.Lost > 0 {
				notes = append(notes, fmt.Sprintf("round %d %s: %d failed, %d lost", i+1, x.who, x.f.Failed, x.f.Lost))
			}
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return "Not every task succeeded: " + strings.Join(notes, "; ") + "."
}

const (
	beginMarker = "<!-- throughput:begin -->"
	endMarker   = "<!-- throughput:end -->"
)

// writeSection replaces the text between the markers in path with
// generated, or appends the markers and generated when there are none.
// The rest of the file is left as it is.
func writeSection(path, generated string) error {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(replaceSection(string(data), generated)), 0o644)
}

func replaceSection(text, generated string) string {
	block := beginMarker + "\n" + generated + endMarker + "\n"
	i, j := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if i >= 0 && j > i {
		rest := text[j+len(endMarker):]
		rest = strings.TrimPrefix(rest, "\n")
		return text[:i] + block + rest
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	if text != "" {
		text += "\n"
	}
	return text + block
}
