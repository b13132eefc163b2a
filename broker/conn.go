package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/internal/corkconn"
)

// Options configure a Conn. Zero values mean the defaults noted.
type Options struct {
	// Name is the connection's role ("consume", "publish", an outbound
	// destination); it appears in logs, in events and, with Instance, as
	// the broker-side connection_name.
	Name string
	// Instance identifies this relay process.
	Instance string
	// URLs are the URLs (amqp:// or amqps://) of one cluster's nodes, or
	// of a single broker. Dial starts at a random node; a failed dial or a
	// lost connection moves on to the next node, and the reconnect
	// backoff is waited only after a whole round of them failed.
	URLs []string
	// URL is used when URLs is empty: one broker URL, or a
	// comma-separated list of them (see SplitURLs).
	URL string
	// TLS is used for amqps:// URLs. Nil: the system roots.
	TLS *tls.Config
	// ConnectTimeout bounds the first connection, topology included.
	// Zero: 30s.
	ConnectTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval. Zero: 10s.
	Heartbeat time.Duration
	// ReconnectInitial and ReconnectMax bound the redial delays
	// (exponential, full jitter). Zero: 250ms and 30s.
	ReconnectInitial, ReconnectMax time.Duration
	// Topology, when set, declares what this connection's users need. It
	// runs after every (re)connect, before the connection is handed out,
	// and opens (and closes) the channels it needs: a failed passive
	// declare closes its channel, so it may need more than one. An error
	// on the first connect fails Dial; on a reconnect the connection is
	// dropped and dialled again.
	Topology func(conn *amqp.Connection) error
	// Logger receives connection life-cycle lines. Nil: discarded.
	Logger *slog.Logger
	// OnConfirm, when set, learns the outcome of every publish made on
	// this connection (what Confirmation.Err returns), for metrics. It is
	// called from the publisher's confirm goroutine and must not block.
	OnConfirm func(err error)

	// dial and start stand in for amqp.DialConfig and the random choice
	// of the first node, in tests.
	dial  func(url string, cfg amqp.Config) (*amqp.Connection, error)
	start func(n int) int
}

// redialPolicy paces redials: exponential from ReconnectInitial to
// ReconnectMax with full jitter, for as long as it takes.
func (o Options) redialPolicy() backoff.Policy {
	return backoff.Policy{Initial: o.ReconnectInitial, Max: o.ReconnectMax, Multiplier: 2, Jitter: backoff.Full, MaxRetries: math.MaxInt}
}

func (o Options) withDefaults() Options {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 10 * time.Second
	}
	if o.ReconnectInitial <= 0 {
		o.ReconnectInitial = 250 * time.Millisecond
	}
	if o.ReconnectMax <= 0 {
		o.ReconnectMax = 30 * time.Second
	}
	if o.ReconnectMax < o.ReconnectInitial {
		o.ReconnectMax = o.ReconnectInitial
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.dial == nil {
		o.dial = amqp.DialConfig
	}
	if o.start == nil {
		o.start = rand.IntN
	}
	return o
}

// EventKind says what happened to a connection.
type EventKind int

const (
	// Connected: a connection is up and its topology declared. Downtime
	// is how long it was away (zero for the first connect).
	Connected EventKind = iota
	// Lost: the connection died; Reason says why. Redialling follows.
	Lost
	// Blocked: the broker stopped reading this connection's publishes
	// (connection.blocked, usually a memory or disk alarm).
	Blocked
	// Unblocked: the broker reads publishes again.
	Unblocked
)

func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Lost:
		return "lost"
	case Blocked:
		return "blocked"
	case Unblocked:
		return "unblocked"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one connection life-cycle change.
type Event struct {
	Conn     string // Options.Name
	Node     string // host:port of the node the connection is (or was) on
	Kind     EventKind
	Reason   string
	Downtime time.Duration // with Connected after a loss, and with Unblocked
	At       time.Time
}

// Conn is a self-healing broker connection. It is safe for concurrent use.
type Conn struct {
	opts Options
	log  *slog.Logger

	// ring is the node list; only the dial loop (Dial, then supervise)
	// touches it.
	ring *ring

	mu           sync.Mutex
	conn         *amqp.Connection
	node         node      // the node conn is on
	upSince      time.Time // when conn was made
	gen          uint64
	ready        chan struct{} // closed while connected
	unblocked    chan struct{} // closed while not blocked
	blockedSince time.Time
	lostAt       time.Time
	closed       bool

	done chan struct{}
	life context.Context // cancelled with done, for the redial loop
	end  context.CancelFunc
	wg   sync.WaitGroup

	notify notifier[Event]
}

// Dial connects to the broker, runs the topology, and keeps the
// connection up until Close. The first connection must be made within
// Options.ConnectTimeout (and ctx); otherwise Dial returns an error that
// names the (redacted) URLs and the last dial error. Some errors end Dial
// at once, as retrying cannot cure them: a malformed URL (ErrInvalidURL),
// the broker's refusal of the credentials or the virtual host
// (ErrRefused, with the broker's reason), and a failed topology.
func Dial(ctx context.Context, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	urls := opts.URLs
	if len(urls) == 0 {
		urls = SplitURLs(opts.URL)
	}
	nodes, err := parseNodes(urls)
	if err != nil {
		return nil, err
	}
	life, end := context.WithCancel(context.Background())
	c := &Conn{
		opts:      opts,
		log:       opts.Logger.With("conn", opts.Name),
		ring:      newRing(nodes, opts.start(len(nodes)), opts.redialPolicy()),
		ready:     make(chan struct{}),
		unblocked: make(chan struct{}),
		done:      make(chan struct{}),
		life:      life,
		end:       end,
	}
	close(c.unblocked)

	ctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	var lastErr error
	var lastNode node
	conn, n, err := dialRounds(ctx, c.ring, backoff.Sleep, c.connect,
		func(err error) bool {
			var topo *topologyError
			return errors.As(err, &topo) || errors.Is(err, ErrRefused)
		},
		func(n node, err error, roundOver bool) {
			lastErr, lastNode = err, n
			if roundOver {
				c.log.Warn("broker connection failed, retrying", "node", n.addr, "err", err.Error())
			} else {
				c.log.Warn("broker connection failed, trying the next node", "node", n.addr, "err", err.Error())
			}
		})
	if err == nil {
		c.install(conn, n, 0)
		c.wg.Add(1)
		go c.supervise(conn)
		return c, nil
	}
	end()
	var topo *topologyError
	switch {
	case errors.As(err, &topo):
		return nil, fmt.Errorf("broker %s: %w", RedactURL(n.url), err)
	case errors.Is(err, ErrRefused):
		return nil, err
	}
	if lastErr == nil {
		lastErr = err
	}
	last := lastErr.Error()
	if len(nodes) > 1 {
		last = lastNode.addr + ": " + last
	}
	return nil, fmt.Errorf("could not connect to broker %s within %s: %s",
		redactURLs(nodes), opts.ConnectTimeout, last)
}

func redactURLs(nodes []node) string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = RedactURL(n.url)
	}
	return strings.Join(out, ",")
}

type topologyError struct{ err error }

func (e *topologyError) Error() string { return "declaring topology: " + e.err.Error() }
func (e *topologyError) Unwrap() error { return e.err }

// connect dials one node once and declares the topology.
func (c *Conn) connect(n node) (*amqp.Connection, error) {
	dialTimeout := c.opts.ConnectTimeout
	if dialTimeout > 10*time.Second {
		dialTimeout = 10 * time.Second
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(connectionName(c.opts.Instance, c.opts.Name) + " @" + n.addr)
	conn, err := c.opts.dial(n.url, amqp.Config{
		Heartbeat: c.opts.Heartbeat,
		// amqp091 writes the URL's host into an empty ServerName of the
		// config it is handed; the relay shares one config among its
		// connections, which may dial different hosts (and concurrently).
		TLSClientConfig: c.opts.TLS.Clone(),
		Properties:      props,
		Locale:          "en_US",
		Dial:            corkedDial(dialTimeout),
	})
	if err != nil {
		if reason, ok := refusal(err); ok {
			return nil, fmt.Errorf("%w by %s: %s", ErrRefused, n.addr, redactErr(errors.New(reason), n.url))
		}
		return nil, errors.New(redactErr(err, n.url))
	}
	if c.opts.Topology != nil {
		if err := c.opts.Topology(conn); err != nil {
			conn.Close()
			return nil, &topologyError{err}
		}
	}
	return conn, nil
}

// corkedDial dials TCP and coalesces the connection's writes (see
// corkConn); TLS, when the URL asks for it, is layered on top.
func corkedDial(timeout time.Duration) func(network, addr string) (net.Conn, error) {
	dial := amqp.DefaultDial(timeout)
	return func(network, addr string) (net.Conn, error) {
		c, err := dial(network, addr)
		if err != nil {
			return nil, err
		}
		return corkconn.New(c), nil
	}
}

// connectionName starts the connection_name a relay connection shows in
// the broker (rabbitmqctl list_connections name client_properties),
// which goes on with " @host:port", the node it is on.
func connectionName(instance, name string) string {
	if instance == "" {
		return "relay " + name
	}
	return "relay " + instance + " " + name
}

// install makes conn, on node n, the current connection and announces it.
func (c *Conn) install(conn *amqp.Connection, n node, downtime time.Duration) {
	now := time.Now()
	c.mu.Lock()
	c.conn = conn
	c.node = n
	c.upSince = now
	c.gen++
	close(c.ready)
	c.mu.Unlock()
	c.log.Info("broker connected", "node", n.addr, "downtime", downtime)
	c.emit(Event{Conn: c.opts.Name, Node: n.addr, Kind: Connected, Downtime: downtime, At: now})
}

// supervise watches the current connection and redials when it dies.
func (c *Conn) supervise(conn *amqp.Connection) {
	defer c.wg.Done()
	for {
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 8))
		reason := c.watch(conn, closed, blocks)
		if reason == "" { // Close was called
			return
		}
		stable := c.markLost(reason)
		next, n, downtime, ok := c.redial(stable)
		if !ok {
			return
		}
		conn = next
		c.install(conn, n, downtime)
	}
}

// watch returns why conn died, or "" when the Conn is being closed.
func (c *Conn) watch(conn *amqp.Connection, closed <-chan *amqp.Error, blocks <-chan amqp.Blocking) string {
	for {
		select {
		case <-c.done:
			c.closeConn(conn)
			return ""
		case b, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			c.setBlocked(b.Active, b.Reason)
		case err, ok := <-closed:
			if !ok || err == nil {
				return "connection closed"
			}
			return redactErr(err, c.nodeNow().url)
		}
	}
}

// closeTimeout bounds the close handshake of a connection being closed.
const closeTimeout = 5 * time.Second

// closeConn closes conn with a bounded handshake. The broker reads nothing
// from a connection it has blocked, not even connection.close, until the
// alarm clears (which may take hours): a blocked connection is dropped at
// once.
func (c *Conn) closeConn(conn *amqp.Connection) {
	deadline := time.Now().Add(closeTimeout)
	if c.Blocked() {
		deadline = time.Now()
	}
	_ = conn.CloseDeadline(deadline)
}

func (c *Conn) setBlocked(active bool, reason string) {
	now := time.Now()
	c.mu.Lock()
	wasBlocked := !c.blockedSince.IsZero()
	var since time.Time
	switch {
	case active && !wasBlocked:
		c.blockedSince = now
		c.unblocked = make(chan struct{})
	case !active && wasBlocked:
		since = c.blockedSince
		c.blockedSince = time.Time{}
		close(c.unblocked)
	default:
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	addr := c.nodeNow().addr
	if active {
		c.log.Warn("broker blocked this connection", "node", addr, "reason", reason)
		c.emit(Event{Conn: c.opts.Name, Node: addr, Kind: Blocked, Reason: reason, At: now})
		return
	}
	c.log.Info("broker unblocked this connection", "node", addr, "blocked_for", now.Sub(since))
	c.emit(Event{Conn: c.opts.Name, Node: addr, Kind: Unblocked, Downtime: now.Sub(since), At: now})
}

// markLost records the loss of the current connection and reports
// whether it had been up long enough to count as stable (see ring.lost).
func (c *Conn) markLost(reason string) (stable bool) {
	now := time.Now()
	// A lost connection is no longer blocked: the next one starts fresh.
	// Unblocked is announced before Lost, with the node still known.
	c.setBlocked(false, "")
	c.mu.Lock()
	c.conn = nil
	lost := c.node
	c.node = node{}
	stable = now.Sub(c.upSince) >= stableAfter
	c.ready = make(chan struct{})
	c.lostAt = now
	c.mu.Unlock()
	c.log.Warn("broker connection lost", "node", lost.addr, "reason", reason)
	c.emit(Event{Conn: c.opts.Name, Node: lost.addr, Kind: Lost, Reason: reason, At: now})
	return stable
}

// redial dials the nodes, from the one after the lost one, until one
// answers or the Conn is closed.
func (c *Conn) redial(stable bool) (*amqp.Connection, node, time.Duration, bool) {
	if c.ring.lost(stable) {
		if backoff.Sleep(c.life, c.ring.wait()) != nil {
			return nil, node{}, 0, false
		}
	}
	conn, n, err := dialRounds(c.life, c.ring, backoff.Sleep, c.connect,
		func(error) bool { return false },
		func(n node, err error, _ bool) {
			if errors.Is(err, ErrRefused) {
				// Retried all the same: an operator may fix the user
				// while the relay runs.
				c.log.Error("broker refused the connection", "node", n.addr, "err", err.Error())
				return
			}
			c.log.Warn("broker reconnect failed", "node", n.addr, "err", err.Error())
		})
	if err != nil {
		return nil, node{}, 0, false
	}
	c.mu.Lock()
	downtime := time.Since(c.lostAt)
	c.mu.Unlock()
	return conn, n, downtime, true
}

// nodeNow is the node of the current connection (zero while down).
func (c *Conn) nodeNow() node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node
}

// Node returns the host:port of the node the connection is on, without
// credentials, or "" while it is down.
func (c *Conn) Node() string { return c.nodeNow().addr }

// Redeclare runs the Topology again on the current connection, for a user
// that found something missing (a queue deleted under a consumer).
func (c *Conn) Redeclare(ctx context.Context) error {
	if c.opts.Topology == nil {
		return nil
	}
	conn, _, err := c.current(ctx)
	if err != nil {
		return err
	}
	if err := c.opts.Topology(conn); err != nil {
		return &topologyError{err}
	}
	return nil
}

// Connected reports whether a connection is up.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// Blocked reports whether the broker has blocked this connection.
func (c *Conn) Blocked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.blockedSince.IsZero()
}

// Name returns Options.Name.
func (c *Conn) Name() string { return c.opts.Name }

// OnEvent adds a listener for connection events. Listeners are called in
// order of events, outside any lock, from the goroutine that raised the
// event; they must not block for long.
func (c *Conn) OnEvent(fn func(Event)) { c.notify.add(fn) }

func (c *Conn) emit(ev Event) { c.notify.emit(ev) }

// current waits until a connection is up and returns it with its
// generation.
func (c *Conn) current(ctx context.Context) (*amqp.Connection, uint64, error) {
	for {
		c.mu.Lock()
		conn, gen, ready, closed := c.conn, c.gen, c.ready, c.closed
		c.mu.Unlock()
		if closed {
			return nil, 0, ErrClosed
		}
		if conn != nil && !conn.IsClosed() {
			return conn, gen, nil
		}
		if conn != nil {
			// Closed but not yet replaced: the supervisor is about to
			// notice. Wait a moment rather than spin on the old ready.
			ready = nil
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ready:
		case <-c.done:
			return nil, 0, ErrClosed
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// Channel opens a channel on the current connection, waiting for one to
// be up. The generation changes with every new connection. It returns an
// error only when ctx ends or the Conn is closed: a channel that cannot be
// opened on a dying connection is tried again on the next one.
func (c *Conn) Channel(ctx context.Context) (*amqp.Channel, uint64, error) {
	for {
		conn, gen, err := c.current(ctx)
		if err != nil {
			return nil, 0, err
		}
		ch, err := conn.Channel()
		if err == nil {
			return ch, gen, nil
		}
		if !conn.IsClosed() {
			c.log.Warn("opening a channel failed, retrying", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-c.done:
			return nil, 0, ErrClosed
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitUnblocked returns once the connection is not blocked (at once when
// it is not), or with ctx's error.
func (c *Conn) WaitUnblocked(ctx context.Context) error {
	c.mu.Lock()
	ch := c.unblocked
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
}

// Close closes the connection and stops redialling. Consumers and
// publishers on it end; unconfirmed publishes resolve with ErrLost.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	c.end()
	c.wg.Wait()
	return nil
}

// Done is closed when Close is called.
func (c *Conn) Done() <-chan struct{} { return c.done }
