package shovel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// ErrUnavailable reports a broker whose shovel plugin cannot be used
// here (no rabbitmqctl, no rights, or the plugin missing).
var ErrUnavailable = errors.New("shovel: not available")

// Spec is one shovel from a source queue to a destination exchange.
type Spec struct {
	SrcURI, SrcQueue      string
	DestURI, DestExchange string
	DestKey               string
	// Prefetch is src-prefetch-count. Zero: 1000.
	Prefetch int
}

// Definition renders the shovel's parameter value for rabbitmqctl
// set_parameter: AMQP 0-9-1 on both sides, on-confirm, no forwarding
// headers added (so the moved messages are the same size as the
// relay's), and the source left in place.
func (s Spec) Definition() ([]byte, error) {
	if s.SrcURI == "" || s.SrcQueue == "" || s.DestURI == "" {
		return nil, errors.New("shovel: source URI, source queue and destination URI are required")
	}
	prefetch := s.Prefetch
	if prefetch <= 0 {
		prefetch = 1000
	}
	return json.Marshal(struct {
		SrcProtocol     string `json:"src-protocol"`
		SrcURI          string `json:"src-uri"`
		SrcQueue        string `json:"src-queue"`
		SrcPrefetch     int    `json:"src-prefetch-count"`
		SrcDeleteAfter  string `json:"src-delete-after"`
		DestProtocol    string `json:"dest-protocol"`
		DestURI         string `json:"dest-uri"`
		DestExchange    string `json:"dest-exchange"`
		DestExchangeKey string `json:"dest-exchange-key"`
		ForwardHeaders  bool   `json:"dest-add-forward-headers"`
		AckMode         string `json:"ack-mode"`
		ReconnectDelay  int    `json:"reconnect-delay"`
	}{
		SrcProtocol: "amqp091", SrcURI: s.SrcURI, SrcQueue: s.SrcQueue, SrcPrefetch: prefetch, SrcDeleteAfter: "never",
		DestProtocol: "amqp091", DestURI: s.DestURI, DestExchange: s.DestExchange, DestExchangeKey: s.DestKey,
		AckMode: "on-confirm", ReconnectDelay: 1,
	})
}

// run runs a broker admin command with a bounded time.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// EnsurePlugin enables rabbitmq_shovel when it is not enabled yet, and
// reports whether it had to. The plugin is left enabled.
func EnsurePlugin(ctx context.Context) (enabledNow bool, err error) {
	if _, err := exec.LookPath("rabbitmq-plugins"); err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out, err := run(ctx, "rabbitmq-plugins", "list", "--enabled", "--minimal")
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if Enabled(out) {
		return false, nil
	}
	if _, err := run(ctx, "rabbitmq-plugins", "enable", "rabbitmq_shovel"); err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return true, nil
}

// Enabled reports whether the output of `rabbitmq-plugins list --enabled
// --minimal` names rabbitmq_shovel.
func Enabled(listOutput string) bool {
	for _, f := range strings.Fields(listOutput) {
		if f == "rabbitmq_shovel" {
			return true
		}
	}
	return false
}

// Set creates (or replaces) the dynamic shovel name on vhost "/".
func Set(ctx context.Context, name string, s Spec) error {
	def, err := s.Definition()
	if err != nil {
		return err
	}
	_, err = run(ctx, "rabbitmqctl", "set_parameter", "-p", "/", "shovel", name, string(def))
	return err
}

// Clear deletes the dynamic shovel name, which stops it.
func Clear(ctx context.Context, name string) error {
	_, err := run(ctx, "rabbitmqctl", "clear_parameter", "-p", "/", "shovel", name)
	return err
}
