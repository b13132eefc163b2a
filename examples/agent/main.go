// Command agent is a small agent that hands work to a downstream through
// the relay, written with the relay's Go client.
//
//	go run ./examples/agent --jobs 20
//
// It runs --jobs jobs, --workers at a time. Each job is prepared
// in-process under the agent's own bulkhead and circuit breaker, then
// sent to the relay's work queue with client.Call, which waits for the
// downstream's answer. Meanwhile the agent watches the relay's pain and
// pleasure signals: while the relay's breaker in front of the downstream
// (--breaker) is open, it slows its own publishing to --slow calls per
// second, and returns to --rate when the breaker closes.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/vsm-relay/relay/client"
	"golang.org/x/time/rate"
)

func main() { os.Exit(run()) }

func run() int {
	url := flag.String("url", cmp.Or(os.Getenv("RELAY_AMQP_URL"), "amqp://guest:guest@127.0.0.1:5672/"), "broker URL, or a comma-separated cluster list ($RELAY_AMQP_URL)")
	queue := flag.String("queue", "vsm.tasks.echo", "the relay's work queue for the downstream")
	target := flag.String("breaker", "external_api", "the relay's breaker in front of the downstream")
	jobs := flag.Int("jobs", 20, "how many jobs to run")
	workers := flag.Int("workers", 4, "jobs at once")
	normal := flag.Float64("rate", 20, "calls per second while the downstream is well")
	slow := flag.Float64("slow", 0.5, "calls per second while its breaker is open")
	timeout := flag.Duration("timeout", 60*time.Second, "how long one job may wait for its reply")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := client.Dial(dctx, *url, client.WithName("example agent"), client.WithLogger(log))
	cancel()
	if err != nil {
		log.Error("connecting", "err", err)
		return 1
	}
	defer c.Close()

	a, err := NewAgent(c, Settings{Queue: *queue, Target: *target, Normal: rate.Limit(*normal), Slow: rate.Limit(*slow), Log: log})
	if err != nil {
		log.Error("agent", "err", err)
		return 2
	}
	lctx, stopListening := context.WithCancel(ctx)
	listening := make(chan error, 1)
	go func() { listening <- a.Listen(lctx, nil) }()

	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for range *workers {
		wg.Go(func() {
			for n := range work {
				jctx, cancel := context.WithTimeout(ctx, *timeout)
				reply, err := a.Handle(jctx, fmt.Sprintf(`{"job":%d}`, n))
				cancel()
				var te *client.TaskError
				switch {
				case errors.As(err, &te):
					log.Warn("job refused by the downstream", "job", n, "status", te.Status, "reason", te.Reason)
				case err != nil:
					log.Warn("job failed", "job", n, "err", err)
				default:
					log.Info("job done", "job", n, "status", reply.Status, "attempts", reply.Attempts, "reply", string(reply.Body))
					continue
				}
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	for n := 1; n <= *jobs && ctx.Err() == nil; n++ {
		work <- n
	}
	close(work)
	wg.Wait()
	stopListening()
	if err := <-listening; err != nil {
		log.Error("watching the relay's signals", "err", err)
	}
	fmt.Fprintf(os.Stderr, "%d jobs, %d failed\n", *jobs, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
