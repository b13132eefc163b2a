package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vsm-relay/relay/bench/internal/stats"
)

// callFunc makes one call and returns the reply's body.
type callFunc func(ctx context.Context, body []byte) ([]byte, error)

// Figures are one implementation's figures at one concurrency in one
// round.
type Figures struct {
	Rate     float64 // answered calls per second
	P50, P99 time.Duration
	Failed   int
	// CPU is the process's CPU time per answered call in the window:
	// the callers', and the responder's, which is the same work for
	// both implementations.
	CPU time.Duration
}

// load runs callers goroutines, each calling in a closed loop, for warmup
// and then for the measured window, and reports the window's calls.
func load(ctx context.Context, call callFunc, callers int, warmup, window time.Duration, body []byte) (Figures, error) {
	var measuring atomic.Bool
	stop := make(chan struct{})
	samples := make([][]time.Duration, callers)
	failed := make([]int, callers)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				reply, err := call(cctx, body)
				cancel()
				took := time.Since(start)
				if !measuring.Load() {
					continue
				}
				if err == nil && len(reply) != len(body) {
					err = fmt.Errorf("reply of %d bytes to a %d-byte task", len(reply), len(body))
				}
				if err != nil {
					failed[i]++
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				samples[i] = append(samples[i], took)
			}
		})
	}
	sleep(ctx, warmup)
	measuring.Store(true)
	began, cpuBefore := time.Now(), processCPU()
	sleep(ctx, window)
	measuring.Store(false)
	elapsed, cpu := time.Since(began), processCPU()-cpuBefore
	close(stop)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Figures{}, err
	}
	var all []time.Duration
	f := Figures{}
	for i := range callers {
		all = append(all, samples[i]...)
		f.Failed += failed[i]
	}
	lat := stats.Summarize(all)
	f.Rate = float64(lat.N) / elapsed.Seconds()
	f.P50, f.P99 = lat.P50, lat.P99
	if lat.N > 0 {
		f.CPU = cpu / time.Duration(lat.N)
	}
	if lat.N == 0 {
		err, _ := firstErr.Load().(error)
		return f, errors.Join(errors.New("no call was answered"), err)
	}
	return f, nil
}

// processCPU is the CPU time, user and system, this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
