package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "relay",
		Short: "A resilient relay between RabbitMQ and fragile downstreams",
		Long: `relay consumes work queues and outbound-publish queues from RabbitMQ and
runs every downstream call inside a bulkhead and a circuit breaker, with
exponential backoff and jitter for transient failures. It publishes pain
and pleasure (algedonic) signals and periodic health reports, and serves
/health, /healthz, /readyz and /metrics.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newRunCmd(), newConfigCmd())
	for _, add := range extraCommands {
		root.AddCommand(add())
	}
	return root
}

// extraCommands are the client commands, each adding itself from its own
// file.
var extraCommands []func() *cobra.Command
