// Command compare runs the peer benchmarks of package peers, takes the
// median of several counts, and prints a table of the relay's breaker and
// bulkhead against sony/gobreaker and failsafe-go measured in the same run,
// with the ratios the relay's targets are stated in. With -write it
// refreshes the generated part of the relay's BENCHMARKS.md.
//
// Run it from the bench module:
//
//	cd bench && go run ./cmd/compare -count 6 -benchtime 300ms -write
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

const benchModule = "github.com/vsm-relay/relay/bench"

// benchPattern selects the four comparison benchmarks and every peer in them.
const benchPattern = "^(BenchmarkBreaker|BenchmarkBreakerParallel|BenchmarkBulkhead|BenchmarkBulkheadParallel)$"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type config struct {
	count     int
	benchtime string
	in        string
	write     bool
	out       string
	check     bool
	verbose   bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.IntVar(&c.count, "count", 6, "runs of each benchmark; the table shows medians")
	fs.StringVar(&c.benchtime, "benchtime", "300ms", "-benchtime of each run")
	fs.StringVar(&c.in, "in", "", "read `go test -bench` output from this file instead of running the benchmarks")
	fs.BoolVar(&c.write, "write", false, "refresh the generated section of BENCHMARKS.md")
	fs.StringVar(&c.out, "out", "", "file -write refreshes (default: BENCHMARKS.md beside the bench module)")
	fs.BoolVar(&c.check, "check", false, "exit 1 when a target is missed")
	fs.BoolVar(&c.verbose, "v", false, "echo the benchmark output while it runs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.count < 1 {
		fmt.Fprintln(stderr, "compare: -count must be at least 1")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	modDir, err := benchModuleDir(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "compare:", err)
		return 2
	}
	if c.out == "" {
		c.out = filepath.Join(modDir, "..", "BENCHMARKS.md")
	}
	rep, err := measure(ctx, c, modDir, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "compare:", err)
		return 1
	}
	fmt.Fprint(stdout, rep.Markdown())
	if c.write {
		if err := updateFile(c.out, rep.Markdown()); err != nil {
			fmt.Fprintln(stderr, "compare:", err)
			return 1
		}
		fmt.Fprintln(stderr, "compare: wrote", c.out)
	}
	if c.check && !rep.AllMet() {
		fmt.Fprintln(stderr, "compare: a target was missed")
		return 1
	}
	return 0
}

// measure runs (or reads) the benchmarks and gathers what the report says
// about the machine and the toolchain.
func measure(ctx context.Context, c config, modDir string, stderr io.Writer) (*Report, error) {
	testArgs := []string{"test", "-run", "^$", "-bench", benchPattern, "-benchmem",
		"-count", fmt.Sprint(c.count), "-benchtime", c.benchtime, "./peers"}

	var raw []byte
	var err error
	if c.in != "" {
		raw, err = os.ReadFile(c.in)
	} else {
		raw, err = goTest(ctx, modDir, testArgs, c.verbose, stderr)
	}
	if err != nil {
		return nil, err
	}
	results, procs, err := Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Results:    results,
		Command:    fmt.Sprintf("cd bench && go run ./cmd/compare -count %d -benchtime %s", c.count, c.benchtime),
		GoTest:     "go " + quoteArgs(testArgs),
		GoVersion:  strings.TrimSpace(goOutput(ctx, modDir, "version")),
		Peers:      strings.Fields(strings.ReplaceAll(goOutput(ctx, modDir, "list", "-m", "-f", "{{.Path}}@{{.Version}}", "github.com/sony/gobreaker/v2", "github.com/failsafe-go/failsafe-go"), "\n", " ")),
		CPU:        cpuModel(),
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: procs,
		At:         time.Now().UTC(),
	}
	if c.write {
		rep.Command += " -write"
	}
	if c.in != "" {
		rep.Command = fmt.Sprintf("%s (figures read from a saved run)", rep.Command)
	}
	return rep, nil
}

func benchModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Path}} {{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	path, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if path != benchModule {
		return "", fmt.Errorf("run from the bench module (%s), not %s", benchModule, path)
	}
	return dir, nil
}

func goTest(ctx context.Context, dir string, args []string, verbose bool, stderr io.Writer) ([]byte, error) {
	fmt.Fprintln(stderr, "compare: go", quoteArgs(args))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		buf.Write(sc.Bytes())
		buf.WriteByte('\n')
		if verbose {
			fmt.Fprintln(stderr, sc.Text())
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("go test: %w\n%s", err, buf.Bytes())
	}
	return buf.Bytes(), nil
}

// goOutput runs a go subcommand for the report's facts; a failure shows as
// "unknown" rather than stopping the comparison.
func goOutput(ctx context.Context, dir string, args ...string) string {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$|() *") {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// Markers delimit the part of BENCHMARKS.md that -write replaces; text
// outside them is kept.
const (
	beginMarker = "<!-- compare:begin -->"
	endMarker   = "<!-- compare:end -->"
)

const fileIntro = `# Benchmarks

The relay's circuit breaker and bulkhead against the libraries they would
otherwise be: sony/gobreaker v2 and failsafe-go. Peers run in the same
process, interleaved, in one run on one machine, so the ratios are what to
read; absolute figures move with the machine and its load. The peers live in
the separate module bench/, so they never become dependencies of the relay.

`

func updateFile(path, generated string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	block := beginMarker + "\n" + generated + endMarker + "\n"
	var out string
	text := string(old)
	i, j := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	switch {
	case len(old) == 0:
		out = fileIntro + block
	case i >= 0 && j > i:
		out = text[:i] + block + strings.TrimPrefix(text[j+len(endMarker):], "\n")
	default:
		out = strings.TrimRight(text, "\n") + "\n\n" + block
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
