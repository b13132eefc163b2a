package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/clock"
)

var (
	start  = time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)
	err503 = errors.New("HTTP 503")
)

const name = "llm_api"

// bus is an in-memory broker: every message published is delivered, as
// JSON, to every coordinator that is not cut off, the sender included
// (as a topic exchange would).
type bus struct {
	mu     sync.Mutex
	cut    map[string]bool
	queue  []Message
	sent   []Message
	coords []*Coordinator
}

type busTransport struct {
	b    *bus
	from string
}

var errCut = errors.New("cut off from the broker")

func (t busTransport) Publish(ctx context.Context, m Message) error {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	if t.b.cut[t.from] {
		return errCut
	}
	t.b.queue = append(t.b.queue, m)
	t.b.sent = append(t.b.sent, m)
	return nil
}

// pump delivers what is queued, until nothing is.
func (b *bus) pump(t *testing.T) {
	t.Helper()
	for {
		b.mu.Lock()
		q := b.queue
		b.queue = nil
		b.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, m := range q {
			body, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(body)
			if err != nil {
				t.Fatalf("Decode(%s): %v", body, err)
			}
			for _, c := range b.coords {
				b.mu.Lock()
				cut := b.cut[c.Instance()]
				b.mu.Unlock()
				if !cut {
					c.Deliver(got)
				}
			}
		}
	}
}

// sentBy lists "kind" (and ":origin" when it is not the sender) of what
// instance sent.
func (b *bus) sentBy(instance string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.sent {
		if m.Instance == instance {
			s := string(m.Kind)
			if m.Kind == KindFailures {
				s += fmt.Sprint(m.Count)
			}
			if m.Origin != m.Instance {
				s += ":" + m.Origin
			}
			out = append(out, s)
		}
	}
	return out
}

type recorder struct {
	mu sync.Mutex
	ts []breaker.Transition
}

func (r *recorder) listen(t breaker.Transition) {
	r.mu.Lock()
	r.ts = append(r.ts, t)
	r.mu.Unlock()
}

func (r *recorder) all() []breaker.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]breaker.Transition(nil), r.ts...)
}

// relayUnderTest is one relay of the fleet: its breaker, its coordinator
// and what the breaker did.
type relayUnderTest struct {
	b   *breaker.Breaker
	c   *Coordinator
	rec *recorder
}

type fleetUnderTest struct {
	fc     *clock.Fake
	bus    *bus
	relays map[string]*relayUnderTest
	names  []string
}

var breakerSettings = breaker.Settings{FailureThreshold: 5, SuccessThreshold: 1, ResetTimeout: 60 * time.Second, WindowSize: 60 * time.Second}

func newFleet(t *testing.T, instances ...string) *fleetUnderTest {
	t.Helper()
	f := &fleetUnderTest{fc: clock.NewFake(start), bus: &bus{cut: map[string]bool{}}, relays: map[string]*relayUnderTest{}, names: instances}
	for _, inst := range instances {
		rec := &recorder{}
		b, err := breaker.New(name, breakerSettings, breaker.WithClock(f.fc), breaker.WithListener(rec.listen))
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(inst, busTransport{f.bus, inst}, WithClock(f.fc), WithRand(func() float64 { return 0.1 }))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Share(b); err != nil {
			t.Fatal(err)
		}
		f.bus.coords = append(f.bus.coords, c)
		f.relays[inst] = &relayUnderTest{b: b, c: c, rec: rec}
	}
	return f
}

func (f *fleetUnderTest) fail(t *testing.T, inst string, n int) {
	t.Helper()
	b := f.relays[inst].b
	for range n {
		p, err := b.Allow()
		if err != nil {
			t.Fatalf("%s: Allow: %v", inst, err)
		}
		b.Done(p, breaker.Failure, err503)
	}
}

// settle lets a flush interval pass and every coordinator send, and
// delivers everything sent, until the fleet is quiet.
func (f *fleetUnderTest) settle(t *testing.T) {
	t.Helper()
	f.fc.Advance(DefaultFlushInterval)
	for range 10 {
		for _, inst := range f.names {
			f.relays[inst].c.step(context.Background())
		}
		f.bus.mu.Lock()
		quiet := len(f.bus.queue) == 0
		f.bus.mu.Unlock()
		if quiet {
			return
		}
		f.bus.pump(t)
	}
	t.Fatal("the fleet never settles")
}

// exchange lets every coordinator send what is due now and delivers it,
// until the fleet is quiet, without moving the clock.
func (f *fleetUnderTest) exchange(t *testing.T) {
	t.Helper()
	for range 10 {
		for _, inst := range f.names {
			f.relays[inst].c.step(context.Background())
		}
		f.bus.mu.Lock()
		quiet := len(f.bus.queue) == 0
		f.bus.mu.Unlock()
		if quiet {
			return
		}
		f.bus.pump(t)
	}
	t.Fatal("the fleet never settles")
}

func (f *fleetUnderTest) states() string {
	var s []string
	for _, inst := range f.names {
		s = append(s, f.relays[inst].b.State().String())
	}
	return strings.Join(s, " ")
}

// Failures seen anywhere count everywhere: the fleet opens after about
// failure_threshold (5) failures in all.
func TestFailuresAddUp(t *testing.T) {
	tests := []struct {
		name     string
		failures [][3]int // rounds of failures at a, b, c, each followed by a settle
		want     string
		// wantOrigin: the origin of each relay's opening ("" when it
		// decided itself).
		wantOrigin [3]string
	}{
		{name: "four in all", failures: [][3]int{{2, 2, 0}}, want: "closed closed closed"},
		{name: "five in all", failures: [][3]int{{2, 2, 1}}, want: "open open open"},
		{name: "five over two rounds", failures: [][3]int{{1, 1, 1}, {0, 1, 1}}, want: "open open open"},
		{name: "five at one relay", failures: [][3]int{{5, 0, 0}}, want: "open open open", wantOrigin: [3]string{"", "a", "a"}},
		{name: "four at one relay, one at another", failures: [][3]int{{4, 0, 0}, {0, 0, 1}}, want: "open open open", wantOrigin: [3]string{"c", "c", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, "a", "b", "c")
			for _, round := range tt.failures {
				for i, n := range round {
					f.fail(t, f.names[i], n)
				}
				f.settle(t)
			}
			if got := f.states(); got != tt.want {
				t.Fatalf("states %q, want %q", got, tt.want)
			}
			if tt.want != "open open open" {
				return
			}
			for i, inst := range f.names {
				ts := f.relays[inst].rec.all()
				if len(ts) != 1 || ts[0].To != breaker.Open || ts[0].Origin != tt.wantOrigin[i] {
					t.Fatalf("%s: transitions %+v, want one opening with origin %q", inst, ts, tt.wantOrigin[i])
				}
				if tt.wantOrigin[i] != "" && !strings.Contains(ts[0].Reason, tt.wantOrigin[i]) {
					t.Fatalf("%s: reason %q does not name the peer %q", inst, ts[0].Reason, tt.wantOrigin[i])
				}
				if tt.wantOrigin[i] == "" && !strings.Contains(ts[0].Reason, "failures within 60s") {
					t.Fatalf("%s: reason %q", inst, ts[0].Reason)
				}
			}
		})
	}
}

// An opening anywhere opens the others; an opening a peer caused is
// never passed on again; failures only flow while something fails.
func TestOpeningSpreadsWithoutEcho(t *testing.T) {
	f := newFleet(t, "a", "b", "c")
	f.settle(t) // nothing fails: nothing is sent
	if n := len(f.bus.sent); n != 0 {
		t.Fatalf("%d messages sent with nothing failing", n)
	}
	f.relays["a"].b.ForceOpen()
	f.settle(t)
	if got := f.states(); got != "open open open" {
		t.Fatalf("states %q", got)
	}
	if got := strings.Join(f.bus.sentBy("a"), ","); got != "open" {
		t.Fatalf("a sent %q, want open", got)
	}
	for _, inst := range []string{"b", "c"} {
		if got := f.bus.sentBy(inst); len(got) != 0 {
			t.Fatalf("%s passed on %q", inst, got)
		}
		ts := f.relays[inst].rec.all()
		if len(ts) != 1 || ts[0].Origin != "a" || ts[0].Reason != "opened at a: forced open" {
			t.Fatalf("%s: %+v", inst, ts)
		}
		if c := f.relays[inst].c.Counts(); c.Applied != 1 || c.Own != 0 {
			t.Fatalf("%s: counts %+v", inst, c)
		}
	}
	if c := f.relays["a"].c.Counts(); c.Own != 1 || c.Sent != 1 {
		t.Fatalf("a: counts %+v, want its own message ignored once", c)
	}
}

// When a peer's probe succeeds and it closes, the others go half_open
// at once, after a jitter; each probes for itself.
func TestPeerClosingLetsOthersProbe(t *testing.T) {
	f := newFleet(t, "a", "b", "c")
	f.fail(t, "a", 5)
	f.settle(t)
	// a probes on its own reset_timeout, counted from its opening; b and c
	// opened a flush interval later.
	f.fc.Advance(breakerSettings.ResetTimeout - DefaultFlushInterval)
	if got := f.states(); got != "half_open open open" {
		t.Fatalf("states %q", got)
	}
	p, err := f.relays["a"].b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	f.relays["a"].b.Done(p, breaker.Success, nil)
	f.exchange(t) // a's closing reaches b and c, which wait out the jitter
	// The jitter: 0.1 of min(1s, 60s/10), which is before their own
	// reset_timeout ends.
	f.fc.Advance(100*time.Millisecond - time.Nanosecond)
	for _, inst := range f.names {
		f.relays[inst].c.step(context.Background())
	}
	if got := f.states(); got != "closed open open" {
		t.Fatalf("before the jitter passed: states %q", got)
	}
	f.fc.Advance(time.Nanosecond)
	for _, inst := range f.names {
		f.relays[inst].c.step(context.Background())
	}
	if got := f.states(); got != "closed half_open half_open" {
		t.Fatalf("after the jitter: states %q", got)
	}
	for _, inst := range []string{"b", "c"} {
		ts := f.relays[inst].rec.all()
		last := ts[len(ts)-1]
		if last.To != breaker.HalfOpen || last.Origin != "a" {
			t.Fatalf("%s: last transition %+v", inst, last)
		}
	}
	// b's probe succeeds: it closes and says so; a (closed) and c
	// (probing) have nothing to do.
	p, err = f.relays["b"].b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	f.relays["b"].b.Done(p, breaker.Success, nil)
	f.exchange(t)
	if got := f.states(); got != "closed closed half_open" {
		t.Fatalf("states %q", got)
	}
	if got := strings.Join(f.bus.sentBy("a"), ","); got != "open,closed" {
		t.Fatalf("a sent %q", got)
	}
	if got := strings.Join(f.bus.sentBy("b"), ","); got != "closed" {
		t.Fatalf("b sent %q", got)
	}
}

// A relay ignores its own messages, those it caused, stale ones and
// those about breakers it does not share.
func TestDeliverIgnores(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fleetUnderTest)
		msg   func(now time.Time) Message
		own   bool
	}{
		{name: "own open", own: true, msg: func(now time.Time) Message {
			return Message{Version: 1, Instance: "a", Origin: "a", Breaker: name, Kind: KindOpen, At: now}
		}},
		{name: "own failures", own: true, msg: func(now time.Time) Message {
			return Message{Version: 1, Instance: "a", Breaker: name, Kind: KindFailures, Count: 9, At: now}
		}},
		{name: "caused by it", own: true, msg: func(now time.Time) Message {
			return Message{Version: 1, Instance: "b", Origin: "a", Breaker: name, Kind: KindOpen, At: now}
		}},
		{name: "failures older than the window", msg: func(now time.Time) Message {
			return Message{Version: 1, Instance: "b", Breaker: name, Kind: KindFailures, Count: 9, At: now.Add(-breakerSettings.WindowSize)}
		}},
		{name: "open older than the window", msg: func(now time.Time) Message {
			return Message{Version: 1, Instance: "b", Breaker: name, Kind: KindOpen, At: now.Add(-breakerSettings.WindowSize)}
		}},
		{
			name:  "open from before the last transition",
			setup: func(t *testing.T, f *fleetUnderTest) { f.relays["a"].b.Reset() },
			msg: func(now time.Time) Message {
				return Message{Version: 1, Instance: "b", Breaker: name, Kind: KindOpen, At: now.Add(-time.Millisecond)}
			},
		},
		{
			name:  "closed from before the last transition",
			setup: func(t *testing.T, f *fleetUnderTest) { f.fail(t, "a", 5) },
			msg: func(now time.Time) Message {
				return Message{Version: 1, Instance: "b", Breaker: name, Kind: KindClosed, At: now.Add(-time.Millisecond)}
			},
		},
		{name: "closed while closed", msg: func(now time.Time) Message {
			return Message{Version: 1, Instance: "b", Breaker: name, Kind: KindClosed, At: now}
		}},
		{name: "half_open", msg: func(now time.Time) Message {
			return Message{Version: 1, Instance: "b", Breaker: name, Kind: KindHalfOpen, At: now}
		}},
		{name: "a breaker not shared here", msg: func(now time.Time) Message {
			return Message{Version: 1, Instance: "b", Breaker: "database", Kind: KindOpen, At: now}
		}},
		{name: "another version", msg: func(now time.Time) Message {
			return Message{Version: 2, Instance: "b", Breaker: name, Kind: KindOpen, At: now}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, "a")
			f.fc.Advance(time.Minute)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			r := f.relays["a"]
			before, gen, snap := len(r.rec.all()), r.b.Generation(), r.b.Snapshot()
			r.c.Deliver(tt.msg(f.fc.Now()))
			f.fc.Advance(DefaultMaxJitter)
			r.c.step(context.Background())
			after := r.b.Snapshot()
			if len(r.rec.all()) != before || r.b.Generation() != gen || after.FailureCount != snap.FailureCount || after.State != snap.State {
				t.Fatalf("the message changed the breaker: %+v -> %+v, transitions %+v", snap, after, r.rec.all()[before:])
			}
			c := r.c.Counts()
			if tt.own && (c.Own != 1 || c.Ignored != 0) || !tt.own && (c.Own != 0 || c.Ignored != 1) || c.Applied != 0 || c.Received != 1 {
				t.Fatalf("counts %+v", c)
			}
		})
	}
}

// A relay that cannot hear its peers decides alone, as without sharing,
// and the others go on without it.
func TestPartitionedDecidesAlone(t *testing.T) {
	f := newFleet(t, "a", "b", "c")
	f.bus.cut["c"] = true
	f.fail(t, "a", 3)
	f.fail(t, "b", 2)
	f.fail(t, "c", 4)
	f.settle(t)
	if got := f.states(); got != "open open closed" {
		t.Fatalf("states %q", got)
	}
	if c := f.relays["c"].c.Counts(); c.PublishErrors != 1 || c.Received != 0 {
		t.Fatalf("c: counts %+v, want its failures lost and nothing heard", c)
	}
	f.fail(t, "c", 1)
	f.settle(t)
	if got := f.states(); got != "open open open" {
		t.Fatalf("states %q", got)
	}
	if ts := f.relays["c"].rec.all(); len(ts) != 1 || ts[0].Origin != "" || ts[0].FailureCount != 5 {
		t.Fatalf("c: %+v, want an opening by its own 5 failures", ts)
	}
}

// Failure counts are batched: many failures within one flush interval go
// out as one message, and not before the interval has passed.
func TestFailuresBatched(t *testing.T) {
	f := newFleet(t, "a", "b")
	f.fail(t, "a", 3)
	f.fc.Advance(DefaultFlushInterval - time.Nanosecond)
	if next := f.relays["a"].c.step(context.Background()); next != time.Millisecond {
		t.Fatalf("step says next in %v, want the 1ms floor", next)
	}
	if len(f.bus.sent) != 0 {
		t.Fatalf("sent %v before the flush interval", f.bus.sent)
	}
	f.fc.Advance(time.Nanosecond)
	if next := f.relays["a"].c.step(context.Background()); next != 0 {
		t.Fatalf("step says next in %v with nothing planned", next)
	}
	if got := strings.Join(f.bus.sentBy("a"), ","); got != "failures3" {
		t.Fatalf("sent %q, want one batch of 3", got)
	}
	m := f.bus.sent[0]
	if m.Reason != "HTTP 503" || !m.At.Equal(start) || m.Breaker != name || m.Version != Version {
		t.Fatalf("message %+v", m)
	}
	f.bus.pump(t)
	if s := f.relays["b"].b.Snapshot(); s.FailureCount != 3 || s.LastFailure != "at a: HTTP 503" {
		t.Fatalf("b: %+v", s)
	}
}

func TestNewAndShare(t *testing.T) {
	tr := busTransport{b: &bus{}}
	if _, err := New("", tr); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("New without instance: %v", err)
	}
	if _, err := New("a", nil); !errors.Is(err, ErrNoTransport) {
		t.Fatalf("New without transport: %v", err)
	}
	c, err := New("a", tr, nil, WithLogger(nil), WithFlushInterval(-1), WithMaxJitter(-1), WithPublishTimeout(0), WithRand(nil), WithClock(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.o.flush != DefaultFlushInterval || c.o.maxJitter != DefaultMaxJitter || c.o.publishTimeout != DefaultPublishTimeout {
		t.Fatalf("bad options were not ignored: %+v", c.o)
	}
	b1, _ := breaker.New(name, breaker.Settings{})
	b2, _ := breaker.New(name, breaker.Settings{})
	if err := c.Share(b1); err != nil {
		t.Fatal(err)
	}
	if err := c.Share(b2); !errors.Is(err, ErrAlreadyShared) {
		t.Fatalf("second Share of %s: %v", name, err)
	}
}

// An unshared breaker decides alone: what it does stays here, what the
// peers do does not reach it. Shared again, it is one of the fleet's
// once more, without a second set of listeners.
func TestUnshareAndShareAgain(t *testing.T) {
	f := newFleet(t, "a", "b")
	a, b := f.relays["a"], f.relays["b"]
	f.fail(t, "a", 2) // counted, not yet sent: dropped by Unshare
	if !a.c.Unshare(name) || a.c.Unshare(name) {
		t.Fatal("Unshare of a shared breaker must report true once")
	}
	if got := a.c.Shared(); len(got) != 0 {
		t.Fatalf("Shared after Unshare = %q", got)
	}
	f.fail(t, "b", 5) // b opens, and tells a, which no longer listens
	f.settle(t)
	if got := f.states(); got != "closed open" {
		t.Fatalf("states %q, want a deciding alone (closed) and b open", got)
	}
	if got := f.bus.sentBy("a"); len(got) != 0 {
		t.Fatalf("a, unshared, sent %q", got)
	}
	f.fail(t, "a", 3) // with its own 2, a opens by itself and tells nobody
	f.settle(t)
	if got := a.b.State(); got != breaker.Open {
		t.Fatalf("a is %s after its own five failures", got)
	}
	if got := f.bus.sentBy("a"); len(got) != 0 {
		t.Fatalf("a, unshared, sent %q on opening", got)
	}

	if err := a.c.Share(a.b); err != nil {
		t.Fatalf("sharing a again: %v", err)
	}
	if got := a.c.Shared(); len(got) != 1 || got[0] != name {
		t.Fatalf("Shared after sharing again = %q", got)
	}
	a.b.Reset()
	b.b.Reset()
	f.settle(t)
	before := len(f.bus.sentBy("a"))
	a.b.ForceOpen()
	f.settle(t)
	if got := f.bus.sentBy("a")[before:]; len(got) != 1 || got[0] != "open" {
		t.Fatalf("a, shared again, sent %q on opening, want one open (one set of listeners)", got)
	}
	if got := b.b.State(); got != breaker.Open {
		t.Fatalf("b is %s after a, shared again, opened", got)
	}
}
