// Command demo-downstream is a small HTTP service for trying the relay: it
// echoes every request as JSON, and its failure rate and latency can be
// changed while it runs, so that one can watch a circuit breaker open,
// tasks wait in the broker, and everything recover.
//
//	demo-downstream [--listen 127.0.0.1:8081] [--failure-rate 0] [--latency 0s] [--failure-status 503]
//
// It listens on 127.0.0.1 only, since anyone who can reach it can make it
// fail; give --listen :8081 (as the compose file does, through
// DEMO_LISTEN) to serve other hosts or containers.
//
// Each flag's default comes from the environment: DEMO_LISTEN,
// DEMO_FAILURE_RATE, DEMO_LATENCY, DEMO_FAILURE_STATUS. At run time:
//
//	curl -X POST localhost:8081/admin/config -d '{"failure_rate":1}'
//	curl -X POST localhost:8081/admin/config -d '{"failure_rate":0,"latency":"200ms"}'
//	curl localhost:8081/admin/config
//	curl localhost:8081/admin/stats
//
// POST / (or any path outside /admin and /healthz) waits the latency, then
// either fails with failure_status (a share failure_rate of the requests)
// or answers 200 with {"echo": <the body>, "method": ..., "path": ...,
// "content_type": ..., "correlation_id": ..., "idempotency_key": ...}.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stderr)) }

// defaultListen keeps the demo, whose faults anyone reaching it can set,
// on this machine.
const defaultListen = "127.0.0.1:8081"

// config is the command line after the environment's defaults.
type config struct {
	listen   string
	settings Settings
}

// parseArgs reads the flags, each defaulting to its DEMO_* variable.
func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("demo-downstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	listen := fs.String("listen", env("DEMO_LISTEN", defaultListen), "host:port to serve on; :8081 for every interface ($DEMO_LISTEN)")
	rate := fs.String("failure-rate", env("DEMO_FAILURE_RATE", "0"), "share of requests that fail, 0 to 1 ($DEMO_FAILURE_RATE)")
	latency := fs.String("latency", env("DEMO_LATENCY", "0s"), "delay before every answer ($DEMO_LATENCY)")
	status := fs.String("failure-status", env("DEMO_FAILURE_STATUS", "503"), "HTTP status of a failure ($DEMO_FAILURE_STATUS)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	c.listen = *listen
	if c.settings.FailureRate, err = strconv.ParseFloat(*rate, 64); err != nil {
		return c, fmt.Errorf("--failure-rate: %q is not a number", *rate)
	}
	if c.settings.Latency, err = time.ParseDuration(*latency); err != nil {
		return c, fmt.Errorf("--latency: %q is not a duration such as 200ms", *latency)
	}
	if c.settings.FailureStatus, err = strconv.Atoi(*status); err != nil {
		return c, fmt.Errorf("--failure-status: %q is not a number", *status)
	}
	return c, c.settings.Validate()
}

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	c, err := parseArgs(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo-downstream:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := NewServer(c.settings, nil, log)
	if err != nil {
		fmt.Fprintln(stderr, "demo-downstream:", err)
		return 2
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		fmt.Fprintln(stderr, "demo-downstream:", err)
		return 1
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	s := srv.Settings()
	log.Info("demo downstream listening", "addr", ln.Addr().String(),
		"failure_rate", s.FailureRate, "latency", s.Latency.String(), "failure_status", s.status())
	select {
	case err := <-served:
		fmt.Fprintln(stderr, "demo-downstream:", err)
		return 1
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shut); err != nil {
		log.Warn("shutdown", "err", err.Error())
	}
	return 0
}
