package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/health"
)

func init() { extraCommands = append(extraCommands, newStatusCmd) }

// maxHealthBytes bounds the /health document read; a real one is a few
// kilobytes.
const maxHealthBytes = 4 << 20

func newStatusCmd() *cobra.Command {
	var (
		cfgPath, addr string
		asJSON        bool
		timeout       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status [--addr HOST:PORT]",
		Short: "Show a running relay's breakers, bulkheads and overall health",
		Long: `Read a running relay's GET /health and print its overall state, its
circuit breakers (state, failures, successes) and its bulkheads (busy,
available, waiting, capacity) as aligned tables.

The address defaults to http.listen of the configuration (a wildcard host
such as 0.0.0.0 is read as 127.0.0.1). It may also be a URL, for a relay
behind TLS or a path prefix: --addr https://relay.example.com/ops.

Exit codes: 0 healthy or degraded, 1 unhealthy or unreachable, 2 bad usage
or configuration.`,
		Example: `  relay status
  relay status --addr 127.0.0.1:9090
  relay status --json | jq '.circuit_breakers'
  until relay status >/dev/null; do sleep 2; done   # wait until it is not unhealthy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usageError("--timeout must be above zero, got %s", timeout)
			}
			if addr == "" {
				cfg, err := loadConfig(cmd, cfgPath)
				if err != nil {
					return err
				}
				addr = cfg.HTTP.Listen
			}
			url, err := healthURL(addr)
			if err != nil {
				return exitCode(2, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			raw, rep, err := fetchHealth(ctx, url)
			if err != nil {
				return exitCode(1, err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				_, err = out.Write(raw)
			} else {
				colour := false
				if f, ok := out.(*os.File); ok {
					colour = useColour(f)
				}
				err = writeStatus(out, rep, colour)
			}
			if err != nil {
				return exitCode(1, err)
			}
			if rep.Overall != health.Healthy && rep.Overall != health.Degraded {
				// The table says why; no second message on stderr.
				return exitCode(1, errors.New(""))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "configuration file to take http.listen from (default: the built-in configuration)")
	f.StringVar(&addr, "addr", "", "the relay's HOST:PORT or base URL (default: http.listen of the configuration)")
	f.BoolVar(&asJSON, "json", false, "print the /health document as it came")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	return cmd
}

// healthURL turns --addr into the /health URL.
func healthURL(addr string) (string, error) {
	if strings.Contains(addr, "://") {
		return strings.TrimRight(addr, "/") + "/health", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--addr %q: want HOST:PORT or a URL: %v", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/health", nil
}

// fetchHealth reads and decodes the report. A 503 carries a report too
// (unhealthy); any other non-200 answer is an error.
func fetchHealth(ctx context.Context, url string) ([]byte, health.Report, error) {
	var rep health.Report
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, rep, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, rep, fmt.Errorf("relay unreachable: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxHealthBytes))
	if err != nil {
		return nil, rep, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, rep, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	if err := json.Unmarshal(raw, &rep); err != nil || rep.Overall == "" {
		if err == nil {
			err = errors.New(`no "overall"`)
		}
		return nil, rep, fmt.Errorf("%s answered %s with no health report: %v", url, resp.Status, err)
	}
	return raw, rep, nil
}

// writeStatus prints the report as a heading and two aligned tables.
func writeStatus(w io.Writer, r health.Report, colour bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "relay %s: %s", r.Instance, paint(colour, ansiBold+statusColour(r.Overall), string(r.Overall)))
	if !r.At.IsZero() {
		fmt.Fprintf(&b, " at %s", algedonic.FormatTime(r.At))
	}
	b.WriteByte('\n')
	broker := "connected"
	switch {
	case !r.AMQP.Connected:
		broker = "disconnected"
	case r.AMQP.Blocked:
		broker = "connected, blocked (publishing stopped by a broker alarm)"
	}
	fmt.Fprintf(&b, "broker: %s\n", broker)
	for _, reason := range r.Reasons {
		fmt.Fprintf(&b, "  - %s\n", reason)
	}

	b.WriteByte('\n')
	if len(r.CircuitBreakers) == 0 {
		b.WriteString("no breakers\n")
	} else {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "BREAKER\tSTATE\tFAILURES\tSUCCESSES")
		for _, name := range slices.Sorted(maps.Keys(r.CircuitBreakers)) {
			s := r.CircuitBreakers[name]
			state := s.State
			if s.Shared {
				state += " (shared)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", name, state, s.FailureCount, s.SuccessCount)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	b.WriteByte('\n')
	if len(r.Bulkheads) == 0 {
		b.WriteString("no bulkheads\n")
	} else {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "BULKHEAD\tBUSY\tAVAILABLE\tWAITING\tCAPACITY")
		for _, name := range slices.Sorted(maps.Keys(r.Bulkheads)) {
			s := r.Bulkheads[name]
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", name, s.Busy, s.Available, s.Waiting, s.Capacity)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
