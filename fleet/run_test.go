package fleet

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vsm-relay/relay/breaker"
)

// recordingTransport keeps what is published; it fails while failing is
// set.
type recordingTransport struct {
	mu      sync.Mutex
	sent    []Message
	failing bool
}

func (r *recordingTransport) Publish(ctx context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return errors.New("broker unreachable")
	}
	r.sent = append(r.sent, m)
	return nil
}

func (r *recordingTransport) kinds() []Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Kind
	for _, m := range r.sent {
		out = append(out, m.Kind)
	}
	return out
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &recordingTransport{}
		c, err := New("a", tr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := breaker.New(name, breaker.Settings{FailureThreshold: 5, ResetTimeout: 10 * time.Second})
		if err := c.Share(b); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		synctest.Wait()
		if err := c.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
			t.Fatalf("second Run: %v", err)
		}

		fail := func() {
			p, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			b.Done(p, breaker.Failure, err503)
		}
		fail()
		fail()
		synctest.Wait()
		if k := tr.kinds(); len(k) != 0 {
			t.Fatalf("sent %v before the flush interval", k)
		}
		time.Sleep(DefaultFlushInterval)
		synctest.Wait()
		if k := tr.kinds(); len(k) != 1 || k[0] != KindFailures || tr.sent[0].Count != 2 {
			t.Fatalf("sent %v, want one batch of 2 failures", tr.sent)
		}
		// An opening goes out at once, not after a flush interval.
		b.ForceOpen()
		synctest.Wait()
		if k := tr.kinds(); len(k) != 2 || k[1] != KindOpen {
			t.Fatalf("sent %v, want the opening at once", k)
		}
		b.Reset()
		// A peer's closing: a planned half_open, made by Run after the
		// jitter (at most min(1s, 10s/10)).
		b.ForceOpen()
		b.Reset()
		fail()
		fail()
		fail()
		fail()
		fail()
		synctest.Wait()
		c.Deliver(Message{Version: Version, Instance: "b", Breaker: name, Kind: KindClosed, At: time.Now()})
		time.Sleep(time.Second)
		synctest.Wait()
		if s := b.State(); s != breaker.HalfOpen {
			t.Fatalf("a second after a peer closed: %v, want half_open", s)
		}
		// Unsent messages are lost, counted and logged; Run goes on.
		tr.mu.Lock()
		tr.failing = true
		tr.mu.Unlock()
		b.ForceOpen()
		synctest.Wait()
		if n := c.Counts().PublishErrors; n != 1 {
			t.Fatalf("PublishErrors = %d, want 1", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}
