package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/health"
)

func init() { extraCommands = append(extraCommands, newWatchCmd) }

type watchOptions struct {
	clientFlags
	signal string
	format string
	n      int
}

// A binding of the watch queue: one exchange, and what its events are.
type binding struct {
	exchange string
	kind     string // pain, pleasure or health
}

func newWatchCmd() *cobra.Command {
	var o watchOptions
	cmd := &cobra.Command{
		Use:   "watch [--signal pain|pleasure|health|all] [--format json|text]",
		Short: "Print pain, pleasure and health events as they happen",
		Long: `Bind a private queue (exclusive, auto-delete) to the event exchanges named
in the configuration (algedonic.pain_exchange, algedonic.pleasure_exchange,
health.exchange; routing key "#") and print every event until interrupted
with Ctrl-C (SIGINT) or SIGTERM, then exit 0. The exchanges are declared
(durable topic, as the relay declares them) so watching can start before
any relay does.

--format json (the default) prints each event body as received, compacted
to one JSON object per line, ready for jq. --format text prints one
readable line per event, coloured on a terminal (set NO_COLOR to turn
colours off).

A line on stderr says when the queue is bound. When the broker connection
is lost the command binds a new queue once it is back (events published in
between are not seen) and says so on stderr.`,
		Example: `  relay watch
  relay watch --signal pain --format text
  relay watch --signal health | jq .overall
  relay watch --n 1 --signal pleasure     # wait for the next recovery`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatch(cmd, &o)
		},
	}
	o.clientFlags.register(cmd)
	f := cmd.Flags()
	f.StringVarP(&o.signal, "signal", "s", "all", "events to print: pain, pleasure, health or all")
	f.StringVar(&o.format, "format", "json", "json (one object per line) or text")
	f.IntVarP(&o.n, "n", "n", 0, "exit after this many events (0: never)")
	return cmd
}

// bindings returns what --signal selects.
func bindings(signal string, cfg *config.Config) ([]binding, error) {
	pain := binding{cfg.Algedonic.PainExchange, "pain"}
	pleasure := binding{cfg.Algedonic.PleasureExchange, "pleasure"}
	hl := binding{cfg.Health.Exchange, "health"}
	switch signal {
	case "pain":
		return []binding{pain}, nil
	case "pleasure":
		return []binding{pleasure}, nil
	case "health":
		return []binding{hl}, nil
	case "all":
		return []binding{pain, pleasure, hl}, nil
	}
	return nil, fmt.Errorf("--signal %q: want pain, pleasure, health or all", signal)
}

func runWatch(cmd *cobra.Command, o *watchOptions) error {
	if o.format != "json" && o.format != "text" {
		return usageError("--format %q: want json or text", o.format)
	}
	if o.n < 0 {
		return usageError("--n must not be negative, got %d", o.n)
	}
	cfg, err := loadConfig(cmd, o.config)
	if err != nil {
		return err
	}
	binds, err := bindings(o.signal, cfg)
	if err != nil {
		return exitCode(2, err)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	conn, err := dial(ctx, &o.clientFlags, cfg, "watch")
	if err != nil {
		return err
	}
	defer conn.Close()

	out := cmd.OutOrStdout()
	p := &printer{w: out, format: o.format, kinds: map[string]string{}}
	if f, ok := out.(*os.File); ok {
		p.colour = useColour(f)
	}
	for _, b := range binds {
		p.kinds[b.exchange] = b.kind
	}
	stderr := cmd.ErrOrStderr()
	names := make([]string, len(binds))
	for i, b := range binds {
		names[i] = b.exchange
	}
	seen := 0
	for first := true; ; first = false {
		deliveries, ch, err := subscribe(ctx, conn, binds)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return exitCode(1, err)
		}
		if first {
			fmt.Fprintf(stderr, "watching %s on %s (Ctrl-C to stop)\n", strings.Join(names, ", "), broker.RedactURL(brokerURL(o.url, cfg)))
		} else {
			fmt.Fprintln(stderr, "broker connection restored; watching again")
		}
		done, err := consume(ctx, deliveries, p, &seen, o.n)
		ch.Close()
		switch {
		case err != nil:
			return exitCode(1, err)
		case done || ctx.Err() != nil:
			return nil
		}
		fmt.Fprintln(stderr, "broker connection lost; waiting for it to come back")
	}
}

// subscribe declares the exchanges and a private queue bound to them, and
// consumes it.
func subscribe(ctx context.Context, conn *broker.Conn, binds []binding) (<-chan amqp.Delivery, *amqp.Channel, error) {
	ch, _, err := conn.Channel(ctx)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (<-chan amqp.Delivery, *amqp.Channel, error) {
		ch.Close()
		return nil, nil, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fail(fmt.Errorf("declaring the watch queue: %w", err))
	}
	for _, b := range binds {
		if err := ch.ExchangeDeclare(b.exchange, "topic", true, false, false, false, nil); err != nil {
			return fail(fmt.Errorf("declaring topic exchange %s: %w", b.exchange, err))
		}
		if err := ch.QueueBind(q.Name, "#", b.exchange, false, nil); err != nil {
			return fail(fmt.Errorf("binding to %s: %w", b.exchange, err))
		}
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return fail(fmt.Errorf("consuming the watch queue: %w", err))
	}
	return d, ch, nil
}

// consume prints deliveries until limit events were seen (done), ctx ends,
// or the channel closes (the connection was lost).
func consume(ctx context.Context, deliveries <-chan amqp.Delivery, p *printer, seen *int, limit int) (done bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case d, ok := <-deliveries:
			if !ok {
				return false, nil
			}
			if err := p.print(d.Exchange, d.Body); err != nil {
				if errors.Is(err, errNotJSON) {
					continue
				}
				return false, err
			}
			*seen++
			if limit > 0 && *seen >= limit {
				return true, nil
			}
		}
	}
}

// errNotJSON marks a body that is not JSON; such messages are skipped.
var errNotJSON = errors.New("not JSON")

// printer writes events in the chosen format.
type printer struct {
	w      io.Writer
	format string
	colour bool
	kinds  map[string]string // exchange -> pain, pleasure or health
	buf    bytes.Buffer
}

func (p *printer) print(exchange string, body []byte) error {
	p.buf.Reset()
	if p.format == "text" {
		if !json.Valid(body) {
			return errNotJSON
		}
		p.buf.WriteString(formatText(p.kinds[exchange], body, p.colour))
	} else if err := json.Compact(&p.buf, body); err != nil {
		return errNotJSON
	}
	p.buf.WriteByte('\n')
	_, err := p.w.Write(p.buf.Bytes())
	return err
}

// formatText renders one event (or health report) as a readable line. A
// body that does not decode as what its exchange carries is shown as
// compact JSON after its kind.
func formatText(kind string, body []byte, colour bool) string {
	if kind == "health" {
		var r health.Report
		if err := json.Unmarshal(body, &r); err == nil && r.Overall != "" {
			return formatHealth(r, colour)
		}
	} else if ev, err := algedonic.Decode(body); err == nil {
		return formatEvent(ev, colour)
	}
	var b bytes.Buffer
	_ = json.Compact(&b, body)
	label := strings.ToUpper(kind)
	if label == "" {
		label = "EVENT"
	}
	return fmt.Sprintf("%-8s %s", label, clean(b.String()))
}

// formatEvent: time, signal, severity, source/name/event, count,
// intensity, instance, reason.
//
//	14:00:00.123 PAIN     critical breaker llm_api open (intensity 0.80) relay-7f3a: 3 failures within 60s
func formatEvent(ev algedonic.Event, colour bool) string {
	sig, c := "PLEASURE", ansiGreen
	if ev.Signal == algedonic.Pain {
		sig, c = "PAIN", severityColour(ev.Severity)
	}
	var b strings.Builder
	b.WriteString(paint(colour, ansiDim, ev.At.Local().Format("15:04:05.000")))
	b.WriteByte(' ')
	b.WriteString(paint(colour, ansiBold+c, fmt.Sprintf("%-8s", sig)))
	b.WriteByte(' ')
	b.WriteString(paint(colour, c, fmt.Sprintf("%-8s", ev.Severity)))
	fmt.Fprintf(&b, " %s %s %s", clean(ev.Source), clean(ev.Name), clean(ev.Event))
	if ev.Count > 1 {
		fmt.Fprintf(&b, " x%d", ev.Count)
	}
	fmt.Fprintf(&b, " (intensity %s)", strconv.FormatFloat(ev.Intensity, 'f', 2, 64))
	if ev.Instance != "" {
		b.WriteString(" " + paint(colour, ansiDim, clean(ev.Instance)))
	}
	if ev.Reason != "" {
		b.WriteString(": " + clean(ev.Reason))
	}
	return b.String()
}

// formatHealth: time, overall, instance, then the breakers not closed and
// the pools' use.
//
//	14:00:15.000 HEALTH   degraded relay-7f3a breakers: external_api open; bulkheads: api_agent 3/20 busy
func formatHealth(r health.Report, colour bool) string {
	var b strings.Builder
	b.WriteString(paint(colour, ansiDim, r.At.Local().Format("15:04:05.000")))
	b.WriteByte(' ')
	c := statusColour(r.Overall)
	b.WriteString(paint(colour, ansiBold+ansiBlue, fmt.Sprintf("%-8s", "HEALTH")))
	b.WriteByte(' ')
	b.WriteString(paint(colour, c, clean(string(r.Overall))))
	if r.Instance != "" {
		b.WriteString(" " + paint(colour, ansiDim, clean(r.Instance)))
	}
	if !r.AMQP.Connected {
		b.WriteString(" broker: disconnected")
	} else if r.AMQP.Blocked {
		b.WriteString(" broker: blocked")
	}
	closed := 0
	var trouble []string
	for _, name := range slices.Sorted(maps.Keys(r.CircuitBreakers)) {
		if st := r.CircuitBreakers[name].State; st == "closed" {
			closed++
		} else {
			trouble = append(trouble, clean(name)+" "+clean(st))
		}
	}
	if len(trouble) > 0 {
		b.WriteString(" breakers: " + strings.Join(trouble, ", "))
		if closed > 0 {
			fmt.Fprintf(&b, " (%d closed)", closed)
		}
	} else if closed > 0 {
		fmt.Fprintf(&b, " breakers: %d closed", closed)
	}
	var pools []string
	for _, name := range slices.Sorted(maps.Keys(r.Bulkheads)) {
		s := r.Bulkheads[name]
		p := fmt.Sprintf("%s %d/%d busy", clean(name), s.Busy, s.Capacity)
		if s.Waiting > 0 {
			p += fmt.Sprintf(" %d waiting", s.Waiting)
		}
		pools = append(pools, p)
	}
	if len(pools) > 0 {
		b.WriteString("; bulkheads: " + strings.Join(pools, ", "))
	}
	return b.String()
}

func severityColour(s algedonic.Severity) string {
	switch s {
	case algedonic.Critical:
		return ansiRed
	case algedonic.Warning:
		return ansiYellow
	}
	return ansiBlue
}

func statusColour(s health.Status) string {
	switch s {
	case health.Healthy:
		return ansiGreen
	case health.Degraded:
		return ansiYellow
	}
	return ansiRed
}

// clean keeps text from the broker on the event's line and away from the
// terminal's control: control characters (escape sequences among them)
// become spaces, and runs of white space one space.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
