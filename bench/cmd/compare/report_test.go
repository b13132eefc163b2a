package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const sampleOutput = `goos: linux
goarch: amd64
pkg: github.com/vsm-relay/relay/bench/peers
cpu: AMD EPYC
BenchmarkBreaker/relay-2         	 1000000	        10.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBreaker/gobreaker-2     	 1000000	        50.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBreaker/failsafe-permit-2         	 1000000	        20.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBreaker/relay-2         	 1000000	        12.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBreaker/gobreaker-2     	 1000000	        40.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBreaker/failsafe-permit-2         	 1000000	        30.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBreaker/relay-2         	 1000000	        11.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBreaker/gobreaker-2     	 1000000	        45.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBreaker/failsafe-permit-2         	 1000000	        25.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBulkhead/relay-2        	 1000000	        30.0 ns/op	      16 B/op	       1 allocs/op
BenchmarkBulkhead/relay-2        	 1000000	        34.0 ns/op	      16 B/op	       1 allocs/op
BenchmarkBulkhead/failsafe-permit-2        	 1000000	        20.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkBulkhead/failsafe-permit-2        	 1000000	        20.0 ns/op	       0 B/op	       0 allocs/op
PASS
ok  	github.com/vsm-relay/relay/bench/peers	12.3s
`

func TestParse(t *testing.T) {
	res, procs, err := Parse(strings.NewReader(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	if procs != 2 {
		t.Errorf("procs = %d, want 2", procs)
	}
	var names []string
	for n := range res {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"BenchmarkBreaker/failsafe-permit", "BenchmarkBreaker/gobreaker", "BenchmarkBreaker/relay",
		"BenchmarkBulkhead/failsafe-permit", "BenchmarkBulkhead/relay"}
	if !slices.Equal(names, want) {
		t.Fatalf("names %q, want %q", names, want)
	}
	if got := res["BenchmarkBulkhead/relay"][1]; got != (Sample{34, 16, 1}) {
		t.Errorf("second bulkhead sample = %+v", got)
	}
	if _, _, err := Parse(strings.NewReader("PASS\n")); err == nil {
		t.Error("Parse of output without results succeeded")
	}
}

func TestSummarize(t *testing.T) {
	s := summarize("x", []Sample{{30, 0, 0}, {10, 8, 1}, {20, 8, 1}, {40, 8, 1}})
	if s.Ns != 25 || s.MinNs != 10 || s.MaxNs != 40 || s.Bytes != 8 || s.Allocs != 1 || s.N != 4 {
		t.Errorf("summarize = %+v", s)
	}
}

func sampleReport(t *testing.T) *Report {
	res, procs, err := Parse(strings.NewReader(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	return &Report{Results: res, Command: "cmd", GoTest: "go test", GoVersion: "go version go1.26.8 linux/amd64",
		CPU: "AMD EPYC", Cores: 2, GOMAXPROCS: procs, At: time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)}
}

func TestTargets(t *testing.T) {
	got := sampleReport(t).Targets()
	want := []Target{
		{"breaker ≤ 0.5× gobreaker `Execute` (one goroutine)", "0.24× (11.0 ÷ 45.0 ns/op)", true, true},
		{"breaker ≤ 0.5× gobreaker `Execute` (parallel)", "", false, false},
		{"bulkhead ≤ 1.2× failsafe-go bulkhead permit (one goroutine)", "1.60× (32.0 ÷ 20.0 ns/op)", false, true},
		{"bulkhead ≤ 1.2× failsafe-go bulkhead permit (parallel)", "", false, false},
		{"breaker 0 allocs/op (one goroutine / parallel)", "0 allocs/op", true, false},
		{"bulkhead 0 allocs/op (one goroutine / parallel)", "1 allocs/op", false, false},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
	if sampleReport(t).AllMet() {
		t.Error("AllMet with missed targets")
	}
}

func TestMarkdown(t *testing.T) {
	md := sampleReport(t).Markdown()
	for _, line := range []string{
		"| relay | 11.0 (10.0–12.0) | 0 | 0 | 0.24× | 0.44× |",
		"| gobreaker `Execute` | 45.0 (40.0–50.0) | 0 | 0 | 1.00× | 1.80× |",
		"| relay | 32.0 (30.0–34.0) | 16 | 1 | 1.60× |",
		"| failsafe-go executor `Run` | not measured | | | |",
		"| bulkhead ≤ 1.2× failsafe-go bulkhead permit (one goroutine) | 1.60× (32.0 ÷ 20.0 ns/op) | **no** |",
		"- CPU: AMD EPYC, 2 cores (GOMAXPROCS 2)",
		"Each figure is the median of 3 runs",
	} {
		if !strings.Contains(md, line) {
			t.Errorf("markdown lacks %q:\n%s", line, md)
		}
	}
}

func TestUpdateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := updateFile(path, "first\n"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if want := fileIntro + beginMarker + "\nfirst\n" + endMarker + "\n"; string(data) != want {
		t.Fatalf("new file:\n%s\nwant\n%s", data, want)
	}
	edited := "# Mine\n\nhand-written\n\n" + beginMarker + "\nfirst\n" + endMarker + "\n\nafter\n"
	os.WriteFile(path, []byte(edited), 0o644)
	if err := updateFile(path, "second\n"); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if want := "# Mine\n\nhand-written\n\n" + beginMarker + "\nsecond\n" + endMarker + "\n\nafter\n"; string(data) != want {
		t.Errorf("refreshed file:\n%s\nwant\n%s", data, want)
	}
	os.WriteFile(path, []byte("# Other\n"), 0o644)
	updateFile(path, "third\n")
	data, _ = os.ReadFile(path)
	if want := "# Other\n\n" + beginMarker + "\nthird\n" + endMarker + "\n"; string(data) != want {
		t.Errorf("file without markers:\n%s\nwant\n%s", data, want)
	}
}
