package algedonic

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vsm-relay/relay/clock"
	"github.com/vsm-relay/relay/internal/fielderr"
)

func TestSetConfigExchanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Instance: "relay-1"}, WithClock(clock.Real))
		h.e.Emit(BreakerOpenedWith("queued_before", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
		err := h.e.SetConfig(Config{Instance: "relay-2", PainExchange: "pain.new", PleasureExchange: "pleasure.new"})
		if err != nil {
			t.Fatal(err)
		}
		stop := runEmitter(t, h.e)
		defer stop()
		h.e.Emit(BreakerOpenedWith("after", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
		h.e.Emit(BreakerClosed("after", "r"))
		synctest.Wait()
		var got []string
		for _, m := range h.pub.messages() {
			got = append(got, m.exchange+" "+m.key+" "+m.ev.Instance)
		}
		want := []string{
			"pain.new breaker.queued_before.open relay-1",
			"pain.new breaker.after.open relay-1",
			"pleasure.new breaker.after.closed relay-1",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestSetConfigCoalesce(t *testing.T) {
	rej := func(h *harness, at time.Duration) {
		h.clk.Set(t0.Add(at))
		h.e.Emit(BulkheadRejected("p", "full", 0.5))
	}
	tests := []struct {
		name     string
		from, to time.Duration
		// three rejections at 0s, 1s and 2s, then the change at 2s, then
		// these steps: a rejection (emit) or a tick at the time given
		steps []struct {
			emit bool
			at   time.Duration
		}
		want string
	}{
		{
			name: "turned off: the summary goes at once, then nothing is coalesced",
			from: 10 * time.Second, to: 0,
			steps: []struct {
				emit bool
				at   time.Duration
			}{{true, 3 * time.Second}, {true, 4 * time.Second}, {false, time.Minute}},
			want: "×1 ×2 ×1 ×1",
		},
		{
			name: "turned on: coalesces from the next event",
			from: 0, to: 10 * time.Second,
			steps: []struct {
				emit bool
				at   time.Duration
			}{{true, 3 * time.Second}, {true, 4 * time.Second}, {true, 5 * time.Second}, {false, 13 * time.Second}},
			want: "×1 ×1 ×1 ×1 ×2",
		},
		{
			name: "shortened: the open window ends one new window from the change",
			from: time.Minute, to: 5 * time.Second,
			steps: []struct {
				emit bool
				at   time.Duration
			}{{false, 7*time.Second - time.Nanosecond}, {false, 7 * time.Second}, {true, 8 * time.Second},
				{true, 9 * time.Second}, {false, 12 * time.Second}},
			want: "×1 ×2 ×2",
		},
		{
			name: "lengthened: the open window keeps its end, the next is longer",
			from: 10 * time.Second, to: time.Minute,
			steps: []struct {
				emit bool
				at   time.Duration
			}{{false, 10 * time.Second}, {true, 11 * time.Second}, {false, 69 * time.Second},
				{false, 70 * time.Second}},
			want: "×1 ×2 ×1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{Coalesce: tt.from})
			for s := range 3 {
				rej(h, time.Duration(s)*time.Second)
			}
			if err := h.e.SetConfig(Config{Coalesce: tt.to}); err != nil {
				t.Fatal(err)
			}
			for _, st := range tt.steps {
				if st.emit {
					rej(h, st.at)
				} else {
					h.e.tick(t0.Add(st.at))
				}
			}
			got := strings.ReplaceAll(eventKeys(h.seen()), "bulkhead.p.rejected", "")
			if got != tt.want {
				t.Fatalf("sent %q, want %q", got, tt.want)
			}
		})
	}
}

// Run looks for ended windows at the pace of the new window: with
// coalescing off it looks hourly, so a summary within the second proves
// its ticker was reset.
func TestSetConfigResetsRunTicker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{}, WithClock(clock.Real))
		stop := runEmitter(t, h.e)
		defer stop()
		synctest.Wait() // Run is waiting, with its hourly ticker
		if err := h.e.SetConfig(Config{Coalesce: time.Second}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			h.e.Emit(BulkheadRejected("api_agent", "full", 1))
		}
		time.Sleep(1250 * time.Millisecond)
		synctest.Wait()
		if s := keysAndCounts(h.pub.messages()); s != "bulkhead.api_agent.rejected×1 bulkhead.api_agent.rejected×2" {
			t.Fatalf("published %q", s)
		}
	})
}

func TestSetConfigBuffer(t *testing.T) {
	tests := []struct {
		name        string
		from, to    int
		queued      int
		wantPending int
		wantDropped int
		wantFirst   int // the first event published, after one more is raised
	}{
		{"shrunk below the queue: the oldest dropped", 10, 2, 5, 2, 3, 5},
		{"shrunk to the queue: nothing dropped", 10, 5, 5, 5, 0, 2},
		{"grown: all kept", 3, 10, 3, 3, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Config{Buffer: tt.from})
				for i := 1; i <= tt.queued; i++ {
					h.e.Emit(BreakerOpenedWith(fmt.Sprintf("b%d", i), "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
				}
				if err := h.e.SetConfig(Config{Buffer: tt.to}); err != nil {
					t.Fatal(err)
				}
				if p := h.e.Pending(); p != tt.wantPending {
					t.Fatalf("Pending = %d, want %d", p, tt.wantPending)
				}
				if v := valueOf(h.e.m.dropped); v != float64(tt.wantDropped) {
					t.Fatalf("dropped_total = %v, want %d", v, tt.wantDropped)
				}
				if v := valueOf(h.e.m.pending); v != float64(tt.wantPending) {
					t.Fatalf("pending gauge = %v, want %d", v, tt.wantPending)
				}
				if c := strings.Count(h.logs.String(), "algedonic buffer shrunk; dropped the oldest event"); c != tt.wantDropped {
					t.Fatalf("logged %d drops, want %d", c, tt.wantDropped)
				}
				// The new size holds from the next event on.
				h.e.Emit(BreakerOpenedWith("next", "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
				if p := h.e.Pending(); p != min(tt.wantPending+1, tt.to) {
					t.Fatalf("Pending after one more = %d, want %d", p, min(tt.wantPending+1, tt.to))
				}
				stop := runEmitter(t, h.e)
				synctest.Wait()
				stop()
				got := h.pub.messages()
				if first := fmt.Sprintf("breaker.b%d.open", tt.wantFirst); len(got) == 0 || got[0].key != first {
					t.Fatalf("published %q, want %s first", keysAndCounts(got), first)
				}
				if last := got[len(got)-1].key; last != "breaker.next.open" {
					t.Fatalf("published %q, want breaker.next.open last", keysAndCounts(got))
				}
			})
		})
	}
}

// The event being published when the buffer shrinks past it is published
// once and not removed twice.
func TestSetConfigBufferShrinksPastTheHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Buffer: 10}, WithClock(clock.Real))
		for i := 1; i <= 4; i++ {
			h.e.Emit(BreakerOpenedWith(fmt.Sprintf("b%d", i), "r", BreakerOpening{FailureRate: 1, FromHalfOpen: false}))
		}
		h.pub.failing.Store(true)
		stop := runEmitter(t, h.e)
		defer stop()
		synctest.Wait() // b1 is the head, its publish failing
		if err := h.e.SetConfig(Config{Buffer: 2}); err != nil {
			t.Fatal(err)
		}
		h.pub.failing.Store(false)
		if err := h.e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if s := keysAndCounts(h.pub.messages()); s != "breaker.b3.open×1 breaker.b4.open×1" {
			t.Fatalf("published %q", s)
		}
	})
}

func TestSetConfigInvalid(t *testing.T) {
	h := newHarness(t, Config{Coalesce: 10 * time.Second, Buffer: 5})
	err := h.e.SetConfig(Config{Coalesce: -time.Second, Buffer: -1})
	var fe *fielderr.Error
	if !errors.As(err, &fe) {
		t.Fatalf("SetConfig(bad) = %v, want a *fielderr.Error", err)
	}
	for range 3 {
		h.e.Emit(BulkheadRejected("p", "full", 0.5))
	}
	if s := eventKeys(h.seen()); s != "bulkhead.p.rejected×1" {
		t.Fatalf("coalescing changed by a refused SetConfig: %q", s)
	}
}

// SetConfig racing with Emit, Run and Flush. Run with -race.
func TestSetConfigConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Coalesce: time.Second}, WithClock(clock.Real))
		stop := runEmitter(t, h.e)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 200 {
					h.e.Emit(BulkheadRejected(fmt.Sprintf("p%d", g), "full", 0.5))
					if i%20 == 0 {
						h.e.Emit(BreakerClosed("b", "r"))
						time.Sleep(100 * time.Millisecond)
					}
				}
			})
		}
		configs := []Config{
			{Coalesce: time.Second, Buffer: 3},
			{PainExchange: "p2", Buffer: 100},
			{Coalesce: 50 * time.Millisecond, PleasureExchange: "q2"},
		}
		for i := range 60 {
			if err := h.e.SetConfig(configs[i%len(configs)]); err != nil {
				t.Error(err)
			}
			time.Sleep(30 * time.Millisecond)
		}
		wg.Wait()
		if err := h.e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		stop()
		if p := h.e.Pending(); p != 0 {
			t.Fatalf("Pending = %d after Flush", p)
		}
	})
}
