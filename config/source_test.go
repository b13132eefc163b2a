package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vsm-relay/relay/internal/fielderr"
)

func environOf(vars ...string) func() []string {
	return func() []string { return vars }
}

func TestSourceUnknownEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"a typo", []string{"RELAY_AMQP_PREFECH=5"},
			[]string{"RELAY_AMQP_PREFECH: no such configuration key; did you mean RELAY_AMQP_PREFETCH?"}},
		{"a typo in a named entry", []string{"RELAY_BREAKERS_LLM_API_TIMOUT=5s"},
			[]string{"RELAY_BREAKERS_LLM_API_TIMOUT: no such configuration key; did you mean RELAY_BREAKERS_LLM_API_TIMEOUT?"}},
		{"a list entry out of range", []string{"RELAY_WORK_1_TARGET=echo"},
			[]string{"RELAY_WORK_1_TARGET: no such configuration key; did you mean RELAY_WORK_0_TARGET?"}},
		{"nothing near", []string{"RELAY_NOT_A_KEY=x"}, []string{"RELAY_NOT_A_KEY: no such configuration key"}},
		{"a section, not a key", []string{"RELAY_AMQP=x"}, []string{"RELAY_AMQP: no such configuration key"}},
		{"every one at once, with the file's problems", []string{"RELAY_HTTP_LISTN=x", "RELAY_AMQP_PREFETCH=0"}, []string{
			"RELAY_HTTP_LISTN: no such configuration key; did you mean RELAY_HTTP_LISTEN?",
			"amqp.prefetch: must be from 1 to 65535, got 0",
		}},
		{"empty counts as unset", []string{"RELAY_AMQP_PREFECH="}, nil},
		{"other prefixes are not ours", []string{"RELAYX_A=1", "AMQP_URL=x", "RELAY=1"}, nil},
		{"the tests' variables", []string{"RELAY_TEST_AMQP_URL=amqp://x/", "RELAY_TEST_LOG=1", "RELAY_FUZZTIME=10s"}, nil},
		{"keys are not refused", []string{"RELAY_AMQP_URL=amqp://h/", "RELAY_HTTP_ADMIN_TOKEN=t", "RELAY_INSTANCE=i",
			"RELAY_BULKHEADS_LLM_WORKER_MAX_WAITING=2", "RELAY_TARGETS_ECHO_RETRY_BUDGET_RATIO=0.5", "RELAY_WORK_0_QUEUE_TYPE=quorum"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Source{Environ: environOf(tt.environ...)}.Load()
			if got := fielderr.Lines(err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// A Source reads its file and environment again on every Load, as a
// reload needs.
func TestSourceLoadsAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.yaml")
	env := []string{"RELAY_HTTP_LISTEN=127.0.0.1:0"}
	src := Source{Path: path, Environ: func() []string { return env }}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write("instance: a\namqp: {prefetch: 5}\n")
	c, err := src.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance != "a" || c.AMQP.Prefetch != 5 || c.HTTP.Listen != "127.0.0.1:0" || c.Work[0].Prefetch != 5 {
		t.Fatalf("first load: instance %q prefetch %d listen %q", c.Instance, c.AMQP.Prefetch, c.HTTP.Listen)
	}

	write("instance: b\namqp: {prefetch: 7, prefech: 1}\n")
	if _, err := src.Load(); !reflect.DeepEqual(fielderr.Lines(err), []string{`amqp.prefech: unknown key (did you mean "prefetch"?)`}) {
		t.Fatalf("invalid file: %q", fielderr.Lines(err))
	}

	write("instance: b\namqp: {prefetch: 7}\n")
	env = []string{"RELAY_HTTP_LISTEN=127.0.0.1:1"}
	c2, err := src.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c2.Instance != "b" || c2.AMQP.Prefetch != 7 || c2.HTTP.Listen != "127.0.0.1:1" {
		t.Fatalf("second load: instance %q prefetch %d listen %q", c2.Instance, c2.AMQP.Prefetch, c2.HTTP.Listen)
	}
	if c.Instance != "a" || c.AMQP.Prefetch != 5 {
		t.Fatalf("the second load changed the first Config")
	}
}

func TestSourceFillsInstance(t *testing.T) {
	c, err := Source{Environ: environOf()}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance == "" || c.Algedonic.Instance != c.Instance || c.Health.Instance != c.Instance {
		t.Fatalf("instance %q, algedonic %q, health %q", c.Instance, c.Algedonic.Instance, c.Health.Instance)
	}
	c, err = Source{Environ: environOf("RELAY_INSTANCE=edge-2")}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance != "edge-2" || c.Algedonic.Instance != "edge-2" || c.Health.Instance != "edge-2" {
		t.Fatalf("instance %q, algedonic %q, health %q", c.Instance, c.Algedonic.Instance, c.Health.Instance)
	}
}

func TestSourceMissingFile(t *testing.T) {
	_, err := Source{Path: filepath.Join(t.TempDir(), "missing.yaml"), Environ: environOf()}.Load()
	if err == nil || !strings.Contains(err.Error(), "reading configuration") {
		t.Errorf("missing file: got %v", err)
	}
}
