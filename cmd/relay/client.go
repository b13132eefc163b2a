package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/client"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// clientFlags are the flags every client command that talks to the
// broker shares.
type clientFlags struct {
	config         string
	url            string
	connectTimeout time.Duration
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", "", "configuration file (default: the built-in configuration)")
	cmd.Flags().StringVar(&f.url, "url", "", "broker URL (default: $RELAY_AMQP_URL, else amqp.url of the configuration)")
	cmd.Flags().DurationVar(&f.connectTimeout, "connect-timeout", 10*time.Second, "how long to try to reach the broker")
}

// loadConfig loads the configuration a client command reads its defaults
// from. Every problem goes to stderr, one per line, and the command exits
// 2, as `relay config check` does.
func loadConfig(cmd *cobra.Command, path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		lines := fielderr.Lines(err)
		for _, line := range lines {
			fmt.Fprintln(cmd.ErrOrStderr(), line)
		}
		return nil, exitCode(2, fmt.Errorf("%d configuration problem(s)", len(lines)))
	}
	return cfg, nil
}

// brokerURL picks the broker: --url, else RELAY_AMQP_URL, else the
// configuration. config.Load applies RELAY_AMQP_URL too; reading it here
// as well keeps the order plain to the reader.
func brokerURL(flag string, cfg *config.Config) string {
	u, _ := brokerSource(flag, cfg)
	return u
}

// brokerSource is brokerURL and where it came from, as a user would name
// it: the flag, the variable or the key.
func brokerSource(flag string, cfg *config.Config) (url, source string) {
	if flag != "" {
		return flag, "--url"
	}
	if u := os.Getenv("RELAY_AMQP_URL"); u != "" {
		return u, "RELAY_AMQP_URL"
	}
	return cfg.AMQP.URL, "amqp.url"
}

// checkBrokerURL refuses a malformed broker URL before anything is
// dialled: a usage error (exit 2) naming where the URL came from.
func checkBrokerURL(f *clientFlags, cfg *config.Config) (string, error) {
	u, source := brokerSource(f.url, cfg)
	if _, err := client.ParseURLs(u); err != nil {
		return "", exitCode(2, fmt.Errorf("%s: not a broker URL: %v", source, err))
	}
	return u, nil
}

// brokerTarget is where a command connects and how: the checked broker
// URL, the TLS settings (a bad one is a usage error, exit 2) and the
// connect timeout (--connect-timeout, default 10s).
func brokerTarget(f *clientFlags, cfg *config.Config) (url string, tc *tls.Config, timeout time.Duration, err error) {
	if url, err = checkBrokerURL(f, cfg); err != nil {
		return "", nil, 0, err
	}
	if tc, err = cfg.AMQP.TLS.ClientConfig(); err != nil {
		return "", nil, 0, exitCode(2, err)
	}
	timeout = f.connectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return url, tc, timeout, nil
}

// dialClient connects to the broker for a client command, trying for
// --connect-timeout. A refused login or virtual host ends it at once
// (exit 1), as a retry cannot help; a malformed URL is a usage error
// (exit 2). The client reconnects by itself afterwards.
func dialClient(ctx context.Context, f *clientFlags, cfg *config.Config, role string) (*client.Client, error) {
	u, tc, timeout, err := brokerTarget(f, cfg)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts := []client.Option{
		client.WithName("relay " + role),
		client.WithHeartbeat(cfg.AMQP.Heartbeat),
		client.WithDialTimeout(timeout),
	}
	if tc != nil {
		opts = append(opts, client.WithTLS(tc))
	}
	c, err := client.Dial(dctx, u, opts...)
	if err == nil {
		return c, nil
	}
	var de *client.DialError
	switch {
	case ctx.Err() != nil:
		return nil, exitCode(1, errors.New("interrupted"))
	case errors.As(err, &de) && !de.Refused:
		return nil, exitCode(1, fmt.Errorf("could not connect to broker %s within %s: %v", de.URL, timeout, de.Err))
	}
	return nil, exitCode(1, err)
}

// dial connects to the broker through the broker package, for a command
// that needs more of AMQP than the client package offers (reading a queue
// message by message). The URL is checked first like dialClient's; the
// connection heals itself like the relay's, but the commands treat a loss
// as the end of what they were doing.
func dial(ctx context.Context, f *clientFlags, cfg *config.Config, role string) (*broker.Conn, error) {
	u, tc, timeout, err := brokerTarget(f, cfg)
	if err != nil {
		return nil, err
	}
	conn, err := broker.Dial(ctx, broker.Options{
		Name:           role,
		Instance:       "cli",
		URL:            u,
		TLS:            tc,
		ConnectTimeout: timeout,
		Heartbeat:      cfg.AMQP.Heartbeat,
	})
	if err != nil {
		return nil, exitCode(1, err)
	}
	return conn, nil
}

// randomID returns 32 hex digits from the system's random source.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// useColour reports whether f should get ANSI colours: only a terminal,
// and only when NO_COLOR (https://no-color.org) is unset or empty.
func useColour(f *os.File) bool {
	return os.Getenv("NO_COLOR") == "" && isTerminal(f)
}

// ANSI colours for the text outputs.
const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBlue   = "\x1b[34m"
	ansiDim    = "\x1b[2m"
	ansiBold   = "\x1b[1m"
)

// paint wraps s in colour c when on is true.
func paint(on bool, c, s string) string {
	if !on || c == "" {
		return s
	}
	return c + s + ansiReset
}
