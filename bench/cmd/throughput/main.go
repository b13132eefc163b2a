// Command throughput measures the relay against what it replaces, on one
// broker and in one run:
//
//   - the work path (task → HTTP POST → reply with confirm → ack) of the
//     relay, every protection on, against the simplest correct
//     amqp091-go loop, alternating the two round by round: tasks/s and
//     publish-to-reply latency (p50, p99);
//   - the same work path on quorum queues (the relay with
//     amqp.queue_type quorum, the plain loop declaring its queue with
//     x-queue-type quorum), against the plain loop on quorum queues;
//   - the outbound path (a full queue republished to an exchange, each
//     message acked after the destination's confirm) against RabbitMQ's
//     shovel plugin: messages/s;
//   - the relay process's peak resident set and CPU seconds per 10,000
//     tasks, read from /proc;
//   - the allocations of the breaker's and bulkhead's hot paths.
//
// It prints one summary line of ratios; -write puts the figures, the
// command and the machine into the relay's BENCHMARKS.md between the
// throughput markers. Every queue, exchange and shovel it creates carries
// a per-run prefix and is deleted before it exits; it talks to nothing
// but 127.0.0.1.
//
// Run it from the bench module, as root when the shovel is wanted (its
// plugin is enabled with rabbitmq-plugins, and left enabled):
//
//	cd bench && go run ./cmd/throughput -write
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vsm-relay/relay/bench/internal/topology"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	url              string
	rounds           int
	warmup, duration time.Duration
	inflight         int
	prefetch         int
	workers          int
	bulkhead         int
	body             int
	messages         int
	outboundPrefetch int
	relayBin         string
	rev              string
	only             string
	shovel           bool
	quorum           bool
	write            bool
	out              string
	profile          string
	verbose          bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("throughput", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.url, "url", "amqp://guest:guest@127.0.0.1:5672/", "broker on this host")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs both implementations, in alternating order")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "work path: load before the measured window opens")
	fs.DurationVar(&o.duration, "duration", 8*time.Second, "work path: length of the measured window")
	fs.IntVar(&o.inflight, "inflight", 128, "work path: tasks kept outstanding")
	fs.IntVar(&o.prefetch, "prefetch", 64, "work path: prefetch of the relay and the plain loop")
	fs.IntVar(&o.workers, "workers", 32, "work path: plain-loop workers and the relay target's concurrency")
	fs.IntVar(&o.bulkhead, "bulkhead", 64, "work path: size of the relay target's bulkhead")
	fs.IntVar(&o.body, "body", 256, "message body in bytes")
	fs.IntVar(&o.messages, "messages", 30000, "outbound path: messages per drain")
	fs.IntVar(&o.outboundPrefetch, "outbound-prefetch", 1000, "outbound path: prefetch of the relay (and its bulkhead) and the shovel")
	fs.StringVar(&o.relayBin, "relay", "", "relay binary to measure (default: build ./cmd/relay of the relay module)")
	fs.StringVar(&o.rev, "rev", "", "build the relay from this git revision instead of the working tree (uncommitted edits left out)")
	fs.StringVar(&o.only, "only", "", "run only the work path on classic queues (work), on quorum queues (quorum), or the outbound path (outbound)")
	fs.BoolVar(&o.quorum, "quorum", true, "measure the work path on quorum queues too")
	fs.BoolVar(&o.shovel, "shovel", true, "measure the shovel (enables the rabbitmq_shovel plugin if needed)")
	fs.BoolVar(&o.write, "write", false, "refresh the throughput section of BENCHMARKS.md")
	fs.StringVar(&o.out, "out", "", "file -write refreshes (default: BENCHMARKS.md of the relay module)")
	fs.StringVar(&o.profile, "profile", "", "run the relay under cmd/relayprof and write its CPU, allocation and heap profiles into this directory")
	fs.BoolVar(&o.verbose, "v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "throughput:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := measure(ctx, o, stderr)
	if rep != nil && (len(rep.Work) > 0 || len(rep.Quorum) > 0 || len(rep.Outbound) > 0) {
		fmt.Fprint(stdout, rep.Markdown())
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, rep.Summary())
	}
	if err != nil {
		fmt.Fprintln(stderr, "throughput:", err)
		return 1
	}
	if o.write {
		path := o.out
		if path == "" {
			dir, err := relayModuleDir(ctx)
			if err != nil {
				fmt.Fprintln(stderr, "throughput:", err)
				return 1
			}
			path = filepath.Join(dir, "BENCHMARKS.md")
		}
		if err := writeSection(path, rep.Markdown()); err != nil {
			fmt.Fprintln(stderr, "throughput:", err)
			return 1
		}
		fmt.Fprintln(stderr, "throughput: wrote", path)
	}
	return 0
}

func (o *options) validate() error {
	u, err := url.Parse(o.url)
	if err != nil {
		return fmt.Errorf("-url: %v", err)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return fmt.Errorf("-url: the harness talks only to a broker on this host, not %q", h)
	}
	switch {
	case o.rounds < 1:
		return errors.New("-rounds must be at least 1")
	case o.duration <= 0 || o.warmup < 0:
		return errors.New("-duration must be above zero and -warmup not negative")
	case o.inflight < 1 || o.prefetch < 1 || o.workers < 1 || o.bulkhead < 1 || o.body < 1:
		return errors.New("-inflight, -prefetch, -workers, -bulkhead and -body must be at least 1")
	case o.messages < 100 || o.outboundPrefetch < 1:
		return errors.New("-messages must be at least 100 and -outbound-prefetch at least 1")
	case o.rev != "" && o.relayBin != "":
		return errors.New("-rev and -relay exclude each other")
	case o.rev != "" && strings.HasPrefix(o.rev, "-"):
		return fmt.Errorf("-rev: %q is not a revision", o.rev)
	case o.only != "" && o.only != "work" && o.only != "quorum" && o.only != "outbound":
		return fmt.Errorf("-only: want work, quorum or outbound, not %q", o.only)
	case o.only == "quorum" && !o.quorum:
		return errors.New("-only quorum and -quorum=false exclude each other")
	}
	if o.profile != "" {
		abs, err := filepath.Abs(o.profile)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return fmt.Errorf("-profile: %w", err)
		}
		o.profile = abs
	}
	return nil
}

// command is how the run is shown in BENCHMARKS.md.
func command(args []string) string {
	return strings.TrimSpace("cd bench && go run ./cmd/throughput " + strings.Join(args, " "))
}

// measure runs everything o asks for and always cleans up after itself.
func measure(ctx context.Context, o options, stderr io.Writer) (rep *Report, err error) {
	logf := func(format string, args ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, "throughput: "+format+"\n", args...)
		}
	}
	h := &harness{o: o, logf: logf, prefix: topology.Prefix()}
	tr, err := topology.Dial(o.url)
	if err != nil {
		return nil, fmt.Errorf("connecting to the broker: %w", err)
	}
	h.topo = tr
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if cerr := h.cleanup(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()

	rep = &Report{
		When:    time.Now(),
		Command: command(os.Args[1:]),
		Machine: readMachine(ctx, tr.Conn().Properties),
		Settings: Settings{
			Rounds: o.rounds, Warmup: o.warmup, Duration: o.duration, BodyBytes: o.body, InFlight: o.inflight,
			Prefetch: o.prefetch, Workers: o.workers, Bulkhead: o.bulkhead, Messages: o.messages, OutboundPrefetch: o.outboundPrefetch,
		},
	}
	if a, err := measureAllocs(); err != nil {
		rep.AllocsErr = err.Error()
	} else {
		rep.Allocs = a
	}
	if err := h.prepare(ctx); err != nil {
		return rep, err
	}
	rep.Relay = h.source
	if o.only == "" || o.only == "work" {
		if err := h.work(ctx, rep); err != nil {
			return rep, fmt.Errorf("work path: %w", err)
		}
	}
	if o.quorum && (o.only == "" || o.only == "quorum") {
		if err := h.quorum(ctx, rep); err != nil {
			return rep, fmt.Errorf("work path on quorum queues: %w", err)
		}
	}
	if o.only == "" || o.only == "outbound" {
		if err := h.outbound(ctx, rep); err != nil {
			return rep, fmt.Errorf("outbound path: %w", err)
		}
	}
	return rep, nil
}

// relayModuleDir is the root of the relay module the bench module
// replaces, where ./cmd/relay and BENCHMARKS.md live.
func relayModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/vsm-relay/relay").Output()
	if err != nil {
		return "", fmt.Errorf("locating the relay module: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// benchModuleDir is the root of this module, where cmd/relayprof lives.
func benchModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("locating the bench module: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
