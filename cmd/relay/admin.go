package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, newBreakerCmd, newQueueCmd, newReloadCmd)
}

// adminTokenEnv holds the admin token when --token is not given.
const adminTokenEnv = "RELAY_HTTP_ADMIN_TOKEN"

// maxAdminAnswer bounds an admin answer read; a real one is a few hundred
// bytes, a refused reload a few kilobytes.
const maxAdminAnswer = 1 << 20

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	cfgPath, addr, token string
	asJSON               bool
	timeout              time.Duration
}

func (f *adminFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.cfgPath, "config", "", "configuration file to take http.listen from (default: the built-in configuration)")
	fl.StringVar(&f.addr, "addr", "", "the relay's HOST:PORT or base URL (default: http.listen of the configuration)")
	fl.StringVar(&f.token, "token", "", "the admin token (default: $"+adminTokenEnv+")")
	fl.BoolVar(&f.asJSON, "json", false, "print the relay's JSON answer as it came")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the answer")
}

const adminExitCodes = `

The address defaults to http.listen of the configuration, as for relay
status. The token comes from --token, else from $` + adminTokenEnv + `.

Exit codes: 0 done, 1 refused (wrong token, unknown name, invalid
configuration) or unreachable, 2 bad usage.`

func newBreakerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "breaker open|close NAME",
		Short: "Force a running relay's circuit breaker open, or close it",
		Long: `Force a circuit breaker of a running relay open, or close it.

A breaker forced open stays open through its reset timeouts, holding the
intake of its queues, until an operator closes it. Closing a breaker
clears its counts and lifts a forced open.` + adminExitCodes,
		Example: `  relay breaker open llm_api
  relay breaker close llm_api --addr relay-1:9090`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return usageError("want relay breaker open|close NAME") },
	}
	addActions(cmd, "breakers", "NAME", []adminAction{
		{"open", "Force the breaker open until it is closed again"},
		{"close", "Close the breaker, clear its counts and lift a forced open"},
	})
	return cmd
}

// adminAction is a subcommand of breaker or queue: its verb, which is the
// last word of its admin path, and its one-line help.
type adminAction struct{ verb, short string }

// addActions adds to cmd a subcommand per action, each posting to
// /admin/<kind>/<ARG>/<verb>.
func addActions(cmd *cobra.Command, kind, arg string, actions []adminAction) {
	for _, action := range actions {
		var f adminFlags
		sub := &cobra.Command{
			Use:   action.verb + " " + arg,
			Short: action.short,
			Long:  action.short + "." + adminExitCodes,
			Args:  exactlyOne(arg),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runAdmin(cmd, &f, kind+"/"+url.PathEscape(args[0])+"/"+action.verb)
			},
		}
		f.register(sub)
		cmd.AddCommand(sub)
	}
}

func newQueueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue pause|resume QUEUE",
		Short: "Hold or release the intake of a running relay's queue",
		Long: `Hold the intake of a work or outbound queue of a running relay, or
release it. A held queue's tasks stay in the broker; those in flight
finish.` + adminExitCodes,
		Example: `  relay queue pause vsm.tasks.llm
  relay queue resume vsm.tasks.llm`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return usageError("want relay queue pause|resume QUEUE") },
	}
	addActions(cmd, "queues", "QUEUE", []adminAction{
		{"pause", "Hold the queue's intake"},
		{"resume", "Release the queue's intake"},
	})
	return cmd
}

func newReloadCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make a running relay read its configuration again",
		Long: `Make a running relay read its configuration again, as SIGHUP does. An
invalid configuration is refused whole, the running one stays, and every
problem is printed, one per line.` + adminExitCodes,
		Example: `  relay reload
  relay reload --addr https://relay.example.com/ops`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAdmin(cmd, &f, "reload") },
	}
	f.register(cmd)
	return cmd
}

// exactlyOne is cobra.ExactArgs(1) with a message naming the argument.
func exactlyOne(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return fmt.Errorf("%s is missing", what)
		case len(args) > 1:
			return fmt.Errorf("one %s, got %d arguments", what, len(args))
		case args[0] == "":
			return fmt.Errorf("%s is empty", what)
		}
		return nil
	}
}

// adminAnswer is what the admin endpoints answer.
type adminAnswer struct {
	Breaker  string   `json:"breaker"`
	Queue    string   `json:"queue"`
	Action   string   `json:"action"`
	State    string   `json:"state"`
	By       string   `json:"by"`
	At       string   `json:"at"`
	Error    string   `json:"error"`
	Problems []string `json:"problems"`
}

// runAdmin posts to /admin/<path> and prints the answer.
func runAdmin(cmd *cobra.Command, f *adminFlags, path string) error {
	if f.timeout <= 0 {
		return usageError("--timeout must be above zero, got %s", f.timeout)
	}
	token := f.token
	if token == "" {
		token = os.Getenv(adminTokenEnv)
	}
	if token == "" {
		return usageError("no admin token: give --token or set %s", adminTokenEnv)
	}
	addr := f.addr
	if addr == "" {
		cfg, err := loadConfig(cmd, f.cfgPath)
		if err != nil {
			return err
		}
		addr = cfg.HTTP.Listen
	}
	health, err := healthURL(addr)
	if err != nil {
		return exitCode(2, err)
	}
	target := strings.TrimSuffix(health, "health") + "admin/" + path

	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return exitCode(2, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return exitCode(1, fmt.Errorf("relay unreachable: %w", err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return exitCode(1, fmt.Errorf("reading the answer of %s: %w", target, err))
	}
	var ans adminAnswer
	isJSON := json.Unmarshal(raw, &ans) == nil && bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{"))

	if f.asJSON && isJSON {
		if _, err := cmd.OutOrStdout().Write(raw); err != nil {
			return exitCode(1, err)
		}
	}
	switch {
	case resp.StatusCode == http.StatusOK && isJSON:
		if !f.asJSON {
			fmt.Fprintln(cmd.OutOrStdout(), describe(ans))
		}
		return nil
	case resp.StatusCode == http.StatusUnauthorized:
		return exitCode(1, errors.New("the relay wants a token and was given none it took (401)"))
	case resp.StatusCode == http.StatusForbidden:
		return exitCode(1, errors.New("the relay refused the token (403)"))
	case resp.StatusCode == http.StatusNotFound && !isJSON:
		return exitCode(1, fmt.Errorf("%s answered 404: the relay has no admin endpoints (http.admin_token is not set) or this is not a relay", target))
	case resp.StatusCode == http.StatusUnprocessableEntity && isJSON:
		if !f.asJSON {
			for _, p := range ans.Problems {
				fmt.Fprintln(cmd.ErrOrStderr(), p)
			}
		}
		return exitCode(1, fmt.Errorf("configuration refused, the running one stays: %d problem(s)", len(ans.Problems)))
	case isJSON && ans.Error != "":
		return exitCode(1, fmt.Errorf("%s (%s)", ans.Error, resp.Status))
	}
	return exitCode(1, fmt.Errorf("%s answered %s", target, resp.Status))
}

// describe says in a line what an accepted action did.
func describe(a adminAnswer) string {
	var what string
	switch {
	case a.Breaker != "":
		what = "breaker " + a.Breaker + ": " + a.State
	case a.Queue != "":
		what = "queue " + a.Queue + ": " + a.State
	case a.Action == "reload":
		what = "configuration " + a.State
	default:
		what = a.Action + ": " + a.State
	}
	if a.By != "" || a.At != "" {
		what += " (by " + a.By + " at " + a.At + ")"
	}
	return what
}
