package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/client"
)

func init() { extraCommands = append(extraCommands, newPublishCmd) }

// publishOptions are the flags of `relay publish`.
type publishOptions struct {
	clientFlags
	queue         string
	reply         bool
	timeout       time.Duration
	headers       []string
	contentType   string
	file          string
	n             int
	correlationID string
	messageID     string
}

// progressFrom is the batch size from which `publish --n` reports its
// progress on stderr.
const progressFrom = 100

// maxInFlight bounds the publishes of a batch awaiting their confirms.
const maxInFlight = 512

func newPublishCmd() *cobra.Command {
	var o publishOptions
	cmd := &cobra.Command{
		Use:   "publish --queue Q [flags] [BODY | --file F | -]",
		Short: "Publish a task to a work queue, and optionally wait for its reply",
		Long: `Publish one task (or --n of them) to a queue through the default exchange,
persistent and with publisher confirms: the command returns once the broker
has taken every message. A queue that does not exist is an error (the
message is published mandatory and comes back unroutable).

The body is BODY, the content of --file F, or standard input with "-"
(or --file -); with none of them it is empty. The content type defaults to
application/json when the body is valid JSON, text/plain; charset=utf-8
when it is other UTF-8 text, else application/octet-stream.

Each message gets a random message_id (the relay sends it downstream as
Idempotency-Key) unless --message-id is given; in a batch, --message-id and
--correlation-id get "-1", "-2", ... appended so that each message has its
own.

With --reply the command sets reply_to to RabbitMQ's direct reply-to (no
queue is declared) and a correlation_id, and waits up to --timeout for the
reply, which stands for the broker's confirm. It prints the reply body to
stdout (with a newline added when it lacks one) and its x-relay-* headers
to stderr, one "key: value" per line. In a batch it waits for every reply,
and before each reply's headers prints its "correlation_id: ..."; the
"confirmed N/M" progress lines are left out.

A confirm that does not come within --timeout leaves the message's fate
unknown: it may have been published all the same. The command says so,
with the message id to publish it again under, and exits 3.

Exit codes: 0 published (and replied), 1 an error or a reply carrying
x-relay-error, 2 bad usage or configuration, 3 a timeout.`,
		Example: `  # Publish a task and wait for the downstream's answer
  relay publish --queue vsm.tasks.echo --reply '{"hello":"world"}'

  # Fire and forget: 1000 tasks, with a progress line on stderr
  relay publish --queue vsm.tasks.echo --n 1000 '{"job":"resize"}'

  # Body from a file or standard input, with headers
  relay publish --queue vsm.tasks.echo --file task.json --header tenant=acme
  echo '{"a":1}' | relay publish --queue vsm.tasks.echo --reply --timeout 5s -

  # Another broker
  relay publish --url amqp://user:pass@broker:5672/ --queue jobs 'hi'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPublish(cmd, &o, args)
		},
	}
	o.clientFlags.register(cmd)
	f := cmd.Flags()
	f.StringVarP(&o.queue, "queue", "q", "", "queue to publish to (required)")
	f.BoolVar(&o.reply, "reply", false, "wait for the reply and print it")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for a confirm or, with --reply, for the replies")
	f.StringArrayVarP(&o.headers, "header", "H", nil, "message header K=V (repeatable)")
	f.StringVar(&o.contentType, "content-type", "", "content type (default: guessed from the body)")
	f.StringVarP(&o.file, "file", "f", "", "read the body from this file (- for standard input)")
	f.IntVarP(&o.n, "n", "n", 1, "how many messages to publish")
	f.StringVar(&o.correlationID, "correlation-id", "", "correlation_id (default with --reply: a random id)")
	f.StringVar(&o.messageID, "message-id", "", "message_id (default: a random id)")
	return cmd
}

// usageError is a bad command line: exit 2.
func usageError(format string, args ...any) error {
	return exitCode(2, fmt.Errorf(format, args...))
}

func runPublish(cmd *cobra.Command, o *publishOptions, args []string) error {
	if o.queue == "" {
		return usageError("--queue is required")
	}
	if o.n < 1 {
		return usageError("--n must be at least 1, got %d", o.n)
	}
	if o.timeout <= 0 {
		return usageError("--timeout must be above zero, got %s", o.timeout)
	}
	headers, err := parseHeaders(o.headers)
	if err != nil {
		return exitCode(2, err)
	}
	body, err := readBody(cmd.InOrStdin(), args, o.file)
	if err != nil {
		return exitCode(2, err)
	}
	cfg, err := loadConfig(cmd, o.config)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	c, err := dialClient(ctx, &o.clientFlags, cfg, "publish")
	if err != nil {
		return err
	}
	defer c.Close()

	tasks := buildTasks(o, body, headers)
	stderr := cmd.ErrOrStderr()
	var prog *progress
	if o.n >= progressFrom && !o.reply { // with --reply each reply's headers show the progress
		prog = newProgress(stderr, o.n, isTerminalWriter(stderr))
	}
	if o.reply {
		sent, err := requestAll(ctx, c, o.queue, tasks, max(o.connectTimeout, o.timeout))
		if err != nil {
			return err
		}
		return awaitReplies(ctx, cmd.OutOrStdout(), stderr, o.queue, sent, o.timeout)
	}
	if err := publishAll(ctx, c, o.queue, tasks, o.timeout, o.connectTimeout, prog); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "published %d %s to %s\n", o.n, plural(o.n, "message", "messages"), o.queue)
	return nil
}

// parseHeaders turns K=V pairs into message headers.
func parseHeaders(pairs []string) (amqp.Table, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	t := make(amqp.Table, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--header %q: want KEY=VALUE", p)
		}
		t[k] = v
	}
	return t, nil
}

// readBody returns the body from the argument, --file or standard input.
func readBody(stdin io.Reader, args []string, file string) ([]byte, error) {
	switch {
	case len(args) == 1 && file != "":
		return nil, errors.New("give the body either as an argument or with --file, not both")
	case len(args) == 1 && args[0] == "-", file == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return b, nil
	case len(args) == 1:
		return []byte(args[0]), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		return b, nil
	}
	return nil, nil
}

// guessContentType names what the body looks like.
func guessContentType(body []byte) string {
	switch {
	case len(body) > 0 && json.Valid(body):
		return "application/json"
	case utf8.Valid(body):
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// buildTasks makes the n tasks' options, each with its own ids.
func buildTasks(o *publishOptions, body []byte, headers amqp.Table) []client.Task {
	ct := o.contentType
	if ct == "" {
		ct = guessContentType(body)
	}
	tasks := make([]client.Task, o.n)
	for i := range tasks {
		opts := []client.CallOption{client.ContentType(ct), client.AppID("relay publish"), client.Headers(headers)}
		if id := nth(o.messageID, i, o.n); id != "" {
			opts = append(opts, client.MessageID(id))
		}
		if id := nth(o.correlationID, i, o.n); id != "" {
			opts = append(opts, client.CorrelationID(id))
		}
		tasks[i] = client.Task{Body: body, Options: opts}
	}
	return tasks
}

// nth is the id of the i-th of n messages: the given one for a single
// message, else the given one with "-<i+1>" so that each message of a
// batch has its own. An empty id stays empty.
func nth(given string, i, n int) string {
	if given == "" || n == 1 {
		return given
	}
	return given + "-" + strconv.Itoa(i+1)
}

// publishAll publishes tasks to queue with at most maxInFlight awaiting
// their confirms, and returns once every one is confirmed. Each confirm
// is awaited for up to timeout; publishing itself waits up to
// connectTimeout while the connection is being restored.
func publishAll(ctx context.Context, c *client.Client, queue string, tasks []client.Task, timeout, connectTimeout time.Duration, prog *progress) error {
	sent := make([]*client.Pending, 0, len(tasks))
	oldest := 0 // the first of sent not yet confirmed
	waitOldest := func() error {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := sent[oldest].Confirmed(wctx); err != nil {
			return confirmError(ctx, queue, timeout, len(tasks)-oldest, sent[oldest], err)
		}
		oldest++
		prog.update(oldest)
		return nil
	}
	for _, t := range tasks {
		if len(sent)-oldest == maxInFlight {
			if err := waitOldest(); err != nil {
				return err
			}
		}
		pctx, cancel := context.WithTimeout(ctx, max(connectTimeout, timeout))
		p, err := c.Publish(pctx, queue, t.Body, t.Options...)
		cancel()
		if err != nil {
			return publishError(ctx, queue, err)
		}
		sent = append(sent, p)
	}
	for oldest < len(sent) {
		if err := waitOldest(); err != nil {
			return err
		}
	}
	prog.done(oldest)
	return nil
}

// requestAll publishes tasks to queue with the client's reply address.
// Their replies are their receipts, awaited by awaitReplies.
func requestAll(ctx context.Context, c *client.Client, queue string, tasks []client.Task, publishTimeout time.Duration) ([]*client.Pending, error) {
	sent := make([]*client.Pending, 0, len(tasks))
	for _, t := range tasks {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		p, err := c.Request(pctx, queue, t.Body, t.Options...)
		cancel()
		if err != nil {
			for _, p := range sent {
				p.Cancel()
			}
			return nil, publishError(ctx, queue, err)
		}
		sent = append(sent, p)
	}
	return sent, nil
}

func publishError(ctx context.Context, queue string, err error) error {
	if ctx.Err() != nil {
		return exitCode(1, errors.New("interrupted"))
	}
	return exitCode(1, fmt.Errorf("publishing to %q: %w", queue, err))
}

// confirmError says why a publish was not confirmed, with its exit code.
// unsettled counts the messages whose fate is unknown, this one and those
// after it.
func confirmError(ctx context.Context, queue string, timeout time.Duration, unsettled int, p *client.Pending, err error) error {
	maybe := fmt.Sprintf("the message may have been published all the same: check %s before you publish it again, or publish it again with --message-id %s so that the downstream can drop a duplicate", queue, p.MessageID())
	if unsettled > 1 {
		maybe = fmt.Sprintf("the %d messages from message id %s on may have been published all the same: check %s before you publish them again", unsettled, p.MessageID(), queue)
	}
	switch {
	case ctx.Err() != nil:
		return exitCode(1, fmt.Errorf("interrupted before the broker confirmed; %s", maybe))
	case errors.Is(err, client.ErrUnroutable):
		return exitCode(1, fmt.Errorf("queue %q does not exist (the message came back unroutable)", queue))
	case errors.Is(err, client.ErrNacked):
		return exitCode(1, fmt.Errorf("the broker refused the message to %q", queue))
	case errors.Is(err, context.DeadlineExceeded):
		return exitCode(3, fmt.Errorf("the broker did not confirm within %s; %s", timeout, maybe))
	case errors.Is(err, client.ErrUnconfirmed):
		return exitCode(1, fmt.Errorf("the broker connection was lost before the confirm; %s", maybe))
	}
	return exitCode(1, err)
}

// awaitReplies waits for the reply of every task, printing each as it
// comes: body to stdout, x-relay-* headers to stderr.
func awaitReplies(ctx context.Context, stdout, stderr io.Writer, queue string, sent []*client.Pending, timeout time.Duration) error {
	type result struct {
		p     *client.Pending
		reply *client.Reply
		err   error
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make(chan result, len(sent))
	for _, p := range sent {
		go func() {
			r, err := p.Reply(wctx)
			results <- result{p, r, err}
		}()
	}
	defer func() {
		for _, p := range sent {
			p.Cancel()
		}
	}()
	failed, waiting := 0, len(sent)
	for range sent {
		res := <-results
		var te *client.TaskError
		switch {
		case res.err == nil:
		case errors.As(res.err, &te):
			res.reply = te.Reply
			failed++
		case ctx.Err() != nil:
			return exitCode(1, errors.New("interrupted"))
		case errors.Is(res.err, client.ErrUnroutable):
			return exitCode(1, fmt.Errorf("queue %q does not exist (the message came back unroutable)", queue))
		case errors.Is(res.err, context.DeadlineExceeded):
			if len(sent) == 1 {
				return exitCode(3, fmt.Errorf("no reply within %s", timeout))
			}
			return exitCode(3, fmt.Errorf("%d of %d replies not received within %s", waiting, len(sent), timeout))
		case errors.Is(res.err, client.ErrConnectionLost):
			return exitCode(1, errors.New("the broker connection was lost while waiting for the reply"))
		default:
			return exitCode(1, res.err)
		}
		waiting--
		if len(sent) > 1 {
			fmt.Fprintf(stderr, "correlation_id: %s\n", res.p.CorrelationID())
		}
		writeRelayHeaders(stderr, res.reply.Headers)
		_, _ = stdout.Write(res.reply.Body)
		if len(res.reply.Body) == 0 || res.reply.Body[len(res.reply.Body)-1] != '\n' {
			_, _ = io.WriteString(stdout, "\n")
		}
	}
	switch {
	case failed == 1 && len(sent) == 1:
		return exitCode(1, errors.New("the task failed (x-relay-error)"))
	case failed > 0:
		return exitCode(1, fmt.Errorf("%d of %d tasks failed (x-relay-error)", failed, len(sent)))
	}
	return nil
}

// writeRelayHeaders prints the x-relay-* headers, sorted, as "key: value".
func writeRelayHeaders(w io.Writer, h map[string]any) {
	keys := make([]string, 0, len(h))
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-relay-") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %s\n", k, headerValue(h[k]))
	}
}

func headerValue(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// progress reports how much of a batch is confirmed: on a terminal one
// line rewritten at most ten times a second, elsewhere a line at every
// tenth of the batch. A nil *progress reports nothing.
type progress struct {
	w        io.Writer
	total    int
	terminal bool
	next     int // the count of the next line, off a terminal
	last     time.Time
}

func newProgress(w io.Writer, total int, terminal bool) *progress {
	return &progress{w: w, total: total, terminal: terminal, next: max(1, total/10)}
}

func (p *progress) update(n int) {
	if p == nil {
		return
	}
	if p.terminal {
		if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
			p.last = now
			fmt.Fprintf(p.w, "\rconfirmed %d/%d", n, p.total)
		}
		return
	}
	if n >= p.next && n < p.total {
		fmt.Fprintf(p.w, "confirmed %d/%d\n", n, p.total)
		for p.next <= n {
			p.next += max(1, p.total/10)
		}
	}
}

func (p *progress) done(n int) {
	if p == nil {
		return
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\rconfirmed %d/%d\n", n, p.total)
		return
	}
	fmt.Fprintf(p.w, "confirmed %d/%d\n", n, p.total)
}
