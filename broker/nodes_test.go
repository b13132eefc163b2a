package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
)

func TestSplitURLs(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"amqp://a/", []string{"amqp://a/"}},
		{"amqp://u:p@a:5672/, amqp://u:p@b:5672/", []string{"amqp://u:p@a:5672/", "amqp://u:p@b:5672/"}},
		{" amqp://a/ ,, amqp://b/,", []string{"amqp://a/", "amqp://b/"}},
	}
	for _, c := range cases {
		if got := SplitURLs(c.in); !slices.Equal(got, c.want) {
			t.Errorf("SplitURLs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestNodeAddr(t *testing.T) {
	cases := []struct {
		url, want string
		bad       bool
	}{
		{url: "amqp://guest:guest@127.0.0.1:5672/", want: "127.0.0.1:5672"},
		{url: "amqp://u:p@rmq-0/vh", want: "rmq-0:5672"},
		{url: "amqps://u:p@rmq-1.example/", want: "rmq-1.example:5671"},
		{url: "amqp://u:p@[::1]:5673/", want: "[::1]:5673"},
		{url: "http://u:s3cret@rmq-0:5672/", bad: true},
		{url: "amqp://u:s3cret@rmq-0:port/", bad: true},
		{url: "amqp://u:s3cret@rmq 0/", bad: true},
	}
	for _, c := range cases {
		got, err := NodeAddr(c.url)
		if c.bad {
			if !errors.Is(err, ErrInvalidURL) {
				t.Errorf("NodeAddr(%q): want ErrInvalidURL, got %q, %v", c.url, got, err)
			} else if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("NodeAddr(%q): the error shows the password: %v", c.url, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("NodeAddr(%q) = %q, %v; want %q", c.url, got, err, c.want)
		}
	}
}

func testNodes(n int) []node {
	nodes := make([]node, n)
	for i := range nodes {
		addr := fmt.Sprintf("rmq-%d:5672", i)
		nodes[i] = node{url: "amqp://u:p@" + addr + "/", addr: addr}
	}
	return nodes
}

// TestDialRoundsWaitsOnlyAfterAWholeRound drives the dial loop with a
// fake dial that fails a given number of times: each node is tried once
// per round, from the start node on, and the backoff is waited only
// between rounds.
func TestDialRoundsWaitsOnlyAfterAWholeRound(t *testing.T) {
	cases := []struct {
		name      string
		nodes     int
		start     int
		failures  int
		wantOrder string // nodes dialled, "|" where the loop waited
		wantNode  int
	}{
		{name: "one node up", nodes: 1, failures: 0, wantOrder: "0", wantNode: 0},
		{name: "one node, two failures", nodes: 1, failures: 2, wantOrder: "0|0|0", wantNode: 0},
		{name: "three nodes, first answers", nodes: 3, start: 2, failures: 0, wantOrder: "2", wantNode: 2},
		{name: "three nodes, next answers", nodes: 3, start: 2, failures: 1, wantOrder: "20", wantNode: 0},
		{name: "three nodes, a round and one", nodes: 3, start: 1, failures: 3, wantOrder: "120|1", wantNode: 1},
		{name: "three nodes, two rounds and two", nodes: 3, start: 1, failures: 7, wantOrder: "120|120|12", wantNode: 2},
		{name: "start beyond the list wraps", nodes: 2, start: 5, failures: 2, wantOrder: "10|1", wantNode: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRing(testNodes(c.nodes), c.start, backoff.Policy{Initial: time.Millisecond, Max: time.Millisecond})
			var order strings.Builder
			calls := 0
			dial := func(n node) (string, error) {
				order.WriteString(strings.TrimSuffix(strings.TrimPrefix(n.addr, "rmq-"), ":5672"))
				calls++
				if calls <= c.failures {
					return "", errors.New("connection refused")
				}
				return "conn to " + n.addr, nil
			}
			sleep := func(context.Context, time.Duration) error {
				order.WriteString("|")
				return nil
			}
			var rounds int
			failed := func(_ node, _ error, roundOver bool) {
				if roundOver {
					rounds++
				}
			}
			conn, n, err := dialRounds(context.Background(), r, sleep, dial,
				func(error) bool { return false }, failed)
			if err != nil {
				t.Fatal(err)
			}
			if got := order.String(); got != c.wantOrder {
				t.Errorf("dialled %q, want %q", got, c.wantOrder)
			}
			if want := fmt.Sprintf("rmq-%d:5672", c.wantNode); n.addr != want || conn != "conn to "+want {
				t.Errorf("connected to %s (%q), want %s", n.addr, conn, want)
			}
			if want := strings.Count(c.wantOrder, "|"); rounds != want {
				t.Errorf("%d rounds reported over, want %d", rounds, want)
			}
		})
	}
}

func TestDialRoundsStopsAtAPermanentError(t *testing.T) {
	r := newRing(testNodes(3), 0, backoff.Policy{})
	refused := fmt.Errorf("%w by rmq-0:5672: bad password", ErrRefused)
	dials := 0
	_, n, err := dialRounds(context.Background(), r,
		func(context.Context, time.Duration) error { t.Error("waited"); return nil },
		func(node) (int, error) { dials++; return 0, refused },
		func(err error) bool { return errors.Is(err, ErrRefused) },
		func(node, error, bool) { t.Error("a permanent error was reported as a failed dial") })
	if !errors.Is(err, ErrRefused) || dials != 1 || n.addr != "rmq-0:5672" {
		t.Fatalf("got %v at %s after %d dials; want the refusal of rmq-0 after 1", err, n.addr, dials)
	}
}

func TestDialRoundsEndsWithItsContext(t *testing.T) {
	r := newRing(testNodes(3), 0, backoff.Policy{})
	ctx, cancel := context.WithCancel(context.Background())
	dials := 0
	_, _, err := dialRounds(ctx, r, backoff.Sleep,
		func(node) (int, error) { dials++; cancel(); return 0, errors.New("timeout") },
		func(error) bool { return false }, func(node, error, bool) {})
	if !errors.Is(err, context.Canceled) || dials != 1 {
		t.Fatalf("got %v after %d dials; want context.Canceled after 1", err, dials)
	}
}

func TestRingLost(t *testing.T) {
	cases := []struct {
		name       string
		nodes      int
		failBefore int // dials failed before the connection that is lost
		stable     bool
		wantNext   int
		wantRound  bool
	}{
		{name: "stable, three nodes", nodes: 3, stable: true, wantNext: 1},
		{name: "stable, one node: redial it at once", nodes: 1, stable: true, wantNext: 0},
		{name: "stable after failures: a fresh round", nodes: 3, failBefore: 2, stable: true, wantNext: 0},
		{name: "dropped at once, three nodes", nodes: 3, stable: false, wantNext: 1},
		{name: "dropped at once, one node: wait first", nodes: 1, stable: false, wantNext: 0, wantRound: true},
		{name: "dropped at once, two nodes", nodes: 2, stable: false, wantNext: 1},
		{name: "dropped at once after failures: the round is over", nodes: 3, failBefore: 2, stable: false, wantNext: 0, wantRound: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRing(testNodes(c.nodes), 0, backoff.Policy{})
			for range c.failBefore {
				if r.fail() {
					t.Fatal("a round ended before the connection was made")
				}
			}
			if round := r.lost(c.stable); round != c.wantRound {
				t.Errorf("lost reported round over %v, want %v", round, c.wantRound)
			}
			if r.cur != c.wantNext {
				t.Errorf("next node %d, want %d", r.cur, c.wantNext)
			}
		})
	}
}

// TestRingBackoffGrowsUntilAConnectionIsStable: nodes that accept every
// connection and drop it at once are dialled at a pace that slows down
// round after round, and a stable connection starts the pace over.
func TestRingBackoffGrowsUntilAConnectionIsStable(t *testing.T) {
	r := newRing(testNodes(2), 0, backoff.Policy{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: backoff.None, MaxRetries: 100})
	var waits []time.Duration
	for range 6 { // connected, dropped at once, six times over
		if r.lost(false) {
			waits = append(waits, r.wait())
		}
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	r.lost(true)
	r.lost(false)
	if !r.lost(false) {
		t.Fatal("two quick drops on two nodes did not end a round")
	}
	if d := r.wait(); d != time.Second {
		t.Fatalf("after a stable connection the wait is %v, want the initial 1s", d)
	}
}

// fakeDial returns a dial function for Options.dial that fails every
// dial with err and records the nodes dialled and when.
type fakeDial struct {
	err   error
	addrs []string
	at    []time.Time
}

func (f *fakeDial) dial(url string, cfg amqp.Config) (*amqp.Connection, error) {
	addr, err := NodeAddr(url)
	if err != nil {
		return nil, err
	}
	f.addrs = append(f.addrs, addr)
	f.at = append(f.at, time.Now())
	return nil, f.err
}

func TestDialGoesRoundTheNodesAndTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDial{err: errors.New("dial tcp: connection refused")}
		urls := []string{"amqp://u:s3cret@rmq-0:5672/", "amqp://u:s3cret@rmq-1:5672/", "amqp://u:s3cret@rmq-2:5672/"}
		_, err := Dial(context.Background(), Options{Name: "t", URLs: urls, ConnectTimeout: time.Second,
			ReconnectInitial: 100 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
			dial: f.dial, start: func(n int) int { return 1 }})
		if err == nil {
			t.Fatal("Dial succeeded with every node down")
		}
		msg := err.Error()
		if strings.Contains(msg, "s3cret") {
			t.Errorf("the error shows the password: %s", msg)
		}
		for _, want := range []string{"amqp://u:***@rmq-0:5672/,amqp://u:***@rmq-1:5672/,amqp://u:***@rmq-2:5672/", "within 1s", "connection refused"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not say %q", msg, want)
			}
		}
		if len(f.addrs) < 6 {
			t.Fatalf("only %d dials in 1s with a 100ms backoff: %v", len(f.addrs), f.addrs)
		}
		for i, addr := range f.addrs {
			if want := fmt.Sprintf("rmq-%d:5672", (1+i)%3); addr != want {
				t.Fatalf("dial %d went to %s, want %s (order %v)", i, addr, want, f.addrs)
			}
			// Within a round no time passes; between rounds the backoff does.
			if i > 0 && (i%3 == 0) == f.at[i].Equal(f.at[i-1]) {
				t.Errorf("dial %d at %v after dial %d at %v: want a wait only between rounds", i, f.at[i], i-1, f.at[i-1])
			}
		}
	})
}

func TestDialRefusalFailsAtOnce(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		refused bool
	}{
		{name: "bad credentials", err: amqp.ErrCredentials, refused: true},
		{name: "no shared mechanism", err: amqp.ErrSASL, refused: true},
		{name: "unknown vhost", err: &amqp.Error{Code: amqp.NotAllowed, Reason: "NOT_ALLOWED - vhost nope not found", Server: true}, refused: true},
		{name: "vhost access", err: &amqp.Error{Code: amqp.AccessRefused, Reason: "ACCESS_REFUSED - access to vhost 'v' refused for user 'u'", Server: true}, refused: true},
		{name: "connection limit", err: &amqp.Error{Code: amqp.NotAllowed, Reason: "NOT_ALLOWED - access to vhost '/' refused for user 'u': connection limit (5) is reached", Server: true}},
		{name: "network", err: errors.New("dial tcp 10.0.0.1:5672: i/o timeout")},
		{name: "frame", err: amqp.ErrFrame},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeDial{err: c.err}
				_, err := Dial(context.Background(), Options{Name: "t", URLs: []string{"amqp://u:s3cret@rmq-0:5672/", "amqp://u:s3cret@rmq-1:5672/"},
					ConnectTimeout: time.Minute, dial: f.dial, start: func(int) int { return 0 }})
				if got := errors.Is(err, ErrRefused); got != c.refused {
					t.Fatalf("errors.Is(%v, ErrRefused) = %v, want %v", err, got, c.refused)
				}
				if !c.refused {
					return
				}
				if len(f.addrs) != 1 {
					t.Errorf("%d dials, want 1: a refusal is not retried", len(f.addrs))
				}
				var ae *amqp.Error
				errors.As(c.err, &ae)
				if msg := err.Error(); !strings.Contains(msg, "rmq-0:5672") || !strings.Contains(msg, ae.Reason) {
					t.Errorf("error %q does not name the node and the broker's reason %q", msg, ae.Reason)
				}
			})
		})
	}
}

func TestDialInvalidURLFailsAtOnce(t *testing.T) {
	f := &fakeDial{}
	for _, urls := range [][]string{
		{"amqp://u:s3cret@rmq-0:5672/", "amqq://u:s3cret@rmq-1:5672/"},
		{},
		{" , "},
	} {
		_, err := Dial(context.Background(), Options{Name: "t", URLs: urls, dial: f.dial})
		if !errors.Is(err, ErrInvalidURL) {
			t.Errorf("Dial(%q): want ErrInvalidURL, got %v", urls, err)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Dial(%q): the error shows the password: %v", urls, err)
		}
	}
	if len(f.addrs) != 0 {
		t.Errorf("dialled %v with an invalid list", f.addrs)
	}
}
