package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
)

// SplitURLs splits a comma-separated list of broker URLs, the form of
// amqp.url and of an outbound entry's url, trimming the spaces around
// each and dropping empty items. One URL gives a list of one.
func SplitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// NodeAddr returns the host:port a broker URL dials, with the scheme's
// default port filled in and no credentials: how a node is named in
// /health, in logs and in connection names.
func NodeAddr(rawURL string) (string, error) {
	u, err := amqp.ParseURI(rawURL)
	if err != nil {
		return "", invalidURL(rawURL, err)
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), nil
}

// invalidURL wraps ErrInvalidURL with what was wrong, never quoting the
// URL itself: url.Parse's errors repeat it, password included.
func invalidURL(rawURL string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w %s: %s", ErrInvalidURL, RedactURL(rawURL), redactErr(err, rawURL))
}

// node is one broker of a cluster list.
type node struct {
	url  string // as configured, credentials included
	addr string // host:port
}

// parseNodes checks every URL of a list up front, so that a malformed
// one fails Dial at once instead of being dialled in vain.
func parseNodes(urls []string) ([]node, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: no broker URL", ErrInvalidURL)
	}
	nodes := make([]node, 0, len(urls))
	for _, u := range urls {
		addr, err := NodeAddr(u)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, node{url: u, addr: addr})
	}
	return nodes, nil
}

// ring walks a cluster's node list: it starts where it is told (at random,
// by Dial), moves on to the next node after every failed dial and every
// lost connection, and says when a whole round has failed, which is when
// the caller waits its backoff, also kept here. Not safe for concurrent
// use: one dial loop owns it.
type ring struct {
	nodes  []node
	cur    int
	failed int // dials failed since the last wait or the last stable connection
	policy backoff.Policy
	delay  backoff.Backoff // grows with every wait, until a connection proves stable
}

func newRing(nodes []node, start int, policy backoff.Policy) *ring {
	return &ring{nodes: nodes, cur: start % len(nodes), policy: policy, delay: policy.Start()}
}

// wait returns the backoff before the next round.
func (r *ring) wait() time.Duration {
	d, _ := r.delay.Next()
	return d
}

func (r *ring) node() node { return r.nodes[r.cur] }

// fail records a failed dial of the current node and moves on. It
// reports whether every node has now failed once in a row, a whole round.
func (r *ring) fail() (roundOver bool) {
	r.cur = (r.cur + 1) % len(r.nodes)
	r.failed++
	if r.failed >= len(r.nodes) {
		r.failed = 0
		return true
	}
	return false
}

// lost records the loss of the connection to the current node; the next
// dial goes to the next node. A connection that was up for a while
// (stable) starts afresh: no failures, the backoff from its start. One
// that was not counts as a failed dial, and the failures before it still
// count: a cluster whose nodes drop every connection at once must not
// make the loop redial without pause.
func (r *ring) lost(stable bool) (roundOver bool) {
	if !stable {
		return r.fail()
	}
	r.cur = (r.cur + 1) % len(r.nodes)
	r.failed = 0
	r.delay = r.policy.Start()
	return false
}

// stableAfter is how long a connection must have been up for its loss to
// start a fresh round rather than count as a failed dial.
const stableAfter = 5 * time.Second

// dialRounds dials the ring's nodes, one after another, until one
// answers, waiting the ring's backoff (through sleep) only after a whole
// round failed. It ends early with ctx's error, or with the error of a
// dial that stop says retrying cannot cure. failed learns of every failed
// dial, with whether it ended a round.
func dialRounds[C any](ctx context.Context, r *ring,
	sleep func(context.Context, time.Duration) error,
	dial func(node) (C, error), stop func(error) bool,
	failed func(n node, err error, roundOver bool),
) (C, node, error) {
	var zero C
	for {
		n := r.node()
		conn, err := dial(n)
		if err == nil {
			return conn, n, nil
		}
		if stop(err) {
			return zero, n, err
		}
		roundOver := r.fail()
		failed(n, err, roundOver)
		if !roundOver {
			if ctx.Err() != nil {
				return zero, n, ctx.Err()
			}
			continue
		}
		if err := sleep(ctx, r.wait()); err != nil {
			return zero, n, err
		}
	}
}
