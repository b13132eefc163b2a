package broker

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

// wire records the frames an acker sends.
type wire struct {
	mu     sync.Mutex
	frames []string
}

func (w *wire) Ack(tag uint64, multiple bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames = append(w.frames, fmt.Sprintf("ack %d multiple=%v", tag, multiple))
	return nil
}

func (w *wire) Nack(tag uint64, multiple, requeue bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames = append(w.frames, fmt.Sprintf("nack %d requeue=%v", tag, requeue))
	return nil
}

func (w *wire) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.frames...)
}

func TestAckerCoalesces(t *testing.T) {
	type op struct {
		ack     bool
		tag     uint64
		requeue bool
	}
	ack := func(tag uint64) op { return op{ack: true, tag: tag} }
	requeue := func(tag uint64) op { return op{tag: tag, requeue: true} }
	cases := []struct {
		name string
		ops  []op
		want []string
	}{
		{"in order, one frame each", []op{ack(1), ack(2), ack(3)},
			[]string{"ack 1 multiple=true", "ack 2 multiple=true", "ack 3 multiple=true"}},
		{"out of order, one multiple ack", []op{ack(3), ack(2), ack(1)},
			[]string{"ack 3 multiple=true"}},
		{"a gap keeps the rest held", []op{ack(2), ack(4), ack(1)},
			[]string{"ack 2 multiple=true"}},
		{"a requeue goes out at once and lets held acks go", []op{ack(2), ack(3), requeue(1)},
			[]string{"nack 1 requeue=true", "ack 3 multiple=true"}},
		{"a requeue above the lowest is skipped by the multiple ack", []op{requeue(2), ack(3), ack(1)},
			[]string{"nack 2 requeue=true", "ack 3 multiple=true"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &wire{}
			a := newAcker(w)
			a.hold = time.Hour // nothing held is sent by the timer here
			defer a.timer.Stop()
			for _, o := range c.ops {
				if o.ack {
					_ = a.ack(o.tag)
				} else {
					_ = a.nack(o.tag, o.requeue)
				}
			}
			if got := w.got(); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("frames %q, want %q", got, c.want)
			}
		})
	}
}

func TestAckerBatchesInOrderAcksByPrefetch(t *testing.T) {
	w := &wire{}
	a := newAcker(w)
	a.hold = time.Hour // only the batch size sends here
	defer a.timer.Stop()
	a.setPrefetch(8) // a batch of 2
	for tag := uint64(1); tag <= 5; tag++ {
		_ = a.ack(tag)
	}
	want := []string{"ack 2 multiple=true", "ack 4 multiple=true"}
	if got := w.got(); !reflect.DeepEqual(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	// Acks held out of order fold into the batch once the gap fills.
	_ = a.ack(7)
	_ = a.ack(6)
	want = append(want, "ack 7 multiple=true")
	if got := w.got(); !reflect.DeepEqual(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	// Lowering the prefetch sends what a smaller batch would have.
	_ = a.ack(8)
	a.setPrefetch(1)
	want = append(want, "ack 8 multiple=true")
	if got := w.got(); !reflect.DeepEqual(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	_ = a.ack(9)
	want = append(want, "ack 9 multiple=true")
	if got := w.got(); !reflect.DeepEqual(got, want) {
		t.Fatalf("prefetch 1: frames %q, want %q", got, want)
	}
}

func TestAckerSendsAPartBatchAfterHoldFor(t *testing.T) {
	w := &wire{}
	a := newAcker(w)
	a.hold = 20 * time.Millisecond
	defer a.timer.Stop()
	a.setPrefetch(400)
	_ = a.ack(1)
	_ = a.ack(2)
	_ = a.ack(4) // held behind 3
	if got := w.got(); len(got) != 0 {
		t.Fatalf("sent before holdFor: %q", got)
	}
	waitFrames(t, w, 1)
	if got := w.got(); got[0] != "ack 2 multiple=true" {
		t.Fatalf("frames %q, want the part batch up to 2 first", got)
	}
	// The ack held out of order goes alone once it has waited holdFor.
	waitFrames(t, w, 2)
	if got := w.got(); len(got) != 2 || got[1] != "ack 4 multiple=false" {
		t.Fatalf("frames %q", got)
	}
	// stop sends what is pending.
	_ = a.ack(3)
	a.stop()
	if got := w.got(); len(got) != 3 || got[2] != "ack 3 multiple=true" {
		t.Fatalf("after stop: frames %q", got)
	}
}

func waitFrames(t *testing.T, w *wire, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(w.got()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d frames: %q", n, w.got())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAckerSendsHeldAcksAfterHoldFor(t *testing.T) {
	w := &wire{}
	a := newAcker(w)
	defer a.timer.Stop()
	_ = a.ack(2)
	_ = a.ack(3)
	deadline := time.Now().Add(5 * time.Second)
	for len(w.got()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("held acks never sent: %q", w.got())
		}
		time.Sleep(time.Millisecond)
	}
	got := w.got()
	if len(got) != 2 || !(got[0] == "ack 2 multiple=false" || got[0] == "ack 3 multiple=false") {
		t.Fatalf("frames %q, want tags 2 and 3 acked on their own", got)
	}
	// Once tag 1 settles, nothing held remains: a plain multiple ack of 1.
	_ = a.ack(1)
	if got := w.got(); got[2] != "ack 1 multiple=true" || len(got) != 3 {
		t.Fatalf("frames %q", got)
	}
}

func TestAckerHoldsAtMostHoldLimit(t *testing.T) {
	w := &wire{}
	a := newAcker(w)
	a.hold = time.Hour
	defer a.timer.Stop()
	for tag := uint64(2); tag < 2+holdLimit+3; tag++ {
		_ = a.ack(tag)
	}
	if got := w.got(); len(got) != 3 {
		t.Fatalf("%d frames sent past the hold limit, want 3: %q", len(got), got)
	}
	_ = a.ack(1)
	got := w.got()
	if last := got[len(got)-1]; last != fmt.Sprintf("ack %d multiple=true", 1+holdLimit) {
		t.Fatalf("last frame %q", last)
	}
}

func BenchmarkAckerInOrder(b *testing.B) {
	a := newAcker(discardChannel{})
	defer a.timer.Stop()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = a.ack(uint64(i + 1))
	}
}

type discardChannel struct{}

func (discardChannel) Ack(uint64, bool) error        { return nil }
func (discardChannel) Nack(uint64, bool, bool) error { return nil }
