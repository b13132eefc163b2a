package workload

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// HeaderError is the reply header that marks a failed task.
const HeaderError = "x-relay-error"

// TaskLoad describes one closed-loop round against a work queue.
type TaskLoad struct {
	// URL of the broker.
	URL string
	// Queue is the work queue tasks are published to (default exchange).
	Queue string
	// Body of every task.
	Body []byte
	// InFlight is how many tasks are outstanding at once. Zero: 128.
	InFlight int
	// Warmup runs before the measured window opens; Duration is the
	// window's length. Zero Duration: 5s.
	Warmup, Duration time.Duration
	// Drain bounds the wait for outstanding replies after the window.
	// Zero: 10s.
	Drain time.Duration
	// OnWindow, if set, is called as the measured window opens (true)
	// and closes (false), on the driver's goroutine: the harness reads
	// the relay's CPU time there.
	OnWindow func(open bool)
}

// TaskResult is what one round measured.
type TaskResult struct {
	// Replies arrived inside the window, whose length is Window.
	Replies int
	Window  time.Duration
	// Latencies from publish to reply of the replies in the window.
	Latencies []time.Duration
	// Published tasks over the whole round.
	Published int
	// Failed replies (carrying x-relay-error) over the whole round.
	Failed int
	// Lost tasks: published but neither replied to before Drain ran out.
	Lost int
	// Nacked task publishes.
	Nacked int
}

// Rate is replies per second inside the window.
func (r TaskResult) Rate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Replies) / r.Window.Seconds()
}

// RunTasks runs one closed-loop round: it keeps l.InFlight tasks
// outstanding, publishing a new one for every reply, until the window
// closes; then it waits for the outstanding replies.
func RunTasks(ctx context.Context, l TaskLoad) (TaskResult, error) {
	if l.InFlight <= 0 {
		l.InFlight = 128
	}
	if l.Duration <= 0 {
		l.Duration = 5 * time.Second
	}
	if l.Drain <= 0 {
		l.Drain = 10 * time.Second
	}
	conn, err := amqp.DialConfig(l.URL, amqp.Config{Properties: amqp.Table{"connection_name": "bench tasks"}})
	if err != nil {
		return TaskResult{}, err
	}
	defer conn.Close()

	rch, err := conn.Channel()
	if err != nil {
		return TaskResult{}, err
	}
	// A private reply queue, as a client waiting for replies has.
	rq, err := rch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return TaskResult{}, fmt.Errorf("declaring the reply queue: %w", err)
	}
	replies, err := rch.Consume(rq.Name, "", true, true, false, false, nil)
	if err != nil {
		return TaskResult{}, fmt.Errorf("consuming replies: %w", err)
	}

	pch, err := conn.Channel()
	if err != nil {
		return TaskResult{}, err
	}
	if err := pch.Confirm(false); err != nil {
		return TaskResult{}, err
	}
	confirms := pch.NotifyPublish(make(chan amqp.Confirmation, 4096))
	var nacked atomic.Int64
	confirmsDone := make(chan struct{})
	go func() {
		defer close(confirmsDone)
		for c := range confirms {
			if !c.Ack {
				nacked.Add(1)
			}
		}
	}()

	base := time.Now()
	tokens := make(chan struct{}, l.InFlight)
	for range l.InFlight {
		tokens <- struct{}{}
	}
	stop := make(chan struct{})
	var published atomic.Int64
	var pubErr error
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		pubErr = publishLoop(ctx, pch, l, rq.Name, base, tokens, stop, &published)
	}()
	stopPublishing := sync.OnceFunc(func() { close(stop); pubWG.Wait() })
	defer stopPublishing()

	res := TaskResult{Latencies: make([]time.Duration, 0, 1<<16)}
	warm := time.NewTimer(l.Warmup)
	defer warm.Stop()
	var end, drain <-chan time.Time
	var windowOpen time.Time
	var windowOpenAt, windowCloseAt time.Duration = -1, -1
	received := 0
	stopped := false
loop:
	for {
		if stopped && received >= int(published.Load()) {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-warm.C:
			if l.OnWindow != nil {
				l.OnWindow(true)
			}
			windowOpen = time.Now()
			windowOpenAt = windowOpen.Sub(base)
			end = time.After(l.Duration)
		case <-end:
			if l.OnWindow != nil {
				l.OnWindow(false)
			}
			res.Window = time.Since(windowOpen)
			windowCloseAt = windowOpenAt + res.Window
			end = nil
			stopPublishing()
			if pubErr != nil {
				return res, pubErr
			}
			stopped = true
			drain = time.After(l.Drain)
		case <-drain:
			break loop
		case d, ok := <-replies:
			if !ok {
				return res, errors.New("reply consumer cancelled")
			}
			received++
			now := time.Since(base)
			if _, failed := d.Headers[HeaderError]; failed {
				res.Failed++
			}
			if _, sent, err := DecodeID(d.CorrelationId); err == nil && windowOpenAt >= 0 && now >= windowOpenAt && (windowCloseAt < 0 || now < windowCloseAt) {
				res.Replies++
				res.Latencies = append(res.Latencies, now-sent)
			}
			if !stopped {
				tokens <- struct{}{}
			}
		}
	}
	stopPublishing()
	res.Published = int(published.Load())
	res.Lost = res.Published - received
	_ = pch.Close()
	<-confirmsDone
	res.Nacked = int(nacked.Load())
	if pubErr != nil {
		return res, pubErr
	}
	return res, nil
}

func publishLoop(ctx context.Context, ch *amqp.Channel, l TaskLoad, replyTo string, base time.Time, tokens, stop <-chan struct{}, published *atomic.Int64) error {
	for seq := uint64(1); ; seq++ {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-tokens:
		}
		err := ch.PublishWithContext(ctx, "", l.Queue, false, false, amqp.Publishing{
			ContentType:   "application/octet-stream",
			DeliveryMode:  amqp.Persistent,
			CorrelationId: EncodeID(seq, time.Since(base)),
			MessageId:     strconv.FormatUint(seq, 36),
			ReplyTo:       replyTo,
			Body:          l.Body,
		})
		if err != nil {
			return fmt.Errorf("publishing a task: %w", err)
		}
		published.Add(1)
	}
}
