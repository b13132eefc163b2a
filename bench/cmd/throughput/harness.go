package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/vsm-relay/relay/bench/internal/procstat"
	"github.com/vsm-relay/relay/bench/internal/relayproc"
	"github.com/vsm-relay/relay/bench/internal/shovel"
	"github.com/vsm-relay/relay/bench/internal/stats"
	"github.com/vsm-relay/relay/bench/internal/topology"
	"github.com/vsm-relay/relay/bench/internal/workload"
)

// harness holds one run's resources, all released by cleanup.
type harness struct {
	o      options
	logf   func(string, ...any)
	prefix string
	topo   *topology.Tracker
	hz     int64

	tmp      string
	source   string // what the relay was built from
	relayBin string
	profBin  string
	plainBin string
	echo     *workload.Echo

	mu      sync.Mutex
	procs   []*relayproc.Process
	shovels []string
}

// redelivery is the work queue's one delayed-redelivery step: on, like
// every other protection, though a healthy run never uses it.
const redelivery = 5 * time.Second

func (h *harness) name(suffix string) string { return h.prefix + "." + suffix }

// instance is the relay's instance id: one routing-key word.
func (h *harness) instance() string { return strings.ReplaceAll(h.prefix, ".", "-") }

func (h *harness) prepare(ctx context.Context) error {
	h.hz = procstat.ClockTicks()
	tmp, err := os.MkdirTemp("", "relaybench-")
	if err != nil {
		return err
	}
	h.tmp = tmp
	h.relayBin = h.o.relayBin
	if h.relayBin == "" {
		dir, err := relayModuleDir(ctx)
		if err != nil {
			return err
		}
		h.source = describeSource(ctx, dir, h.o.rev)
		if h.o.rev != "" {
			src := filepath.Join(tmp, "src")
			if err := exportRevision(ctx, dir, h.o.rev, src); err != nil {
				return err
			}
			dir = src
		}
		h.relayBin = filepath.Join(tmp, "relay")
		h.logf("building the relay from %s", h.source)
		if err := goBuild(ctx, dir, h.relayBin, "./cmd/relay"); err != nil {
			return err
		}
	}
	dir, err := benchModuleDir(ctx)
	if err != nil {
		return err
	}
	h.plainBin = filepath.Join(tmp, "plainloop")
	if err := goBuild(ctx, dir, h.plainBin, "./cmd/plainloop"); err != nil {
		return err
	}
	if h.o.profile != "" {
		h.profBin = filepath.Join(tmp, "relayprof")
		if err := goBuild(ctx, dir, h.profBin, "./cmd/relayprof"); err != nil {
			return err
		}
	}
	h.topo.TrackExchange(h.name("pain"), h.name("pleasure"), h.name("health"))
	return nil
}

// exportRevision writes the files of rev in the repository at dir into
// dst, leaving the repository and its working tree untouched.
func exportRevision(ctx context.Context, dir, rev, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "-C", dir, "archive", "--format=tar", rev)
	extract := exec.CommandContext(ctx, "tar", "-x", "-C", dst)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	extract.Stdin = pipe
	var archErr, extErr bytes.Buffer
	archive.Stderr, extract.Stderr = &archErr, &extErr
	if err := extract.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		_ = extract.Wait()
		return fmt.Errorf("git archive %s: %w: %s", rev, err, strings.TrimSpace(archErr.String()))
	}
	if err := extract.Wait(); err != nil {
		return fmt.Errorf("extracting %s: %w: %s", rev, err, strings.TrimSpace(extErr.String()))
	}
	return nil
}

// describeSource names the commit the relay is built from (rev, or the
// working tree's HEAD when rev is empty) and, for the working tree,
// whether uncommitted edits of the relay (outside bench/ and the
// Markdown documents, which no build reads) are in the build.
func describeSource(ctx context.Context, dir, rev string) string {
	working := rev == ""
	if working {
		rev = "HEAD"
	}
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--short", rev+"^{commit}").Output()
	if err != nil {
		return "an unknown revision"
	}
	desc := "commit " + strings.TrimSpace(string(out))
	if !working {
		return desc
	}
	dirty, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--", ".", ":(exclude)bench", ":(exclude)*.md").Output()
	if err == nil && len(bytes.TrimSpace(dirty)) > 0 {
		desc += " with uncommitted edits"
	}
	return desc
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, strings.TrimSpace(errOut.String()))
	}
	return nil
}

func (h *harness) baseConfig() relayproc.Config {
	return relayproc.Config{
		Instance: h.instance(), URL: h.o.url, Prefetch: h.o.prefetch,
		PainExchange: h.name("pain"), PleasureExchange: h.name("pleasure"), HealthExchange: h.name("health"),
	}
}

// startRelay writes c to a file and runs the relay on it (under
// relayprof when -profile is set, its profiles named after file).
func (h *harness) startRelay(ctx context.Context, c relayproc.Config, file string) (*relayproc.Process, error) {
	path := filepath.Join(h.tmp, file)
	if err := os.WriteFile(path, c.YAML(), 0o600); err != nil {
		return nil, err
	}
	bin, args := h.relayBin, []string{"run", "--config", path, "--log-format", "json"}
	if h.o.profile != "" {
		stem := filepath.Join(h.o.profile, strings.TrimSuffix(file, ".yaml"))
		bin, args = h.profBin, []string{"--config", path, "--cpuprofile", stem + ".cpu.pprof",
			"--allocsprofile", stem + ".allocs.pprof", "--heapprofile", stem + ".heap.pprof"}
	}
	return h.start(ctx, bin, args, relayproc.ParseRunning)
}

func (h *harness) start(ctx context.Context, bin string, args []string, ready func([]byte) (string, bool)) (*relayproc.Process, error) {
	p, err := relayproc.StartUntil(ctx, bin, args, time.Minute, ready)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p, nil
}

// startPlain runs the plain loop in its own process on queue; a
// queueType has it declare the queue as that type first.
func (h *harness) startPlain(ctx context.Context, queue, queueType string) (*relayproc.Process, error) {
	args := []string{"-url", h.o.url, "-queue", queue, "-target", h.echo.URL(),
		"-prefetch", strconv.Itoa(h.o.prefetch), "-workers", strconv.Itoa(h.o.workers), "-name", relayproc.TargetName}
	if queueType != "" {
		args = append(args, "-queue-type", queueType)
	}
	return h.start(ctx, h.plainBin, args, func(line []byte) (string, bool) {
		return "", strings.TrimSpace(string(line)) == plainReady
	})
}

// plainReady is the line cmd/plainloop logs once it consumes.
const plainReady = `{"msg":"plain loop running"}`

func (h *harness) cleanup(ctx context.Context) error {
	var errs []error
	h.mu.Lock()
	procs, shovels := h.procs, h.shovels
	h.procs, h.shovels = nil, nil
	h.mu.Unlock()
	for _, p := range procs {
		if !p.Exited() {
			_ = p.Stop(15 * time.Second)
		}
	}
	for _, s := range shovels {
		if err := shovel.Clear(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	if h.echo != nil {
		errs = append(errs, h.echo.Close())
	}
	errs = append(errs, h.topo.Cleanup(ctx))
	if h.tmp != "" {
		errs = append(errs, os.RemoveAll(h.tmp))
	}
	return errors.Join(errs...)
}

func (h *harness) body() []byte { return bytes.Repeat([]byte("r"), h.o.body) }

// workPhase is one run of the work path on one queue type.
type workPhase struct {
	// queueType is amqp.queue_type of the relay and the type the plain
	// loop declares its queue as; "" leaves both as before: classic.
	queueType string
	// relayQ and plainQ are the phase's queues, distinct from every other
	// phase's: the relay refuses a queue that exists as another type.
	relayQ, plainQ string
	// file names the relay's configuration (and its profiles).
	file string
}

// classicWork and quorumWork are the work path's two phases.
func (h *harness) classicWork() workPhase {
	return workPhase{relayQ: h.name("work"), plainQ: h.name("plain"), file: "work.yaml"}
}

func (h *harness) quorumWork() workPhase {
	return workPhase{queueType: "quorum", relayQ: h.name("qwork"), plainQ: h.name("qplain"), file: "work-quorum.yaml"}
}

// work measures the work path on classic queues.
func (h *harness) work(ctx context.Context, rep *Report) error {
	res, err := h.workRounds(ctx, h.classicWork())
	rep.Work, rep.WorkPeakRSS, rep.PlainPeakRSS = res.rounds, res.relayPeak, res.plainPeak
	return err
}

// quorum measures the work path on quorum queues.
func (h *harness) quorum(ctx context.Context, rep *Report) error {
	res, err := h.workRounds(ctx, h.quorumWork())
	rep.Quorum, rep.QuorumPeakRSS, rep.QuorumPlainPeakRSS = res.rounds, res.relayPeak, res.plainPeak
	return err
}

type workResult struct {
	rounds               []WorkRound
	relayPeak, plainPeak int64
}

// workRounds alternates the relay and the plain loop on the work path of
// phase. The rounds finished before a failure are returned with it.
func (h *harness) workRounds(ctx context.Context, ph workPhase) (workResult, error) {
	var res workResult
	if h.echo == nil {
		echo, err := workload.StartEcho()
		if err != nil {
			return res, err
		}
		h.echo = echo
	}
	relayQ, plainQ := ph.relayQ, ph.plainQ
	h.topo.Track(relayQ, relayQ+".dlq", relayQ+".delay."+redelivery.String())
	if ph.queueType == "" {
		if err := h.topo.Queue(plainQ); err != nil {
			return res, err
		}
	} else {
		h.topo.Track(plainQ) // the plain loop declares it
	}
	c := h.baseConfig()
	c.QueueType = ph.queueType
	c.WorkQueue, c.TargetURL, c.Redelivery = relayQ, h.echo.URL(), []time.Duration{redelivery}
	c.Concurrency, c.Bulkhead = h.o.workers, h.o.bulkhead
	h.logf("starting the relay and the plain loop for the work path (%s queues)", queueKind(ph.queueType))
	proc, err := h.startRelay(ctx, c, ph.file)
	if err != nil {
		return res, err
	}
	plainProc, err := h.startPlain(ctx, plainQ, ph.queueType)
	if err != nil {
		return res, err
	}

	for i := range h.o.rounds {
		round := WorkRound{RelayFirst: i%2 == 0}
		runs := []func() error{
			func() (err error) { round.Relay, err = h.tasks(ctx, relayQ, proc); return err },
			func() (err error) { round.Plain, err = h.tasks(ctx, plainQ, plainProc); return err },
		}
		if !round.RelayFirst {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, r := range runs {
			if err := r(); err != nil {
				return res, err
			}
			if err := h.topo.Purge(relayQ, plainQ); err != nil {
				return res, err
			}
		}
		h.logf("work round %d (%s): relay %.0f tasks/s, plain %.0f tasks/s", i+1, queueKind(ph.queueType), round.Relay.Rate, round.Plain.Rate)
		res.rounds = append(res.rounds, round)
	}
	mem, err := procstat.ReadMemory(proc.PID())
	if err != nil {
		return res, fmt.Errorf("reading the relay's memory: %w", err)
	}
	res.relayPeak = mem.Peak
	if mem, err = procstat.ReadMemory(plainProc.PID()); err != nil {
		return res, fmt.Errorf("reading the plain loop's memory: %w", err)
	}
	res.plainPeak = mem.Peak
	for _, p := range []*relayproc.Process{proc, plainProc} {
		if err := p.Stop(15 * time.Second); err != nil {
			return res, fmt.Errorf("stopping %w: %s", err, p.Tail())
		}
	}
	return res, nil
}

// queueKind names a queue type for logs; "" is classic.
func queueKind(queueType string) string {
	if queueType == "" {
		return "classic"
	}
	return queueType
}

// tasks runs one closed-loop round against queue and reads the CPU time
// proc (the relay or the plain loop) used across the measured window.
func (h *harness) tasks(ctx context.Context, queue string, proc *relayproc.Process) (TaskFigures, error) {
	var before, after procstat.Ticks
	var tickErr error
	load := workload.TaskLoad{
		URL: h.o.url, Queue: queue, Body: h.body(), InFlight: h.o.inflight,
		Warmup: h.o.warmup, Duration: h.o.duration,
	}
	if proc != nil {
		load.OnWindow = func(open bool) {
			t, err := procstat.ReadTicks(proc.PID())
			if err != nil {
				tickErr = err
			}
			if open {
				before = t
			} else {
				after = t
			}
		}
	}
	res, err := workload.RunTasks(ctx, load)
	if err != nil {
		if proc != nil && proc.Exited() {
			return TaskFigures{}, fmt.Errorf("%w (the relay exited: %s)", err, proc.Tail())
		}
		return TaskFigures{}, err
	}
	if res.Replies == 0 {
		return TaskFigures{}, fmt.Errorf("no replies on %s within the window", queue)
	}
	lat := stats.Summarize(res.Latencies)
	f := TaskFigures{Rate: res.Rate(), P50: lat.P50, P99: lat.P99, Failed: res.Failed, Lost: res.Lost + res.Nacked}
	if proc != nil {
		if tickErr != nil {
			return f, fmt.Errorf("reading the relay's CPU time: %w", tickErr)
		}
		f.CPUPer10k = after.Sub(before).Seconds(h.hz) / float64(res.Replies) * 10000
	}
	return f, nil
}

// outbound alternates the relay and the shovel draining a full queue.
func (h *harness) outbound(ctx context.Context, rep *Report) error {
	dest, destQ, key := h.name("dest"), h.name("dest.q"), "moved"
	relaySrc, shovelSrc := h.name("out"), h.name("shovel")
	if err := h.topo.Exchange(dest); err != nil {
		return err
	}
	for _, q := range []string{destQ, relaySrc, shovelSrc} {
		if err := h.topo.Queue(q); err != nil {
			return err
		}
	}
	h.topo.Track(relaySrc + ".dlq")
	if err := h.topo.Bind(destQ, dest, key); err != nil {
		return err
	}

	withShovel := h.o.shovel
	if withShovel {
		enabledNow, err := shovel.EnsurePlugin(ctx)
		switch {
		case err != nil:
			withShovel = false
			rep.ShovelNote = fmt.Sprintf("The shovel was not measured: %v.", err)
		case enabledNow:
			rep.ShovelNote = "The harness enabled the broker's `rabbitmq_shovel` plugin for this run (`rabbitmq-plugins enable rabbitmq_shovel`) and left it enabled."
		default:
			rep.ShovelNote = "The broker's `rabbitmq_shovel` plugin was already enabled."
		}
	} else {
		rep.ShovelNote = "The shovel was not measured (-shovel=false)."
	}
	shovelURI := brokerURI(h.o.url)
	rep.ShovelNote += fmt.Sprintf(" The shovel is dynamic (`rabbitmqctl set_parameter shovel`), `ack-mode` on-confirm, `src-prefetch-count` %d, and connects to the broker over TCP on 127.0.0.1 like the relay, so that neither gets the broker's in-process shortcut.", h.o.outboundPrefetch)

	msg := amqp.Publishing{
		Headers:      amqp.Table{"x-relay-exchange": dest, "x-relay-routing-key": key},
		ContentType:  "application/octet-stream",
		DeliveryMode: amqp.Persistent,
		Body:         h.body(),
	}
	depth := func() (int, error) { return h.topo.Depth(destQ) }
	n := h.o.messages

	for i := range h.o.rounds {
		round := OutboundRound{RelayFirst: i%2 == 0}
		relayRun := func() error {
			if err := workload.Prefill(ctx, h.o.url, relaySrc, n, 1000, msg); err != nil {
				return err
			}
			c := h.baseConfig()
			c.OutboundQueue, c.OutboundExchange = relaySrc, dest
			c.OutboundPrefetch, c.OutboundBulkhead = h.o.outboundPrefetch, h.o.outboundPrefetch
			var proc *relayproc.Process
			rate, err := h.drain(ctx, depth, func() error {
				var err error
				proc, err = h.startRelay(ctx, c, fmt.Sprintf("outbound-%d.yaml", i+1))
				return err
			})
			if err != nil {
				return err
			}
			ticks, err := procstat.ReadTicks(proc.PID())
			if err != nil {
				return err
			}
			mem, err := procstat.ReadMemory(proc.PID())
			if err != nil {
				return err
			}
			if err := proc.Stop(15 * time.Second); err != nil {
				return fmt.Errorf("stopping the relay: %w: %s", err, proc.Tail())
			}
			round.Relay, round.RelayPeakRSS = rate, mem.Peak
			round.RelayCPUPer10k = ticks.Seconds(h.hz) / float64(n) * 10000
			return nil
		}
		shovelRun := func() error {
			if !withShovel {
				return nil
			}
			if err := workload.Prefill(ctx, h.o.url, shovelSrc, n, 1000, msg); err != nil {
				return err
			}
			name := h.prefix + "-shovel"
			rate, err := h.drain(ctx, depth, func() error {
				h.mu.Lock()
				h.shovels = append(h.shovels, name)
				h.mu.Unlock()
				return shovel.Set(ctx, name, shovel.Spec{
					SrcURI: shovelURI, SrcQueue: shovelSrc, DestURI: shovelURI, DestExchange: dest, DestKey: key, Prefetch: h.o.outboundPrefetch,
				})
			})
			if err != nil {
				return err
			}
			if err := shovel.Clear(ctx, name); err != nil {
				return err
			}
			h.mu.Lock()
			h.shovels = h.shovels[:len(h.shovels)-1]
			h.mu.Unlock()
			round.Shovel = rate
			return nil
		}
		runs := []func() error{relayRun, shovelRun}
		if !round.RelayFirst {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, r := range runs {
			if err := r(); err != nil {
				return err
			}
			if err := h.topo.Purge(destQ, relaySrc, shovelSrc); err != nil {
				return err
			}
		}
		h.logf("outbound round %d: relay %.0f msg/s, shovel %.0f msg/s", i+1, round.Relay, round.Shovel)
		rep.Outbound = append(rep.Outbound, round)
	}
	return nil
}

// drain starts a mover with start and watches the destination until all
// of -messages have arrived; the rate is read between 10% and 90% of
// them, leaving out the mover's start-up and its tail.
func (h *harness) drain(ctx context.Context, depth func() (int, error), start func() error) (float64, error) {
	n := h.o.messages
	type watched struct {
		points []stats.Point
		err    error
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan watched, 1)
	go func() {
		p, err := workload.WatchDepth(wctx, depth, n, 20*time.Millisecond, 3*time.Minute)
		out <- watched{p, err}
	}()
	if err := start(); err != nil {
		cancel()
		<-out
		return 0, err
	}
	w := <-out
	if w.err != nil {
		return 0, w.err
	}
	rate, ok := stats.CrossingRate(w.points, n/10, n*9/10)
	if !ok {
		return 0, fmt.Errorf("could not read a rate off %d polls", len(w.points))
	}
	return rate, nil
}

// brokerURI is url for the shovel: no trailing slash, which in an AMQP
// URI would name the empty virtual host rather than "/".
func brokerURI(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path, u.RawPath = "", ""
	return u.String()
}
