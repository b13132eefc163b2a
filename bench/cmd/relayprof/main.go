// Command relayprof runs the relay as `relay run --config FILE` does and
// writes profiles: CPU over its whole run, and when it stops, the
// allocations it made and the heap at its peak in-use size seen by a
// sampler. The throughput harness runs it in place of the relay binary
// with -profile, so that the profiles hold the relay's work under the
// harness's load and none of the load generator's; the relay itself needs
// no profiling endpoint for it.
//
//	cd bench && go run ./cmd/throughput -only work -profile prof
//	go tool pprof -top prof/work.cpu.pprof
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/relay"
)

func main() { os.Exit(run()) }

func run() int {
	var path, cpuOut, allocsOut, heapOut string
	flag.StringVar(&path, "config", "", "relay configuration file")
	flag.StringVar(&cpuOut, "cpuprofile", "", "write a CPU profile here")
	flag.StringVar(&allocsOut, "allocsprofile", "", "write the allocations profile here on exit")
	flag.StringVar(&heapOut, "heapprofile", "", "write the heap profile at the largest in-use size seen here on exit")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
		return 2
	}
	r, err := relay.New(cfg, relay.Options{Logger: log, Version: "relayprof"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
		return 2
	}
	relay.TuneGC() // as relay run does
	if cpuOut != "" {
		f, err := os.Create(cpuOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relayprof:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "relayprof:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	peak := newHeapPeak()
	if heapOut != "" {
		go peak.watch()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runErr := r.Run(ctx)
	peak.stop()
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", runErr)
		return 1
	}
	if allocsOut != "" {
		if err := writeProfile(allocsOut, func(f *os.File) error { return pprof.Lookup("allocs").WriteTo(f, 0) }); err != nil {
			fmt.Fprintln(os.Stderr, "relayprof:", err)
			return 1
		}
	}
	if heapOut != "" {
		if err := writeProfile(heapOut, func(f *os.File) error { _, err := f.Write(peak.profile()); return err }); err != nil {
			fmt.Fprintln(os.Stderr, "relayprof:", err)
			return 1
		}
	}
	return 0
}

func writeProfile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// heapPeak keeps the heap profile taken when the in-use heap was largest,
// sampling every 250ms: a profile at exit would show a drained relay.
type heapPeak struct {
	done  chan struct{}
	mu    sync.Mutex
	inuse uint64
	snap  []byte
}

func newHeapPeak() *heapPeak {
	return &heapPeak{done: make(chan struct{})}
}

func (h *heapPeak) watch() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var ms runtime.MemStats
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		runtime.ReadMemStats(&ms)
		h.mu.Lock()
		bigger := ms.HeapInuse > h.inuse
		h.mu.Unlock()
		if !bigger {
			continue
		}
		var buf bytes.Buffer
		if pprof.Lookup("heap").WriteTo(&buf, 0) == nil {
			h.mu.Lock()
			h.inuse, h.snap = ms.HeapInuse, buf.Bytes()
			h.mu.Unlock()
		}
	}
}

func (h *heapPeak) stop() {
	select {
	case <-h.done:
	default:
		close(h.done)
	}
}

func (h *heapPeak) profile() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snap
}
