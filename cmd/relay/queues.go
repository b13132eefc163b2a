package main

import (
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/vsm-relay/relay/client"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/relay"
)

func init() { extraCommands = append(extraCommands, newQueuesCmd) }

func newQueuesCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "queues [QUEUE...]",
		Short: "Print the depth of the relay's queues, read from the broker",
		Long: `Print how many messages wait in each queue of the configuration, and how
many consumers it has: every work queue with its delay queues and its .dlq,
every outbound queue with its .dlq; or the queues named as arguments.

The depths are read with passive declares, which neither create nor change
a queue, so it needs no management plugin and works before the relay has
started: a queue not declared yet is shown with "-". MESSAGES counts the
messages ready for a consumer, not those delivered and not yet acked.

Exit codes: 0 printed, 1 the broker unreachable or refusing, 2 bad usage
or configuration.`,
		Example: `  relay queues
  relay queues --config configs/local-relay.yaml
  relay queues vsm.tasks.echo vsm.tasks.echo.dlq`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, f.config)
			if err != nil {
				return err
			}
			names := args
			if len(names) == 0 {
				names = configuredQueues(cfg)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			c, err := dialClient(ctx, &f, cfg, "queues")
			if err != nil {
				return err
			}
			defer c.Close()
			rows := make([]queueRow, 0, len(names))
			for _, name := range names {
				info, err := c.Inspect(ctx, name)
				switch {
				case errors.Is(err, client.ErrNoQueue):
					rows = append(rows, queueRow{name: name, missing: true})
				case err != nil:
					return exitCode(1, fmt.Errorf("reading queue %s: %w", name, err))
				default:
					rows = append(rows, queueRow{name: name, messages: info.Messages, consumers: info.Consumers})
				}
			}
			return writeQueues(cmd.OutOrStdout(), rows)
		},
	}
	f.register(cmd)
	return cmd
}

// configuredQueues lists the queues the relay declares for cfg, each work
// queue followed by its delay queues and its dead-letter queue.
func configuredQueues(cfg *config.Config) []string {
	var names []string
	for _, w := range cfg.Work {
		names = append(names, w.Queue)
		for _, d := range w.Redelivery {
			names = append(names, relay.DelayQueueName(w.Queue, d))
		}
		names = append(names, w.Queue+".dlq")
	}
	for _, o := range cfg.Outbound {
		names = append(names, o.Queue, o.Queue+".dlq")
	}
	return names
}

type queueRow struct {
	name                string
	messages, consumers int
	missing             bool
}

func writeQueues(w io.Writer, rows []queueRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tMESSAGES\tCONSUMERS")
	missing := false
	for _, r := range rows {
		if r.missing {
			missing = true
			fmt.Fprintf(tw, "%s\t-\t-\n", r.name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\n", r.name, r.messages, r.consumers)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if missing {
		_, err := fmt.Fprintln(w, "(-: not declared yet; the relay declares its queues when it starts)")
		return err
	}
	return nil
}
