package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vsm-relay/relay/bench/internal/stats"
)

// CallRound is both implementations at one concurrency in one round,
// back to back.
type CallRound struct {
	Round       int
	Callers     int
	ClientFirst bool
	Client      Figures
	Plain       Figures
}

// Settings are the knobs of the run, printed with the figures.
type Settings struct {
	Rounds           int
	Warmup, Duration time.Duration
	BodyBytes        int
	Responders       int
	Prefetch         int
}

// Report is everything one run measured.
type Report struct {
	When     time.Time
	Command  string
	Machine  Machine
	Settings Settings
	Rounds   []CallRound
}

// callers lists the concurrencies measured, in the order first run.
func (r *Report) callers() []int {
	var out []int
	seen := map[int]bool{}
	for _, c := range r.Rounds {
		if !seen[c.Callers] {
			seen[c.Callers] = true
			out = append(out, c.Callers)
		}
	}
	return out
}

// Medians are one concurrency's figures over the rounds.
type Medians struct {
	Callers                 int
	ClientRate, PlainRate   float64
	Ratio                   float64 // median of the rounds' client ÷ plain
	RatioLow, RatioHigh     float64 // the middle half of the rounds' ratios
	ClientP50, PlainP50     time.Duration
	ClientP99, PlainP99     time.Duration
	ClientFailed, PlainFail int
	ClientCPU, PlainCPU     time.Duration // process CPU per call
	CPURatio                float64       // median of the rounds' Call ÷ plain CPU per call
}

// Medians summarises each concurrency. The ratio is the median of the
// rounds' ratios, each of two runs back to back, not the ratio of the
// medians.
func (r *Report) Medians() []Medians {
	var out []Medians
	for _, n := range r.callers() {
		var cr, pr []float64
		var c50, p50, c99, p99, ccpu, pcpu []time.Duration
		var cc, pc []float64
		m := Medians{Callers: n}
		for _, c := range r.Rounds {
			if c.Callers != n {
				continue
			}
			cr, pr = append(cr, c.Client.Rate), append(pr, c.Plain.Rate)
			c50, p50 = append(c50, c.Client.P50), append(p50, c.Plain.P50)
			c99, p99 = append(c99, c.Client.P99), append(p99, c.Plain.P99)
			ccpu, pcpu = append(ccpu, c.Client.CPU), append(pcpu, c.Plain.CPU)
			cc, pc = append(cc, float64(c.Client.CPU)), append(pc, float64(c.Plain.CPU))
			m.ClientFailed += c.Client.Failed
			m.PlainFail += c.Plain.Failed
		}
		m.ClientRate, m.PlainRate = stats.Median(cr), stats.Median(pr)
		ratios := stats.Ratios(cr, pr)
		m.Ratio = stats.Median(ratios)
		m.RatioLow, m.RatioHigh = quartiles(ratios)
		m.ClientP50, m.PlainP50 = stats.MedianDuration(c50), stats.MedianDuration(p50)
		m.ClientP99, m.PlainP99 = stats.MedianDuration(c99), stats.MedianDuration(p99)
		m.ClientCPU, m.PlainCPU = stats.MedianDuration(ccpu), stats.MedianDuration(pcpu)
		m.CPURatio = stats.Median(stats.Ratios(cc, pc))
		out = append(out, m)
	}
	return out
}

// Summary is the one line of ratios the run ends with.
func (r *Report) Summary() string {
	var parts []string
	for _, m := range r.Medians() {
		parts = append(parts, fmt.Sprintf("%s %.2fx (%s vs %s calls/s, p99 %s vs %s, CPU per call %.2fx)",
			plural(m.Callers, "caller"), m.Ratio, rate(m.ClientRate), rate(m.PlainRate), ms(m.ClientP99), ms(m.PlainP99), m.CPURatio))
	}
	return "summary: client.Call vs plain loop: " + strings.Join(parts, " · ")
}

// Markdown renders the generated section of BENCHMARKS.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	s := r.Settings
	p("## The Go client's Call against a hand-written request/reply loop")
	p("")
	p("Measured %s.", r.When.UTC().Format("2006-01-02 15:04 MST"))
	p("")
	p("- Command: `%s`", r.Command)
	m := r.Machine
	p("- Machine: %s, %d cores (GOMAXPROCS %d); `%s`; RabbitMQ %s (%s) on the same host", m.CPU, m.Cores, m.GOMAXPROCS, m.Go, m.RabbitMQ, m.Erlang)
	p("- Load: %d-byte persistent tasks to a durable queue; each caller calls in a closed loop (the next call once the reply is in); %s, each running both implementations at every concurrency, in alternating order; %s of warm-up, then %s measured",
		s.BodyBytes, plural(s.Rounds, "round"), s.Warmup, s.Duration)
	p("- Answering: not the relay but a responder in the benchmark's process standing in for it, %s (prefetch %d each) that reply at once with the relay's 200 reply (body back, `x-relay-status`, `x-relay-attempts`, `x-relay-target`), so that the figures are the callers' and the broker's, not a downstream's",
		plural(s.Responders, "consumer"), s.Prefetch)
	p("- Connections: each implementation dials a connection of its own for every pair of windows (one round at one concurrency) and closes it after, so that no connection's luck runs through the whole run")
	p("- `client.Call`: one client (one connection); calls go on a channel consuming direct reply-to, persistent and mandatory, with a random message id and correlation id each; the reply is the receipt, so that channel is not in confirm mode")
	p("- Plain loop: what an agent writes by hand on amqp091-go with the same guarantees: one connection and one channel consuming direct reply-to (not in confirm mode either), a mutex-guarded map from correlation id to waiting caller, a dispatcher goroutine, persistent mandatory publishes and returns failing the call; without reconnecting, cluster lists, cancellation or typed error replies")
	p("")
	p("```")
	p("%s", r.Summary())
	p("```")
	p("")
	p("| callers | Call calls/s | plain calls/s | ratio | middle half of the rounds' ratios | Call p50 / p99 | plain p50 / p99 | CPU per call, Call / plain | failed, Call / plain |")
	p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, m := range r.Medians() {
		p("| %d | %s | %s | %.2fx | %.2fx – %.2fx | %s / %s | %s / %s | %s / %s (%.2fx) | %d / %d |", m.Callers, rate(m.ClientRate), rate(m.PlainRate), m.Ratio,
			m.RatioLow, m.RatioHigh, ms(m.ClientP50), ms(m.ClientP99), ms(m.PlainP50), ms(m.PlainP99), us(m.ClientCPU), us(m.PlainCPU), m.CPURatio, m.ClientFailed, m.PlainFail)
	}
	p("")
	p("Medians over the rounds; the ratio is the median of the rounds' ratios, and half of the rounds' ratios lie in the range beside it. CPU per call is the benchmark process's (callers and responder) over the measured window, divided by the calls answered in it; its ratio, the median of the rounds' ratios, is below 1 where Call costs less. Every round:")
	p("")
	p("| round | callers | order | Call calls/s | plain calls/s | ratio | CPU per call, Call / plain |")
	p("| ---: | ---: | --- | ---: | ---: | ---: | ---: |")
	for _, c := range r.Rounds {
		order := "Call, plain"
		if !c.ClientFirst {
			order = "plain, Call"
		}
		p("| %d | %d | %s | %s | %s | %.2fx | %s / %s |", c.Round, c.Callers, order, rate(c.Client.Rate), rate(c.Plain.Rate), stats.Ratio(c.Client.Rate, c.Plain.Rate), us(c.Client.CPU), us(c.Plain.CPU))
	}
	return b.String()
}

// quartiles returns the first and third quartile of xs (nearest rank),
// or zeros for none.
func quartiles(xs []float64) (low, high float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	at := func(p float64) float64 {
		rank := int(math.Ceil(p * float64(len(s))))
		return s[min(max(rank, 1), len(s))-1]
	}
	return at(0.25), at(0.75)
}

func rate(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	if len(s) > 3 {
		s = s[:len(s)-3] + "," + s[len(s)-3:]
	}
	return s
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

const (
	beginMarker = "<!-- call:begin -->"
	endMarker   = "<!-- call:end -->"
)

// writeSection puts generated between the call markers of the file at
// path, or appends it with the markers when they are not there yet.
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
		rest := strings.TrimPrefix(text[j+len(endMarker):], "\n")
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
