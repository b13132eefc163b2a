package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/fielderr"
	"github.com/vsm-relay/relay/relay"
)

func newRunCmd() *cobra.Command {
	var path, logLevel, logFormat string
	cmd := &cobra.Command{
		Use:   "run [--config FILE]",
		Short: "Run the relay",
		Long: `Run the relay. Without --config it uses the default configuration built
into the binary (configs/relay.yaml). Every key can be overridden by an
environment variable: RELAY_ + the key path in upper case with "." as "_"
(RELAY_AMQP_URL, RELAY_HTTP_LISTEN, ...).

Unless GOGC is set, it runs Go's garbage collector at GOGC=400 (less CPU
per message for a few MiB more heap); GOMEMLIMIT caps the heap.

It exits 0 after SIGINT or SIGTERM once in-flight work is drained or
shutdown_timeout passes, and non-zero with a one-line reason when the
configuration is invalid or the first broker connection cannot be made
within amqp.connect_timeout, or when its HTTP server fails.

SIGHUP (like POST /admin/reload and relay reload) reads the configuration
again from the same file and environment and applies it in place; an
invalid one is refused whole and the running one stays.`,
		Example: `  relay run
  relay run --config configs/relay.yaml
  RELAY_AMQP_URL=amqp://guest:guest@rabbitmq:5672/ relay run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, logFormat)
			if err != nil {
				return exitCode(2, err)
			}
			src := config.Source{Path: path}
			cfg, err := src.Load()
			if err != nil {
				return exitCode(2, configError(err))
			}
			r, err := relay.New(cfg, relay.Options{Logger: log, Version: version, Source: src})
			if err != nil {
				return exitCode(2, configError(err))
			}
			log.Debug("garbage collector", "gogc", relay.TuneGC())
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// SIGHUP reloads the configuration; it never ends the process.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						log.Info("SIGHUP: reloading the configuration")
						if _, err := r.Reload(); err != nil {
							log.Error("reload on SIGHUP", "err", err.Error())
						}
					}
				}
			}()
			if err := r.Run(ctx); err != nil {
				return exitCode(1, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (default: the built-in configuration)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&logFormat, "log-format", "auto", "json, text, or auto (text on a terminal, else JSON)")
	return cmd
}

// configError puts every configuration problem into one line, each named
// by its key.
func configError(err error) error {
	lines := fielderr.Lines(err)
	if len(lines) <= 1 {
		return fmt.Errorf("invalid configuration: %v", err)
	}
	return fmt.Errorf("invalid configuration: %s", strings.Join(lines, "; "))
}

func newLogger(level, format string) (*slog.Logger, error) {
	return newLoggerTo(os.Stderr, isTerminal(os.Stderr), level, format)
}

// newLoggerTo makes the logger of `relay run`: JSON or text lines on w,
// with durations written with their unit.
func newLoggerTo(w io.Writer, terminal bool, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: durationsWithUnits}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto":
		if terminal {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, errors.New("--log-format: want json, text or auto")
}

// durationsWithUnits writes a time.Duration as "1.5s", as the
// configuration does, instead of the JSON handler's integer nanoseconds.
func durationsWithUnits(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
