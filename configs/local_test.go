package configs_test

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vsm-relay/relay/config"
)

// The README's walk-through quotes compose-relay.yaml's numbers (a breaker
// that opens after 5 failures within 30s, probes every 15s and closes
// after 2 successes; 2 retries; a pool of 4+2; health every 5s) and gives
// local-relay.yaml to the reader without Docker. Both must hold the same
// numbers; only the addresses differ.
func TestLocalConfigHasTheWalkThroughsNumbers(t *testing.T) {
	c := loadCompose(t)
	compose := relayConfig(t, c)
	data := readFile(t, filepath.Join(root, "configs", "local-relay.yaml"))
	local, err := config.LoadBytes([]byte(data), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("local-relay.yaml fails `relay config check`:\n%v", err)
	}

	if local.AMQP.URL != "amqp://guest:guest@127.0.0.1:5672/" {
		t.Errorf("amqp.url %s: want the broker on this machine", config.RedactURL(local.AMQP.URL))
	}
	if local.HTTP.Listen != "127.0.0.1:9090" {
		t.Errorf("http.listen %q: want 127.0.0.1:9090, where relay status looks", local.HTTP.Listen)
	}
	if got := local.Targets["echo"].URL; got != "http://127.0.0.1:8081/" {
		t.Errorf("targets.echo.url %q: want demo-downstream's default address", got)
	}
	if local.Instance != compose.Instance {
		t.Errorf("instance %q, compose's %q", local.Instance, compose.Instance)
	}

	// Everything else is the same.
	for name, tg := range local.Targets {
		if ct, ok := compose.Targets[name]; ok {
			ct.URL = tg.URL
			compose.Targets[name] = ct
		}
	}
	compose.AMQP.URL, compose.HTTP.Listen = local.AMQP.URL, local.HTTP.Listen
	sections := []struct {
		name          string
		local, fromUp any
	}{
		{"amqp", local.AMQP, compose.AMQP},
		{"breakers", local.Breakers, compose.Breakers},
		{"bulkheads", local.Bulkheads, compose.Bulkheads},
		{"backoff", local.Backoff, compose.Backoff},
		{"targets", local.Targets, compose.Targets},
		{"work", local.Work, compose.Work},
		{"outbound", local.Outbound, compose.Outbound},
		{"algedonic", local.Algedonic, compose.Algedonic},
		{"health", local.Health, compose.Health},
		{"shutdown_timeout", local.ShutdownTimeout, compose.ShutdownTimeout},
	}
	for _, s := range sections {
		if !reflect.DeepEqual(s.local, s.fromUp) {
			t.Errorf("%s differs:\nlocal-relay.yaml:   %+v\ncompose-relay.yaml: %+v", s.name, s.local, s.fromUp)
		}
	}
}
