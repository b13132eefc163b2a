package breaker

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestListenersInOrderUnderConcurrency(t *testing.T) {
	b, fc, rec := newTest(t, Settings{FailureThreshold: 2, SuccessThreshold: 2, ResetTimeout: time.Second, HalfOpenTimeout: time.Second})
	const workers, calls = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				if w == 0 && i%10 == 0 {
					fc.Advance(300 * time.Millisecond)
				}
				p, err := b.Allow()
				if err != nil {
					continue
				}
				switch (w + i) % 5 {
				case 0, 1:
					b.Done(p, Failure, err503)
				case 2:
					b.Done(p, Neutral, nil)
				default:
					b.Done(p, Success, nil)
				}
			}
		})
	}
	wg.Wait()
	ts := rec.all()
	if len(ts) < 10 {
		t.Fatalf("only %d transitions; the test exercises too little", len(ts))
	}
	if got := b.Snapshot().Transitions; got != uint64(len(ts)) {
		t.Fatalf("listener saw %d transitions, Snapshot says %d", len(ts), got)
	}
	prev := Transition{To: Closed, At: start}
	for i, tr := range ts {
		if tr.From != prev.To || tr.From == tr.To {
			t.Fatalf("transition %d %v>%v does not follow %v>%v", i, tr.From, tr.To, prev.From, prev.To)
		}
		if tr.At.Before(prev.At) {
			t.Fatalf("transition %d at %v, before the previous at %v", i, tr.At, prev.At)
		}
		if tr.Breaker != "test" {
			t.Fatalf("transition %d of breaker %q", i, tr.Breaker)
		}
		prev = tr
	}
}

func TestListenerPanicIsContained(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	b, _, rec := newTest(t, Settings{FailureThreshold: 1}, WithLogger(logger))
	var after []State
	b.OnStateChange(func(tr Transition) { panic("listener bug") })
	b.OnStateChange(func(tr Transition) { after = append(after, tr.To) })

	fail(t, b, err503)
	b.Reset()
	fail(t, b, err503)

	want := []State{Open, Closed, Open}
	if len(after) != 3 || after[0] != want[0] || after[1] != want[1] || after[2] != want[2] {
		t.Fatalf("listener after the panicking one saw %v, want %v", after, want)
	}
	if n := len(rec.all()); n != 3 {
		t.Fatalf("listener before the panicking one saw %d transitions, want 3", n)
	}
	if got := strings.Count(logs.String(), "circuit breaker listener panicked"); got != 3 {
		t.Fatalf("logged %d panics, want 3:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "panic=\"listener bug\"") {
		t.Fatalf("log does not carry the panic value:\n%s", logs.String())
	}
}

func TestListenerMayCallBack(t *testing.T) {
	b, _, rec := newTest(t, Settings{FailureThreshold: 1})
	var seen []Snapshot
	b.OnStateChange(func(tr Transition) {
		// Would deadlock if listeners ran under the breaker's lock.
		seen = append(seen, b.Snapshot())
		if tr.To == Open {
			b.Reset()
		}
	})
	fail(t, b, err503)
	want := []string{"closed>open: 1 failures within 60s; last: HTTP 503", "open>closed: reset manually"}
	if got := rec.reasons(); !equalStrings(got, want) {
		t.Fatalf("transitions %q, want %q", got, want)
	}
	// The first listener call happened before Reset ran; the reset it
	// caused was delivered after the current transition finished.
	if len(seen) != 2 || seen[0].State != Open || seen[1].State != Closed {
		t.Fatalf("snapshots seen by the listener: %+v", seen)
	}
}

func TestListenerGoexitLeavesBreakerUsable(t *testing.T) {
	b, _, rec := newTest(t, Settings{FailureThreshold: 1})
	first := true
	b.OnStateChange(func(Transition) {
		if first {
			first = false
			runtime.Goexit()
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		fail(t, b, err503)
	}()
	<-done
	b.Reset()
	want := []string{"closed>open: 1 failures within 60s; last: HTTP 503", "open>closed: reset manually"}
	if got := rec.reasons(); !equalStrings(got, want) {
		t.Fatalf("transitions %q, want %q", got, want)
	}
}

func TestNilListenersAndOptionsIgnored(t *testing.T) {
	b, err := New("n", Settings{FailureThreshold: 1}, nil, WithClock(nil), WithListener(nil), WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	b.OnStateChange(nil)
	fail(t, b, err503)
	if b.State() != Open {
		t.Fatal("breaker did not open")
	}
}
