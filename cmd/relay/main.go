// Command relay runs the relay and the client commands that go with it.
//
//	relay run [--config FILE]
//	relay config check [--config FILE]
//	relay publish --queue Q [--reply] ...
//	relay watch [--signal pain|pleasure|health|all]
//	relay status [--addr HOST:PORT]
//	relay queues [QUEUE...]
//	relay version
//
// Exit codes: 0 ok, 1 an error (or an error reply), 2 a bad configuration
// or usage, 3 a timeout.
package main

import (
	"errors"
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args[1:])) }

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(code int, err error) error { return &exitError{code: code, err: err} }

func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "relay:", ee.err)
		}
		return ee.code
	}
	// cobra's own errors are usage errors (unknown flag, bad args).
	fmt.Fprintln(os.Stderr, "relay:", err)
	return 2
}
