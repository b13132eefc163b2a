package main

import (
	"fmt"

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
	root.SetVersionTemplate("{{.Name}} version {{.Version}}\n")
	root.AddCommand(newRunCmd(), newConfigCmd(), newVersionCmd())
	for _, add := range extraCommands {
		root.AddCommand(add())
	}
	return root
}

// extraCommands are the client commands, each adding itself from its own
// file.
var extraCommands []func() *cobra.Command

// newVersionCmd prints what --version prints.
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version (as --version does)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s version %s\n", cmd.Root().Name(), version)
			return err
		},
	}
}
