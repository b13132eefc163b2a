package main

import (
	"bytes"
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

	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/client"
	"github.com/vsm-relay/relay/health"
)

func init() { extraCommands = append(extraCommands, newWatchCmd) }

type watchOptions struct {
	clientFlags
	signal string
	format string
	n      int
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

// kinds returns what --signal selects.
func kinds(signal string) ([]client.Kind, error) {
	switch signal {
	case "pain":
		return []client.Kind{client.Pain}, nil
	case "pleasure":
		return []client.Kind{client.Pleasure}, nil
	case "health":
		return []client.Kind{client.Health}, nil
	case "all":
		return []client.Kind{client.Pain, client.Pleasure, client.Health}, nil
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
	ks, err := kinds(o.signal)
	if err != nil {
		return exitCode(2, err)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := dialClient(ctx, &o.clientFlags, cfg, "watch")
	if err != nil {
		return err
	}
	defer c.Close()

	out := cmd.OutOrStdout()
	p := &printer{w: out, format: o.format}
	if f, ok := out.(*os.File); ok {
		p.colour = useColour(f)
	}
	x := client.Exchanges{Pain: cfg.Algedonic.PainExchange, Pleasure: cfg.Algedonic.PleasureExchange, Health: cfg.Health.Exchange}
	byKind := map[client.Kind]string{client.Pain: x.Pain, client.Pleasure: x.Pleasure, client.Health: x.Health}
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = byKind[k]
	}
	stderr := cmd.ErrOrStderr()
	state := func(s client.WatchState) {
		switch s {
		case client.Subscribed:
			fmt.Fprintf(stderr, "watching %s on %s (Ctrl-C to stop)\n", strings.Join(names, ", "), client.RedactURL(brokerURL(o.url, cfg)))
		case client.Lost:
			fmt.Fprintln(stderr, "broker connection lost; waiting for it to come back")
		case client.Resubscribed:
			fmt.Fprintln(stderr, "broker connection restored; watching again")
		}
	}
	seen := 0
	err = c.Watch(ctx, func(e client.Event) error {
		if err := p.print(e); err != nil {
			if errors.Is(err, errNotJSON) {
				return nil
			}
			return err
		}
		seen++
		if o.n > 0 && seen >= o.n {
			return client.StopWatch
		}
		return nil
	}, client.WatchExchanges(x), client.WatchKinds(ks...), client.WatchStateFunc(state))
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return exitCode(1, err)
}

// errNotJSON marks a body that is not JSON; such messages are skipped.
var errNotJSON = errors.New("not JSON")

// printer writes events in the chosen format.
type printer struct {
	w      io.Writer
	format string
	colour bool
	buf    bytes.Buffer
}

func (p *printer) print(e client.Event) error {
	p.buf.Reset()
	if p.format == "text" {
		p.buf.WriteString(formatTyped(e, p.colour))
	} else if err := json.Compact(&p.buf, e.Body); err != nil {
		return errNotJSON
	}
	p.buf.WriteByte('\n')
	_, err := p.w.Write(p.buf.Bytes())
	return err
}

// formatTyped renders one event as formatText does, from its decoded
// form.
func formatTyped(e client.Event, colour bool) string {
	switch {
	case e.Health != nil:
		return formatHealth(*e.Health, colour)
	case e.Signal != nil:
		return formatEvent(*e.Signal, colour)
	}
	return formatRaw(string(e.Kind), e.Body)
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
	return formatRaw(kind, body)
}

func formatRaw(kind string, body []byte) string {
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
