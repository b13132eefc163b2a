// Command callbench measures the relay's Go client against the request/
// reply loop an agent writes by hand on amqp091-go, in one run: calls per
// second and call latency (p50, p99) of client.Call and of the plain
// loop with 1, 8 and 64 concurrent callers, the two alternating round by
// round, and their ratios.
//
// The tasks are answered by a responder in this process that stands in
// for the relay (it consumes the queue and replies at once, as the relay
// does for a 200), so that the figures are the callers' and the broker's.
// The queue carries a per-run prefix and is deleted before it exits; it
// talks to nothing but 127.0.0.1.
//
//	cd bench && go run ./cmd/callbench -write
//
// -write puts the figures, the command and the machine into the relay's
// BENCHMARKS.md between the call markers.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vsm-relay/relay/bench/internal/topology"
	"github.com/vsm-relay/relay/client"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	url              string
	rounds           int
	warmup, duration time.Duration
	callers          []int
	body             int
	responders       int
	prefetch         int
	write            bool
	out              string
	verbose          bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("callbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var callers string
	fs.StringVar(&o.url, "url", "amqp://guest:guest@127.0.0.1:5672/", "broker on this host")
	fs.IntVar(&o.rounds, "rounds", 10, "rounds; each runs both implementations at every concurrency, in alternating order")
	fs.DurationVar(&o.warmup, "warmup", 100*time.Millisecond, "load before each measured window")
	fs.DurationVar(&o.duration, "duration", 500*time.Millisecond, "length of each measured window; short windows, many rounds: the load of other processes changes less within a pair")
	fs.StringVar(&callers, "callers", "1,8,64", "concurrent callers, comma-separated")
	fs.IntVar(&o.body, "body", 256, "task body in bytes")
	fs.IntVar(&o.responders, "responders", 2, "consumers of the responder standing in for the relay")
	fs.IntVar(&o.prefetch, "prefetch", 128, "prefetch of each responder consumer")
	fs.BoolVar(&o.write, "write", false, "refresh the call section of BENCHMARKS.md")
	fs.StringVar(&o.out, "out", "", "file -write refreshes (default: BENCHMARKS.md of the relay module)")
	fs.BoolVar(&o.verbose, "v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.callers, err = parseCallers(callers); err != nil {
		fmt.Fprintln(stderr, "callbench: -callers:", err)
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "callbench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := measure(ctx, o, func(format string, args ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, "callbench: "+format+"\n", args...)
		}
	})
	if rep != nil && len(rep.Rounds) > 0 {
		fmt.Fprint(stdout, rep.Markdown())
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, rep.Summary())
	}
	if err != nil {
		fmt.Fprintln(stderr, "callbench:", err)
		return 1
	}
	if o.write {
		path := o.out
		if path == "" {
			dir, err := relayModuleDir(ctx)
			if err != nil {
				fmt.Fprintln(stderr, "callbench:", err)
				return 1
			}
			path = filepath.Join(dir, "BENCHMARKS.md")
		}
		if err := writeSection(path, rep.Markdown()); err != nil {
			fmt.Fprintln(stderr, "callbench:", err)
			return 1
		}
		fmt.Fprintln(stderr, "callbench: wrote", path)
	}
	return 0
}

func parseCallers(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a number of callers", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func (o *options) validate() error {
	u, err := url.Parse(o.url)
	if err != nil {
		return fmt.Errorf("-url: %v", err)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return fmt.Errorf("-url: the benchmark talks only to a broker on this host, not %q", h)
	}
	switch {
	case o.rounds < 1:
		return errors.New("-rounds must be at least 1")
	case o.duration <= 0 || o.warmup < 0:
		return errors.New("-duration must be above zero and -warmup not negative")
	case o.body < 1 || o.responders < 1 || o.prefetch < 1:
		return errors.New("-body, -responders and -prefetch must be at least 1")
	}
	return nil
}

// measure runs the rounds and always deletes its queue.
func measure(ctx context.Context, o options, logf func(string, ...any)) (rep *Report, err error) {
	topo, err := topology.Dial(o.url)
	if err != nil {
		return nil, fmt.Errorf("connecting to the broker: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if cerr := topo.Cleanup(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	queue := topology.Prefix() + ".calls"
	if err := topo.Queue(queue); err != nil {
		return nil, err
	}
	resp, err := startResponder(o.url, queue, o.responders, o.prefetch)
	if err != nil {
		return nil, fmt.Errorf("responder: %w", err)
	}
	defer resp.close()

	rep = &Report{
		When:    time.Now(),
		Command: strings.TrimSpace("cd bench && go run ./cmd/callbench " + strings.Join(os.Args[1:], " ")),
		Machine: readMachine(ctx, topo.Conn().Properties),
		Settings: Settings{Rounds: o.rounds, Warmup: o.warmup, Duration: o.duration, BodyBytes: o.body,
			Responders: o.responders, Prefetch: o.prefetch},
	}
	body := make([]byte, o.body)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	for r := range o.rounds {
		clientFirst := r%2 == 0
		for _, n := range o.callers {
			cr := CallRound{Round: r + 1, Callers: n, ClientFirst: clientFirst}
			if err := pair(ctx, o, queue, body, &cr, logf); err != nil {
				return rep, fmt.Errorf("round %d, %d callers: %w", r+1, n, err)
			}
			rep.Rounds = append(rep.Rounds, cr)
		}
	}
	return rep, nil
}

// pair measures both implementations back to back, each on a connection
// of its own opened for the pair: a connection's luck (the broker
// process serving it, where its socket lands) then varies from pair to
// pair instead of tilting every round of the run the same way.
func pair(ctx context.Context, o options, queue string, body []byte, cr *CallRound, logf func(string, ...any)) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := client.Dial(dctx, o.url, client.WithName("callbench client"))
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	plain, err := newPlainCaller(o.url)
	if err != nil {
		return fmt.Errorf("plain loop: %w", err)
	}
	defer plain.close()

	callClient := func(ctx context.Context, body []byte) ([]byte, error) {
		r, err := c.Call(ctx, queue, body)
		if err != nil {
			return nil, err
		}
		return r.Body, nil
	}
	callPlain := func(ctx context.Context, body []byte) ([]byte, error) { return plain.call(ctx, queue, body) }
	order := []struct {
		name string
		fn   callFunc
		into *Figures
	}{{"client.Call", callClient, &cr.Client}, {"plain loop", callPlain, &cr.Plain}}
	if !cr.ClientFirst {
		order[0], order[1] = order[1], order[0]
	}
	for _, impl := range order {
		f, err := load(ctx, impl.fn, cr.Callers, o.warmup, o.duration, body)
		if err != nil {
			return fmt.Errorf("%s: %w", impl.name, err)
		}
		*impl.into = f
		logf("round %d: %s with %d callers: %.0f calls/s, p50 %s, p99 %s", cr.Round, impl.name, cr.Callers, f.Rate, f.P50, f.P99)
	}
	return nil
}

// relayModuleDir is the root of the relay module the bench module
// replaces, where BENCHMARKS.md lives.
func relayModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/vsm-relay/relay").Output()
	if err != nil {
		return "", fmt.Errorf("locating the relay module: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
