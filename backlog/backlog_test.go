package backlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDepth answers from depths, or errs, after delay (on the fake clock
// of synctest); it records when each queue was read.
type fakeDepth struct {
	mu     sync.Mutex
	depths map[string]int
	errs   map[string]error
	delay  time.Duration
	hang   bool // wait for the caller's context instead
	reads  map[string][]time.Time
}

func (f *fakeDepth) QueueDepth(ctx context.Context, q string) (int, int, error) {
	f.mu.Lock()
	if f.reads == nil {
		f.reads = map[string][]time.Time{}
	}
	f.reads[q] = append(f.reads[q], time.Now())
	delay, hang := f.delay, f.hang
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return 0, 0, ctx.Err()
	}
	time.Sleep(delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.errs[q]; err != nil {
		return 0, 0, err
	}
	return f.depths[q], 1, nil
}

func (f *fakeDepth) update(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeDepth) readsOf(q string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reads[q])
}

// gauge records what the poller sets.
type gauge struct {
	mu     sync.Mutex
	values map[string][]int
}

func (g *gauge) set(q string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.values == nil {
		g.values = map[string][]int{}
	}
	g.values[q] = append(g.values[q], n)
}

func (g *gauge) of(q string) []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.values[q])
}

// run starts p.Run and returns a function that stops it and checks it
// returned nil.
func run(t *testing.T, p *Poller) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestNewPollerInterval(t *testing.T) {
	cases := []struct {
		in, want time.Duration
	}{
		{0, DefaultInterval},
		{-time.Second, MinInterval},
		{100 * time.Millisecond, MinInterval},
		{time.Second, time.Second},
		{30 * time.Second, 30 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.in.String(), func(t *testing.T) {
			p, err := NewPoller(&fakeDepth{}, nil, c.in, nil, func(string, int) {})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Interval(); got != c.want {
				t.Fatalf("Interval() = %s, want %s", got, c.want)
			}
		})
	}
}

func TestNewPollerRefuses(t *testing.T) {
	cases := []struct {
		name string
		d    Depther
		set  func(string, int)
	}{
		{"no depth reader", nil, func(string, int) {}},
		{"no set", &fakeDepth{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewPoller(c.d, []string{"q"}, 0, nil, c.set); err == nil {
				t.Fatal("NewPoller succeeded")
			}
		})
	}
}

// Each round sets every queue's ready messages, or 0 while it is held;
// a held queue is not read.
func TestPollerSetsReadyOrZeroWhileHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDepth{depths: map[string]int{"tasks": 7, "mail": 3, "outbound": 0}}
		var mu sync.Mutex
		heldQ := map[string]bool{"mail": true}
		held := func(q string) bool {
			mu.Lock()
			defer mu.Unlock()
			return heldQ[q]
		}
		var g gauge
		p, err := NewPoller(d, []string{"tasks", "mail", "outbound"}, 0, held, g.set)
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, p)
		synctest.Wait()
		// The first round at once.
		want := map[string][]int{"tasks": {7}, "mail": {0}, "outbound": {0}}
		for q, w := range want {
			if got := g.of(q); !slices.Equal(got, w) {
				t.Fatalf("%s: set %v, want %v", q, got, w)
			}
		}
		if n := len(d.readsOf("mail")); n != 0 {
			t.Fatalf("the held queue was read %d times", n)
		}
		// The breaker closes, the depths change: the next round, an
		// interval later, sees it.
		mu.Lock()
		heldQ["mail"] = false
		heldQ["tasks"] = true
		mu.Unlock()
		d.update(func() { d.depths["mail"] = 12 })
		time.Sleep(DefaultInterval - time.Millisecond)
		synctest.Wait()
		if got := g.of("mail"); len(got) != 1 {
			t.Fatalf("mail set %v before the interval passed", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		want = map[string][]int{"tasks": {7, 0}, "mail": {0, 12}, "outbound": {0, 0}}
		for q, w := range want {
			if got := g.of(q); !slices.Equal(got, w) {
				t.Fatalf("%s: set %v, want %v", q, got, w)
			}
		}
		stop()
	})
}

// A queue is never read twice within an interval, even when the broker
// answers slowly, and a read that hangs ends after an interval.
func TestPollerReadsAtMostOncePerInterval(t *testing.T) {
	cases := []struct {
		name     string
		interval time.Duration
		delay    time.Duration
		hang     bool
		run      time.Duration
		reads    int // reads of each queue within run
	}{
		// Rounds start at 0, 1s, 2s, ... 10s.
		{"fast broker", time.Second, 0, false, 10*time.Second + time.Millisecond, 11},
		// Each round takes 3 x 400ms: rounds start at 0, 2.2s, 4.4s, 6.6s, 8.8s.
		{"slow broker", time.Second, 400 * time.Millisecond, false, 10 * time.Second, 5},
		// Each read gives up after the interval: rounds take 3s and
		// start at 0, 4s, 8s (c read at 2s, 6s, 10s).
		{"hanging broker", time.Second, 0, true, 10*time.Second + 500*time.Millisecond, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				queues := []string{"a", "b", "c"}
				d := &fakeDepth{depths: map[string]int{"a": 1, "b": 2, "c": 3}, delay: c.delay, hang: c.hang}
				var g gauge
				p, err := NewPoller(d, queues, c.interval, nil, g.set)
				if err != nil {
					t.Fatal(err)
				}
				stop := run(t, p)
				time.Sleep(c.run)
				synctest.Wait()
				stop()
				for _, q := range queues {
					reads := d.readsOf(q)
					if len(reads) != c.reads {
						t.Fatalf("%s read %d times in %s, want %d", q, len(reads), c.run, c.reads)
					}
					for i := 1; i < len(reads); i++ {
						if gap := reads[i].Sub(reads[i-1]); gap < c.interval {
							t.Fatalf("%s read twice within %s (interval %s)", q, gap, c.interval)
						}
					}
					if c.hang && len(g.of(q)) != 0 {
						t.Fatalf("%s set %v from reads that never answered", q, g.of(q))
					}
				}
			})
		})
	}
}

// A queue whose depth cannot be read keeps its last value; the failure is
// logged once, and the recovery once; the other queues go on.
func TestPollerErrorsAreLoggedNotFatal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gone := errors.New("broker: no such queue")
		d := &fakeDepth{depths: map[string]int{"a": 4, "b": 5}}
		var logs bytes.Buffer
		var logMu sync.Mutex
		logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			logMu.Lock()
			defer logMu.Unlock()
			return logs.Write(p)
		}), nil))
		var g gauge
		p, err := NewPoller(d, []string{"a", "b"}, time.Second, nil, g.set, WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, p)
		synctest.Wait()
		d.update(func() { d.errs = map[string]error{"a": gone} })
		for range 3 {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		d.update(func() { d.errs = nil; d.depths["a"] = 6 })
		time.Sleep(time.Second)
		synctest.Wait()
		stop()
		if got, want := g.of("a"), []int{4, 6}; !slices.Equal(got, want) {
			t.Fatalf("a: set %v, want %v", got, want)
		}
		if got := g.of("b"); len(got) != 5 {
			t.Fatalf("b: set %v, want 5 rounds", got)
		}
		logMu.Lock()
		out := logs.String()
		logMu.Unlock()
		if n := strings.Count(out, "queue depth unreadable"); n != 1 || !strings.Contains(out, "no such queue") {
			t.Fatalf("failure logged %d times, want once with its error:\n%s", n, out)
		}
		if n := strings.Count(out, "queue depth readable again"); n != 1 {
			t.Fatalf("recovery logged %d times, want once:\n%s", n, out)
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type staticDepth map[string]int

func (s staticDepth) QueueDepth(ctx context.Context, q string) (int, int, error) { return s[q], 0, nil }

// The poller sets each queue's ready messages, 0 for a queue an open
// breaker holds. The relay's depth reader is a *broker.Inspector on its
// consuming connection.
func ExampleNewPoller() {
	ctx, cancel := context.WithCancel(context.Background())
	depths := staticDepth{"tasks.llm": 42, "tasks.mail": 17}
	held := func(q string) bool { return q == "tasks.mail" }
	p, err := NewPoller(depths, []string{"tasks.llm", "tasks.mail"}, 5*time.Second, held, func(q string, ready int) {
		fmt.Printf("relay_queue_backlog{queue=%q} %d\n", q, ready)
		if q == "tasks.mail" {
			cancel() // one round is enough here
		}
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = p.Run(ctx)
	// Output:
	// relay_queue_backlog{queue="tasks.llm"} 42
	// relay_queue_backlog{queue="tasks.mail"} 0
}
