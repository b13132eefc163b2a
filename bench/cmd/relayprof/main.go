// Command relayprof runs the relay as `relay run --config FILE` does and
// writes a CPU profile (and, if asked, a heap profile) when it stops. The
// throughput harness runs it in place of the relay binary with
// -cpuprofile, so that the profile holds the relay's work under the
// harness's load and none of the load generator's; the relay itself
// needs no profiling endpoint for it.
//
//	cd bench && go run ./cmd/throughput -only work -cpuprofile relay.cpu
//	go tool pprof -top relay.cpu
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/relay"
)

func main() { os.Exit(run()) }

func run() int {
	var path, cpuOut, memOut string
	flag.StringVar(&path, "config", "", "relay configuration file")
	flag.StringVar(&cpuOut, "cpuprofile", "", "write a CPU profile here")
	flag.StringVar(&memOut, "memprofile", "", "write a heap profile here on exit")
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
		return 1
	}
	if memOut != "" {
		f, err := os.Create(memOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relayprof:", err)
			return 1
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, "relayprof:", err)
			return 1
		}
	}
	return 0
}
