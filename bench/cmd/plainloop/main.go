// Command plainloop runs the plain amqp091-go relay loop of package plain
// in a process of its own, so that the throughput harness measures it
// exactly as it measures the relay: same scheduling, and its CPU time and
// resident set readable from /proc. It logs one JSON line,
// {"msg":"plain loop running"}, once it consumes, and stops on SIGTERM or
// SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vsm-relay/relay/bench/internal/plain"
)

// ReadyLine is what plainloop logs on stderr once it consumes.
const ReadyLine = `{"msg":"plain loop running"}`

func main() { os.Exit(run()) }

func run() int {
	var o plain.Options
	flag.StringVar(&o.URL, "url", "amqp://guest:guest@127.0.0.1:5672/", "broker")
	flag.StringVar(&o.Queue, "queue", "", "work queue to consume")
	flag.StringVar(&o.QueueType, "queue-type", "", "declare the queue as this type (classic or quorum) before consuming; empty: it must exist")
	flag.StringVar(&o.Target, "target", "", "downstream URL")
	flag.IntVar(&o.Prefetch, "prefetch", 64, "consumer prefetch")
	flag.IntVar(&o.Workers, "workers", 32, "workers")
	flag.StringVar(&o.Name, "name", "bench", "x-relay-target of the replies")
	flag.Parse()
	if o.Queue == "" || o.Target == "" {
		fmt.Fprintln(os.Stderr, "plainloop: -queue and -target are required")
		return 2
	}
	if o.QueueType != "" && o.QueueType != "classic" && o.QueueType != "quorum" {
		fmt.Fprintf(os.Stderr, "plainloop: -queue-type: want classic or quorum, not %q\n", o.QueueType)
		return 2
	}
	o.Ready = func() { fmt.Fprintln(os.Stderr, ReadyLine) }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := plain.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "plainloop:", err)
		return 1
	}
	return 0
}
