package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/fielderr"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the relay's configuration",
	}
	var path string
	check := &cobra.Command{
		Use:   "check [--config FILE]",
		Short: "Validate the configuration and print the effective one",
		Long: `Validate the configuration (the built-in one, or FILE, with RELAY_*
environment overrides applied) and print the effective configuration as
YAML, with every password, secret header value and the admin token shown
as ***. A RELAY_ variable that names no configuration key is a problem,
with the nearest key suggested.

On an invalid configuration it prints every problem, one per line, as
"path.to.key: what is wrong", and exits 2.`,
		Example: `  relay config check
  relay config check --config my-relay.yaml
  RELAY_HTTP_LISTEN=0.0.0.0:9090 relay config check`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				for _, line := range fielderr.Lines(err) {
					fmt.Fprintln(cmd.ErrOrStderr(), line)
				}
				return exitCode(2, fmt.Errorf("%d configuration problem(s)", len(fielderr.Lines(err))))
			}
			out, err := cfg.Redacted()
			if err != nil {
				return exitCode(1, err)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	check.Flags().StringVar(&path, "config", "", "configuration file (default: the built-in configuration)")
	cmd.AddCommand(check)
	return cmd
}
