package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/dispatch"
	"github.com/vsm-relay/relay/internal/amqpheader"
	"github.com/vsm-relay/relay/relay"
)

func init() { extraCommands = append(extraCommands, newDLQCmd) }

const (
	// replayWindow bounds the replayed dead letters awaiting their confirm,
	// and is the prefetch of the replay's consumer: a crash in the middle
	// of a replay leaves at most this many in both queues.
	replayWindow = 100
	// replayProgressEvery is how many dead letters, at most, pass between
	// two progress lines of a replay (a line also goes out every second).
	replayProgressEvery = 1000
	// maxPrefetch is the largest prefetch count AMQP carries (a short);
	// a longer listing asks for no limit.
	maxPrefetch = math.MaxUint16
	// headerReplayed counts the replays a message went through.
	headerReplayed = "x-relay-replayed"
)

// replayDropped are the headers a replay removes: the relay's record of
// the failed attempts, so that the task starts afresh, and the broker's
// own dead-lettering record. x-relay-exchange and x-relay-routing-key
// stay: an outbound message is delivered by them.
var replayDropped = []string{
	relay.HeaderError, relay.HeaderStatus, relay.HeaderAttempts,
	relay.HeaderRedeliveries, relay.HeaderTarget, relay.HeaderQueue, relay.HeaderDeliveries,
	"x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
	"x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
	"x-delivery-count", "x-acquired-count",
}

// dlqOptions are the flags of `relay dlq list` and `relay dlq replay`.
type dlqOptions struct {
	clientFlags
	n       int
	timeout time.Duration
	asJSON  bool    // list
	rate    float64 // replay
}

func (o *dlqOptions) register(cmd *cobra.Command) {
	o.clientFlags.register(cmd)
	f := cmd.Flags()
	f.IntVarP(&o.n, "n", "n", 0, "at most this many dead letters, oldest first (0: all that are there when the command starts)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the next dead letter and for each confirm")
}

func (o *dlqOptions) validate() error {
	switch {
	case o.n < 0:
		return dlqUsage("--n must be 0 (all) or more, got %d", o.n)
	case o.timeout <= 0:
		return dlqUsage("--timeout must be above zero, got %s", o.timeout)
	case o.rate < 0 || math.IsNaN(o.rate) || math.IsInf(o.rate, 0):
		return dlqUsage("--rate must be 0 (no limit) or more, got %v", o.rate)
	}
	return nil
}

// dlqUsage is a bad command line: exit 2.
func dlqUsage(format string, args ...any) error {
	return exitCode(2, fmt.Errorf(format, args...))
}

const dlqBroker = `

The broker comes from --url, else $RELAY_AMQP_URL, else amqp.url of the
configuration; a comma-separated list of a cluster's nodes is tried in
order. Nothing here needs the management plugin.`

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq list|replay QUEUE",
		Short: "List a queue's dead letters, or move them back to the queue",
		Long: `List the dead letters of a work or outbound queue (held in QUEUE.dlq) with
the reason each was dead-lettered, or move them back to QUEUE for the
relay to try again.` + dlqBroker,
		Example: `  relay dlq list vsm.tasks.llm
  relay dlq replay vsm.tasks.llm --n 10`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return dlqUsage("want relay dlq list|replay QUEUE") },
	}
	cmd.AddCommand(newDLQListCmd(), newDLQReplayCmd())
	return cmd
}

func newDLQListCmd() *cobra.Command {
	var o dlqOptions
	cmd := &cobra.Command{
		Use:   "list QUEUE [--n N] [--json]",
		Short: "Print QUEUE's dead letters and why each was dead-lettered, removing none",
		Long: `Print the dead letters of QUEUE.dlq, oldest first, without removing them:
each one's id (message_id, else correlation_id), the downstream's status
(x-relay-status), the attempts made (x-relay-attempts), when (the
message's timestamp, else the time the broker dead-lettered it) and the
reason (x-relay-error). The reason comes last, as it is the longest.

--json prints one JSON object per line instead, with the message's
properties, its body size and every header.

The dead letters are read by a consumer of the command's own that
acknowledges none of them; when it ends, the broker puts every one back in
its place. While they are held, other consumers of QUEUE.dlq do not see
them. On a quorum dead-letter queue with a delivery limit, RabbitMQ before
4.3 counts every listing as a delivery of each message listed.` + dlqBroker + `

Exit codes: 0 listed (or none there), 1 no such dead-letter queue or the
broker unreachable, 2 bad usage or configuration, 3 a dead letter did not
arrive within --timeout (another consumer holds it).`,
		Example: `  relay dlq list vsm.tasks.llm
  relay dlq list vsm.tasks.llm --n 20
  relay dlq list vsm.tasks.llm --json | jq -r .reason | sort | uniq -c`,
		Args: exactlyOne("QUEUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDLQList(cmd, &o, args[0])
		},
	}
	o.register(cmd)
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print one JSON object per dead letter and line")
	return cmd
}

func newDLQReplayCmd() *cobra.Command {
	var o dlqOptions
	cmd := &cobra.Command{
		Use:   "replay QUEUE [--n N] [--rate R]",
		Short: "Move QUEUE's dead letters back to QUEUE, each confirmed before it is removed",
		Long: fmt.Sprintf(`Move the dead letters of QUEUE.dlq back to QUEUE, oldest first, for the
relay to try again. Each is republished to QUEUE (default exchange,
mandatory) with its body and properties, without x-death and without the
relay's x-relay-error, -status, -attempts, -redeliveries, -target and
-queue headers, so that it starts with no attempts made; an outbound
message keeps x-relay-exchange and x-relay-routing-key. The header
x-relay-replayed counts the replays a message went through.

A dead letter is removed from QUEUE.dlq only after the broker confirmed
its copy in QUEUE, so none is lost. Up to %d copies await their confirm
at a time: when the command, its connection or the broker dies in the
middle, at most those %d are in both queues, and the next replay sends
them again (the relay sends a task's message_id downstream as its
Idempotency-Key).

It replays what QUEUE.dlq holds when it starts (or the --n oldest of
that); tasks that fail again meanwhile are left for another replay. It
refuses to start when QUEUE does not exist. A progress line goes to stderr
every second or every %d dead letters, and a summary at the end. --rate
bounds the dead letters replayed per second, for a downstream that should
not get a whole backlog at once.`+dlqBroker+`

Ctrl-C (SIGINT) or SIGTERM stops taking dead letters; the confirms of
those already sent are still awaited, and their dead letters removed.

Exit codes: 0 replayed (or none there), 1 no such queue, the broker
unreachable, a dead letter not taken by the broker (it stays in
QUEUE.dlq), or interrupted, 2 bad usage or configuration, 3 a timeout.`, replayWindow, replayWindow, replayProgressEvery),
		Example: `  relay dlq replay vsm.tasks.llm
  relay dlq replay vsm.tasks.llm --n 1          # try the oldest one first
  relay dlq replay vsm.tasks.llm --rate 50      # 50 a second`,
		Args: exactlyOne("QUEUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDLQReplay(cmd, &o, args[0])
		},
	}
	o.register(cmd)
	cmd.Flags().Float64Var(&o.rate, "rate", 0, "at most this many dead letters a second (0: no limit)")
	return cmd
}

// dlqSession is a command's broker connection with its signal context.
type dlqSession struct {
	ctx  context.Context
	conn *broker.Conn
	stop func()
}

func openDLQSession(cmd *cobra.Command, o *dlqOptions, role string) (*dlqSession, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	cfg, err := loadConfig(cmd, o.config)
	if err != nil {
		return nil, err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	conn, err := dialAnyNode(ctx, &o.clientFlags, cfg, role)
	if err != nil {
		stop()
		return nil, err
	}
	return &dlqSession{ctx: ctx, conn: conn, stop: stop}, nil
}

func (s *dlqSession) close() {
	s.conn.Close()
	s.stop()
}

// dialAnyNode connects like dial; when the broker URL is a comma-separated
// list of a cluster's nodes it tries them in order, each for its share of
// --connect-timeout (a second at least), and takes the first that
// answers.
func dialAnyNode(ctx context.Context, f *clientFlags, cfg *config.Config, role string) (*broker.Conn, error) {
	nodes := splitNodeURLs(brokerURL(f.url, cfg))
	if len(nodes) == 0 {
		return dial(ctx, f, cfg, role)
	}
	total := f.connectTimeout
	if total <= 0 {
		total = 10 * time.Second
	}
	each := max(total/time.Duration(len(nodes)), min(total, time.Second))
	var problems []string
	for _, node := range nodes {
		g := *f
		g.url = node
		if len(nodes) > 1 {
			g.connectTimeout = each
		}
		conn, err := dial(ctx, &g, cfg, role)
		if err == nil {
			return conn, nil
		}
		var ee *exitError
		if len(nodes) == 1 || (errors.As(err, &ee) && ee.code != 1) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, exitCode(1, errors.New("interrupted"))
		}
		problems = append(problems, err.Error())
	}
	return nil, exitCode(1, fmt.Errorf("no node of the broker answered: %s", strings.Join(problems, "; ")))
}

// splitNodeURLs splits a comma-separated list of broker URLs.
func splitNodeURLs(raw string) []string {
	var nodes []string
	for _, n := range strings.Split(raw, ",") {
		if n = strings.TrimSpace(n); n != "" {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// errNoSuchQueue: a passive declare found no such queue.
var errNoSuchQueue = errors.New("no such queue")

// dlqInspect declares name passively, on a channel of its own: a
// failed passive declare closes the channel it ran on.
func dlqInspect(ctx context.Context, conn *broker.Conn, name string) (amqp.Queue, error) {
	ch, _, err := conn.Channel(ctx)
	if err != nil {
		return amqp.Queue{}, exitCode(1, fmt.Errorf("opening a channel: %w", err))
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
	var ae *amqp.Error
	switch {
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return q, errNoSuchQueue
	case err != nil:
		return q, exitCode(1, fmt.Errorf("inspecting queue %q: %w", name, err))
	}
	return q, nil
}

// noDLQ says that queue has no dead-letter queue.
func noDLQ(queue, dlq string) error {
	hint := " (has a relay with this queue ever run?)"
	if strings.HasSuffix(queue, ".dlq") {
		hint = fmt.Sprintf(" (give the queue's own name, %q)", strings.TrimSuffix(queue, ".dlq"))
	}
	return exitCode(1, fmt.Errorf("dead-letter queue %q does not exist%s", dlq, hint))
}

// dlqTarget inspects QUEUE.dlq and returns its name and how many of its
// dead letters the command takes: --n of those there now, or all.
func dlqTarget(s *dlqSession, queue string, n int) (dlq string, total int, err error) {
	dlq = dispatch.DeadLetterQueueName(queue)
	q, err := dlqInspect(s.ctx, s.conn, dlq)
	if errors.Is(err, errNoSuchQueue) {
		return dlq, 0, noDLQ(queue, dlq)
	}
	if err != nil {
		return dlq, 0, err
	}
	total = q.Messages
	if n > 0 && n < total {
		total = n
	}
	return dlq, total, nil
}

func runDLQList(cmd *cobra.Command, o *dlqOptions, queue string) error {
	s, err := openDLQSession(cmd, o, "dlq-list")
	if err != nil {
		return err
	}
	defer s.close()
	dlq, total, err := dlqTarget(s, queue, o.n)
	if err != nil {
		return err
	}
	out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if total == 0 {
		// Standard output stays pure JSON lines with --json.
		w := out
		if o.asJSON {
			w = stderr
		}
		fmt.Fprintf(w, "%s is empty\n", dlq)
		return nil
	}
	var p letterPrinter = newLetterTable(out)
	if o.asJSON {
		p = letterJSON{json.NewEncoder(out)}
	}
	n, err := browseQueue(s.ctx, s.conn, dlq, total, o.timeout, func(pos int, d *amqp.Delivery) error {
		return p.print(describeDeadLetter(pos, d))
	})
	if ferr := p.flush(); err == nil && ferr != nil {
		err = exitCode(1, ferr)
	}
	fmt.Fprintf(stderr, "listed %d of %d %s in %s; none removed\n", n, total, deadLetterNoun(total), dlq)
	return err
}

// browseQueue hands the first n messages of queue to each, in order, holding
// them unacknowledged, and puts every one back in its place by closing its
// channel without acknowledging any. It returns how many it handed on.
func browseQueue(ctx context.Context, conn *broker.Conn, queue string, n int, timeout time.Duration, each func(pos int, d *amqp.Delivery) error) (int, error) {
	ch, _, err := conn.Channel(ctx)
	if err != nil {
		return 0, exitCode(1, fmt.Errorf("opening a channel: %w", err))
	}
	defer ch.Close()
	prefetch := n
	if n > maxPrefetch {
		prefetch = 0 // unlimited; those past n go back with the rest
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return 0, exitCode(1, fmt.Errorf("setting the prefetch: %w", err))
	}
	deliveries, err := ch.Consume(queue, "relay-dlq-list-"+randomID()[:12], false, false, false, false, nil)
	if err != nil {
		return 0, exitCode(1, fmt.Errorf("reading %s: %w", queue, err))
	}
	idle := time.NewTimer(timeout)
	defer idle.Stop()
	for i := range n {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return i, exitCode(1, fmt.Errorf("the broker connection was lost while reading %s; nothing was removed", queue))
			}
			if err := each(i+1, &d); err != nil {
				return i, exitCode(1, err)
			}
			idle.Reset(timeout)
		case <-idle.C:
			return i, exitCode(3, fmt.Errorf("no further dead letter arrived within %s (does another consumer hold them?)", timeout))
		case <-ctx.Done():
			return i, exitCode(1, errors.New("interrupted"))
		}
	}
	return n, nil
}

// deadLetter is what list shows of one dead letter.
type deadLetter struct {
	Position      int            `json:"position"`
	MessageID     string         `json:"message_id,omitempty"`
	CorrelationID string         `json:"correlation_id,omitempty"`
	Reason        string         `json:"reason,omitempty"`
	Status        *int           `json:"status,omitempty"`
	Attempts      *int           `json:"attempts,omitempty"`
	Target        string         `json:"target,omitempty"`
	Queue         string         `json:"queue,omitempty"` // x-relay-queue
	When          string         `json:"when,omitempty"`  // algedonic.FormatTime
	Replayed      int            `json:"replayed,omitempty"`
	ContentType   string         `json:"content_type,omitempty"`
	ReplyTo       string         `json:"reply_to,omitempty"`
	BodyBytes     int            `json:"body_bytes"`
	Headers       map[string]any `json:"headers,omitempty"`
}

// describeDeadLetter reads a dead letter's story from its properties and headers.
func describeDeadLetter(pos int, d *amqp.Delivery) deadLetter {
	l := deadLetter{
		Position:      pos,
		MessageID:     d.MessageId,
		CorrelationID: d.CorrelationId,
		ContentType:   d.ContentType,
		ReplyTo:       d.ReplyTo,
		BodyBytes:     len(d.Body),
	}
	l.Reason, _ = dlqText(d.Headers, relay.HeaderError)
	l.Target, _ = dlqText(d.Headers, relay.HeaderTarget)
	l.Queue, _ = dlqText(d.Headers, relay.HeaderQueue)
	if n, ok := dlqInt(d.Headers, relay.HeaderStatus); ok {
		l.Status = &n
	}
	if n, ok := dlqInt(d.Headers, relay.HeaderAttempts); ok {
		l.Attempts = &n
	}
	l.Replayed, _ = dlqInt(d.Headers, headerReplayed)
	if at := deadLetterTime(d); !at.IsZero() {
		l.When = algedonic.FormatTime(at)
	}
	if len(d.Headers) > 0 {
		l.Headers = headersJSON(d.Headers)
	}
	return l
}

// id is the message_id, else the correlation_id, else "-".
func (l deadLetter) id() string {
	switch {
	case l.MessageID != "":
		return l.MessageID
	case l.CorrelationID != "":
		return l.CorrelationID
	}
	return "-"
}

// deadLetterTime is the message's timestamp, else the latest time the broker
// dead-lettered it (x-death), else zero.
func deadLetterTime(d *amqp.Delivery) time.Time {
	if !d.Timestamp.IsZero() {
		return d.Timestamp.UTC()
	}
	var latest time.Time
	deaths, _ := d.Headers["x-death"].([]any)
	for _, e := range deaths {
		t, _ := e.(amqp.Table)
		if at, ok := t["time"].(time.Time); ok && at.After(latest) {
			latest = at.UTC()
		}
	}
	return latest
}

// dlqText reads a text header.
func dlqText(t amqp.Table, key string) (string, bool) {
	switch v := t[key].(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}

// dlqInt reads an integer header in whatever integer type (or decimal
// text) it came.
func dlqInt(t amqp.Table, key string) (int, bool) {
	return amqpheader.Int(t[key])
}

// headersJSON turns headers into values encoding/json writes readably:
// text as text, binary as base64, decimals as numbers, times in RFC 3339.
func headersJSON(t amqp.Table) map[string]any {
	m := make(map[string]any, len(t))
	for k, v := range t {
		m[k] = headerJSON(v)
	}
	return m
}

func headerJSON(v any) any {
	switch x := v.(type) {
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case amqp.Table:
		return headersJSON(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = headerJSON(e)
		}
		return out
	case amqp.Decimal:
		return float64(x.Value) / math.Pow10(int(x.Scale))
	case time.Time:
		return algedonic.FormatTime(x)
	case float32:
		return floatJSON(float64(x))
	case float64:
		return floatJSON(x)
	}
	return v
}

// floatJSON keeps what JSON cannot write as a number as text.
func floatJSON(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return f
}

// letterPrinter writes dead letters as they are read.
type letterPrinter interface {
	print(deadLetter) error
	flush() error
}

// letterTable aligns the dead letters in columns.
type letterTable struct{ tw *tabwriter.Writer }

func newLetterTable(w io.Writer) *letterTable {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tATTEMPTS\tWHEN\tREASON")
	return &letterTable{tw: tw}
}

func (t *letterTable) print(l deadLetter) error {
	when := l.When
	if when == "" {
		when = "-"
	}
	reason := dlqOneLine(l.Reason)
	if reason == "" {
		reason = "-"
	}
	_, err := fmt.Fprintf(t.tw, "%s\t%s\t%s\t%s\t%s\n", dlqOneLine(l.id()), dlqOptInt(l.Status), dlqOptInt(l.Attempts), when, reason)
	return err
}

func (t *letterTable) flush() error { return t.tw.Flush() }

// letterJSON writes one JSON object per dead letter and line.
type letterJSON struct{ enc *json.Encoder }

func (j letterJSON) print(l deadLetter) error { return j.enc.Encode(l) }
func (j letterJSON) flush() error             { return nil }

// deadLetterNoun is "dead letter" or "dead letters", to go with n.
func deadLetterNoun(n int) string {
	if n == 1 {
		return "dead letter"
	}
	return "dead letters"
}

func dlqOptInt(n *int) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(*n)
}

// dlqOneLine keeps a header value on its table row: control characters
// (newlines, tabs, escapes) become spaces.
func dlqOneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func runDLQReplay(cmd *cobra.Command, o *dlqOptions, queue string) error {
	s, err := openDLQSession(cmd, o, "dlq-replay")
	if err != nil {
		return err
	}
	defer s.close()
	// Refuse before anything moves: a replay into a missing queue would
	// come back unroutable one dead letter at a time.
	if _, err := dlqInspect(s.ctx, s.conn, queue); errors.Is(err, errNoSuchQueue) {
		return exitCode(1, fmt.Errorf("queue %q does not exist; nothing was replayed", queue))
	} else if err != nil {
		return err
	}
	dlq, total, err := dlqTarget(s, queue, o.n)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	if total == 0 {
		fmt.Fprintf(stderr, "%s is empty\n", dlq)
		return nil
	}

	ch, _, err := s.conn.Channel(s.ctx)
	if err != nil {
		return exitCode(1, fmt.Errorf("opening a channel: %w", err))
	}
	// Closing the channel hands back whatever was not acknowledged:
	// dead letters past --n, and any whose copy was not confirmed.
	defer ch.Close()
	if err := ch.Qos(replayWindow, 0, false); err != nil {
		return exitCode(1, fmt.Errorf("setting the prefetch: %w", err))
	}
	deliveries, err := ch.Consume(dlq, "relay-dlq-replay-"+randomID()[:12], false, false, false, false, nil)
	if err != nil {
		return exitCode(1, fmt.Errorf("reading %s: %w", dlq, err))
	}
	pub := s.conn.NewPublisher()
	defer pub.Close()
	r := &replayer{
		pub:     pub,
		queue:   queue,
		window:  replayWindow,
		timeout: o.timeout,
		prog:    newReplayProgress(stderr, total, queue, time.Now),
	}
	if o.rate > 0 {
		// Below one an hour, one an hour: the conversion stays in range.
		r.interval = time.Duration(min(float64(time.Second)/o.rate, float64(time.Hour)))
	}
	res := r.run(s.ctx, deliveries, total)
	fmt.Fprintf(stderr, "replayed %d of %d %s from %s to %s\n", res.replayed, total, deadLetterNoun(total), dlq, queue)
	if res.unremoved > 0 {
		fmt.Fprintf(stderr, "%d replayed %s could not be removed from %s; the next replay sends them again\n",
			res.unremoved, deadLetterNoun(res.unremoved), dlq)
	}
	return res.err
}

// replayer moves dead letters to their queue, each acknowledged (removed
// from the dead-letter queue) only after the broker confirmed its copy.
type replayer struct {
	pub     replayPublisher
	queue   string
	window  int           // copies awaiting their confirm, at most
	timeout time.Duration // for the next dead letter and for each confirm
	// interval paces the replay: at most one dead letter per interval
	// (zero: no pacing).
	interval time.Duration
	prog     *replayProgress
}

// replayPublisher publishes with confirms: a *broker.Publisher.
type replayPublisher interface {
	Publish(ctx context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) (*broker.Confirmation, error)
}

// replayResult is how a replay went.
type replayResult struct {
	replayed  int   // confirmed in the queue and removed from the dead-letter queue
	unremoved int   // confirmed, but the removal failed: in both queues
	err       error // the first problem, with its exit code
}

// replayInFlight is a dead letter whose copy awaits its confirm.
type replayInFlight struct {
	d    amqp.Delivery
	conf *broker.Confirmation
}

// run replays up to n dead letters from deliveries. Each dead letter is
// acknowledged as soon as its copy is confirmed, oldest first; the
// replay waits for the oldest confirm only when r.window copies await
// theirs. On a problem, or when ctx ends, it takes no more and settles
// those in flight: each confirmed copy's dead letter is still removed,
// so that the duplicates are only what the broker cannot tell.
func (r *replayer) run(ctx context.Context, deliveries <-chan amqp.Delivery, n int) replayResult {
	var res replayResult
	pending := make([]replayInFlight, 0, r.window)
	// Settling waits for confirms even once ctx ended: what was sent is
	// seen through, within the timeout.
	settleCtx := context.WithoutCancel(ctx)
	// finish acks p's dead letter when its copy was confirmed (err nil).
	finish := func(p replayInFlight, err error) {
		if err != nil {
			res.fail(r.confirmError(err))
			return
		}
		if err := p.d.Ack(false); err != nil {
			res.unremoved++
			res.fail(exitCode(1, fmt.Errorf("removing a replayed dead letter after its confirm: %w", err)))
			return
		}
		res.replayed++
		r.prog.update(res.replayed)
	}
	settle := func(p replayInFlight, deadline time.Time) {
		wctx, cancel := context.WithDeadline(settleCtx, deadline)
		err := p.conf.Wait(wctx)
		cancel()
		finish(p, err)
	}
	// settleDone settles the oldest copies whose confirms are in.
	settleDone := func() {
		for len(pending) > 0 {
			select {
			case <-pending[0].conf.Done():
				finish(pending[0], pending[0].conf.Err())
				pending = pending[1:]
			default:
				return
			}
		}
	}
	idle := time.NewTimer(r.timeout)
	defer idle.Stop()
	pace := time.NewTimer(0)
	defer pace.Stop()
	var next time.Time // the earliest the next dead letter may go, with r.interval
	for received := 0; received < n && res.err == nil; {
		settleDone()
		if res.err != nil {
			break
		}
		if ctx.Err() != nil {
			// Checked first: a select would pick a waiting dead letter
			// as readily as the interruption.
			res.fail(exitCode(1, errors.New("interrupted")))
			break
		}
		if len(pending) >= r.window {
			settle(pending[0], time.Now().Add(r.timeout))
			pending = pending[1:]
			continue
		}
		var oldest <-chan struct{}
		if len(pending) > 0 {
			oldest = pending[0].conf.Done()
		}
		if wait := time.Until(next); wait > 0 {
			pace.Reset(wait)
			select {
			case <-pace.C:
			case <-oldest:
				continue
			case <-ctx.Done():
				res.fail(exitCode(1, errors.New("interrupted")))
			}
			continue
		}
		idle.Reset(r.timeout)
		var d amqp.Delivery
		select {
		case got, ok := <-deliveries:
			if !ok {
				res.fail(exitCode(1, errors.New("the broker connection was lost during the replay; the dead letters not replayed stay in the dead-letter queue")))
			}
			d = got
		case <-oldest:
			continue
		case <-idle.C:
			res.fail(exitCode(3, fmt.Errorf("no further dead letter arrived within %s (does another consumer hold them?)", r.timeout)))
		case <-ctx.Done():
			res.fail(exitCode(1, errors.New("interrupted")))
		}
		if res.err != nil {
			break
		}
		received++
		if r.interval > 0 {
			if now := time.Now(); next.Before(now) {
				next = now
			}
			next = next.Add(r.interval)
		}
		pctx, cancel := context.WithTimeout(ctx, r.timeout)
		conf, err := r.pub.Publish(pctx, "", r.queue, true, replayPublishing(&d))
		cancel()
		if err != nil {
			res.fail(r.confirmError(err))
			break
		}
		pending = append(pending, replayInFlight{d: d, conf: conf})
	}
	// One deadline for the rest: when the broker stopped confirming,
	// each of them would otherwise wait the whole timeout in turn.
	deadline := time.Now().Add(r.timeout)
	for _, p := range pending {
		settle(p, deadline)
	}
	return res
}

func (res *replayResult) fail(err error) {
	if res.err == nil {
		res.err = err
	}
}

// confirmError says why a copy was not taken; its dead letter stays.
func (r *replayer) confirmError(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return exitCode(3, fmt.Errorf("the broker did not confirm a replayed dead letter within %s; it stays in the dead-letter queue", r.timeout))
	case errors.Is(err, context.Canceled):
		return exitCode(1, errors.New("interrupted"))
	case errors.Is(err, broker.ErrReturned):
		return exitCode(1, fmt.Errorf("queue %q no longer takes messages (a replayed dead letter came back unroutable); it stays in the dead-letter queue", r.queue))
	case errors.Is(err, broker.ErrNacked):
		return exitCode(1, fmt.Errorf("the broker refused a replayed dead letter to %q; it stays in the dead-letter queue", r.queue))
	case errors.Is(err, broker.ErrLost):
		return exitCode(1, fmt.Errorf("the broker connection was lost before a replayed dead letter was confirmed; it stays in the dead-letter queue and may be in %q too", r.queue))
	}
	return exitCode(1, fmt.Errorf("replaying to %q: %w", r.queue, err))
}

// replayPublishing is the copy of dead letter d that goes back to its
// queue: body and properties as they were, the headers of its failure
// dropped (replayDropped), and x-relay-replayed counting up.
func replayPublishing(d *amqp.Delivery) amqp.Publishing {
	h := make(amqp.Table, len(d.Headers)+1)
	for k, v := range d.Headers {
		h[k] = v
	}
	for k := range h {
		for _, drop := range replayDropped {
			if strings.EqualFold(k, drop) {
				delete(h, k)
				break
			}
		}
	}
	n, _ := dlqInt(d.Headers, headerReplayed)
	h[headerReplayed] = int32(min(n, math.MaxInt32-1) + 1)
	return broker.PublishingOf(d, h)
}

// replayProgress prints how far a replay got, every second or every
// replayProgressEvery dead letters, whichever comes first. A nil
// *replayProgress prints nothing.
type replayProgress struct {
	w     io.Writer
	total int
	queue string
	now   func() time.Time
	last  time.Time // of the last line (or the start)
	lastN int
}

func newReplayProgress(w io.Writer, total int, queue string, now func() time.Time) *replayProgress {
	return &replayProgress{w: w, total: total, queue: queue, now: now, last: now()}
}

func (p *replayProgress) update(n int) {
	if p == nil || n >= p.total {
		return // the summary says it
	}
	t := p.now()
	if n/replayProgressEvery == p.lastN/replayProgressEvery && t.Sub(p.last) < time.Second {
		return
	}
	fmt.Fprintf(p.w, "replayed %d of %d to %s\n", n, p.total, p.queue)
	p.last, p.lastN = t, n
}
