package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sample is one line of benchmark output.
type Sample struct {
	NsPerOp, BytesPerOp, AllocsPerOp float64
}

// Parse reads `go test -bench -benchmem` output and returns the samples of
// each benchmark, named without the -GOMAXPROCS suffix, and that suffix.
func Parse(r io.Reader) (map[string][]Sample, int, error) {
	out := map[string][]Sample{}
	procs := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || f[3] != "ns/op" {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if n, err := strconv.Atoi(name[i+1:]); err == nil {
				name, procs = name[:i], n
			}
		}
		var s Sample
		for k := 2; k+1 < len(f); k += 2 {
			v, err := strconv.ParseFloat(f[k], 64)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: bad value %q", f[0], f[k])
			}
			switch f[k+1] {
			case "ns/op":
				s.NsPerOp = v
			case "B/op":
				s.BytesPerOp = v
			case "allocs/op":
				s.AllocsPerOp = v
			}
		}
		out[name] = append(out[name], s)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if len(out) == 0 {
		return nil, 0, fmt.Errorf("no benchmark results in the output")
	}
	return out, procs, nil
}

// Stat is the median of several samples of one benchmark, with the range
// of ns/op to show how noisy the run was.
type Stat struct {
	Name             string
	N                int
	Ns, MinNs, MaxNs float64
	Bytes, Allocs    float64
}

func summarize(name string, samples []Sample) Stat {
	pick := func(f func(Sample) float64) []float64 {
		v := make([]float64, len(samples))
		for i, s := range samples {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v
	}
	ns := pick(func(s Sample) float64 { return s.NsPerOp })
	return Stat{
		Name:   name,
		N:      len(samples),
		Ns:     median(ns),
		MinNs:  ns[0],
		MaxNs:  ns[len(ns)-1],
		Bytes:  median(pick(func(s Sample) float64 { return s.BytesPerOp })),
		Allocs: median(pick(func(s Sample) float64 { return s.AllocsPerOp })),
	}
}

// median of sorted, non-empty v.
func median(v []float64) float64 {
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// Report is one comparison run.
type Report struct {
	Results    map[string][]Sample
	Command    string // how to reproduce the whole comparison
	GoTest     string // the go test command it runs
	GoVersion  string
	Peers      []string // module@version of each peer
	CPU        string
	Cores      int
	GOMAXPROCS int
	At         time.Time
}

// group is one benchmark function and the peers it compares.
type group struct {
	title, bench string
	peers        []string
}

var groups = []group{
	{"Circuit breaker, one goroutine", "BenchmarkBreaker", []string{"relay", "gobreaker", "failsafe-permit", "failsafe-executor"}},
	{"Circuit breaker, parallel", "BenchmarkBreakerParallel", []string{"relay", "gobreaker", "failsafe-permit", "failsafe-executor"}},
	{"Bulkhead, one goroutine", "BenchmarkBulkhead", []string{"relay", "failsafe-permit", "failsafe-executor"}},
	{"Bulkhead, parallel", "BenchmarkBulkheadParallel", []string{"relay", "failsafe-permit", "failsafe-executor"}},
}

var peerLabels = map[string]string{
	"relay":             "relay",
	"gobreaker":         "gobreaker `Execute`",
	"failsafe-permit":   "failsafe-go `TryAcquirePermit` + record/release",
	"failsafe-executor": "failsafe-go executor `Run`",
}

func (r *Report) stat(bench, peer string) (Stat, bool) {
	name := bench + "/" + peer
	s, ok := r.Results[name]
	if !ok || len(s) == 0 {
		return Stat{}, false
	}
	return summarize(name, s), true
}

// Target is one of the relay's stated performance goals.
type Target struct {
	What     string
	Measured string
	Met      bool
	Known    bool // false: a benchmark it needs is missing from the run
}

// Targets evaluates the goals: the breaker at most 0.5× gobreaker's
// Execute, the bulkhead at most 1.2× failsafe-go's permit API, both
// without allocating.
func (r *Report) Targets() []Target {
	var out []Target
	ratio := func(what, bench, peer string, limit float64) {
		a, ok1 := r.stat(bench, "relay")
		b, ok2 := r.stat(bench, peer)
		t := Target{What: what, Known: ok1 && ok2 && b.Ns > 0}
		if t.Known {
			q := a.Ns / b.Ns
			t.Measured = fmt.Sprintf("%.2f× (%s ÷ %s ns/op)", q, ns(a.Ns), ns(b.Ns))
			t.Met = q <= limit
		}
		out = append(out, t)
	}
	allocs := func(what string, benches ...string) {
		t := Target{What: what, Known: true, Met: true}
		var parts []string
		for _, bench := range benches {
			s, ok := r.stat(bench, "relay")
			if !ok {
				t.Known = false
				continue
			}
			parts = append(parts, fmt.Sprintf("%g", s.Allocs))
			t.Met = t.Met && s.Allocs == 0
		}
		t.Measured = strings.Join(parts, " / ") + " allocs/op"
		out = append(out, t)
	}
	ratio("breaker ≤ 0.5× gobreaker `Execute` (one goroutine)", "BenchmarkBreaker", "gobreaker", 0.5)
	ratio("breaker ≤ 0.5× gobreaker `Execute` (parallel)", "BenchmarkBreakerParallel", "gobreaker", 0.5)
	ratio("bulkhead ≤ 1.2× failsafe-go bulkhead permit (one goroutine)", "BenchmarkBulkhead", "failsafe-permit", 1.2)
	ratio("bulkhead ≤ 1.2× failsafe-go bulkhead permit (parallel)", "BenchmarkBulkheadParallel", "failsafe-permit", 1.2)
	allocs("breaker 0 allocs/op (one goroutine / parallel)", "BenchmarkBreaker", "BenchmarkBreakerParallel")
	allocs("bulkhead 0 allocs/op (one goroutine / parallel)", "BenchmarkBulkhead", "BenchmarkBulkheadParallel")
	return out
}

// AllMet reports whether every target was measured and met.
func (r *Report) AllMet() bool {
	for _, t := range r.Targets() {
		if !t.Known || !t.Met {
			return false
		}
	}
	return true
}

// Markdown renders the report: environment, one table per group, targets.
func (r *Report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("## Comparison with peers\n\n")
	w("Measured %s.\n\n", r.At.Format("2006-01-02 15:04 MST"))
	w("- Command: `%s` (it runs `%s`)\n", r.Command, r.GoTest)
	w("- Go: `%s`\n", r.GoVersion)
	w("- CPU: %s, %d cores (GOMAXPROCS %d)\n", r.CPU, r.Cores, r.GOMAXPROCS)
	if len(r.Peers) > 0 {
		w("- Peers: %s\n", "`"+strings.Join(r.Peers, "`, `")+"`")
	}
	w("\nEach figure is the median of %d runs, with the range of ns/op in brackets. ", r.runs())
	w("Ratios divide a row's median by the named peer's median from the same run.\n")

	for _, g := range groups {
		_, hasGobreaker := r.stat(g.bench, "gobreaker")
		w("\n### %s (`%s`)\n\n", g.title, g.bench)
		if hasGobreaker {
			w("| implementation | ns/op | B/op | allocs/op | ÷ gobreaker Execute | ÷ failsafe-go permit |\n")
			w("| --- | ---: | ---: | ---: | ---: | ---: |\n")
		} else {
			w("| implementation | ns/op | B/op | allocs/op | ÷ failsafe-go permit |\n")
			w("| --- | ---: | ---: | ---: | ---: |\n")
		}
		gb, okGB := r.stat(g.bench, "gobreaker")
		fp, okFP := r.stat(g.bench, "failsafe-permit")
		for _, peer := range g.peers {
			s, ok := r.stat(g.bench, peer)
			if !ok {
				w("| %s | not measured | | | |\n", peerLabels[peer])
				continue
			}
			w("| %s | %s (%s–%s) | %g | %g |", peerLabels[peer], ns(s.Ns), ns(s.MinNs), ns(s.MaxNs), s.Bytes, s.Allocs)
			if hasGobreaker {
				w(" %s |", ratioCell(s, gb, okGB))
			}
			w(" %s |\n", ratioCell(s, fp, okFP))
		}
	}

	w("\n### Targets\n\n| target | measured | met |\n| --- | --- | --- |\n")
	for _, t := range r.Targets() {
		switch {
		case !t.Known:
			w("| %s | not measured | no |\n", t.What)
		case t.Met:
			w("| %s | %s | yes |\n", t.What, t.Measured)
		default:
			w("| %s | %s | **no** |\n", t.What, t.Measured)
		}
	}
	return b.String()
}

func (r *Report) runs() int {
	n := 0
	for _, s := range r.Results {
		n = max(n, len(s))
	}
	return n
}

func ratioCell(s, peer Stat, ok bool) string {
	if !ok || peer.Ns <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", s.Ns/peer.Ns)
}

func ns(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
