package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	exeOnce sync.Once
	exeDir  string
	exePath string
	exeErr  error
)

// removeExe deletes the build directory relayExe made, if it made one.
func removeExe() {
	if exeDir != "" {
		os.RemoveAll(exeDir)
	}
}

// relayExe builds this command once per test binary.
func relayExe(t *testing.T) string {
	t.Helper()
	exeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "relay-cmd-test")
		if err != nil {
			exeErr = err
			return
		}
		exeDir = dir
		exePath = filepath.Join(dir, "relay")
		out, err := exec.Command("go", "build", "-o", exePath, ".").CombinedOutput()
		if err != nil {
			exeErr = errors.New(string(out))
		}
	})
	if exeErr != nil {
		t.Fatalf("building relay: %v", exeErr)
	}
	return exePath
}

// runExe runs the binary with args and env additions and returns its exit
// code, stdout and stderr.
func runExe(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(relayExe(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running relay: %v", err)
	}
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheckPrintsEffectiveConfigWithSecretsHidden(t *testing.T) {
	code, out, stderr := runExe(t, []string{
		"RELAY_AMQP_URL=amqp://app:hunter2@broker.example:5672/vh",
		"RELAY_HTTP_LISTEN=127.0.0.1:9999",
	}, "config", "check")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	for _, want := range []string{"url: amqp://app:***@broker.example:5672/vh", "listen: 127.0.0.1:9999", "vsm.tasks.echo", "failure_threshold: 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out+stderr, "hunter2") {
		t.Fatal("config check printed the password")
	}
}

func TestConfigCheckNamesEveryProblemAndExits2(t *testing.T) {
	path := writeFile(t, `
amqp:
  prefech: 10
  connect_timeout: 30
targets:
  echo: {url: "http://127.0.0.1:8081/", breaker: nope, bulkhead: api_agent, backoff: external_api}
`)
	code, out, stderr := runExe(t, nil, "config", "check", "--config", path)
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr %s", code, stderr)
	}
	if out != "" {
		t.Fatalf("printed a configuration although it is invalid:\n%s", out)
	}
	for _, want := range []string{
		"amqp.prefech: unknown key",
		"amqp.connect_timeout: ",
		"targets.echo.breaker: unknown breaker \"nope\"",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestConfigCheckEnvironment(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		code     int
		out, err string
	}{
		{"a misspelt variable is a problem", []string{"RELAY_AMQP_PREFECH=5"}, 2, "",
			"RELAY_AMQP_PREFECH: no such configuration key; did you mean RELAY_AMQP_PREFETCH?\n"},
		{"the admin token is a secret", []string{"RELAY_HTTP_ADMIN_TOKEN=s3cr3t-t0ken"}, 0, "admin_token: '***'\n", ""},
		{"the tests' variables are let be", []string{"RELAY_TEST_SOMETHING=1", "RELAY_FUZZTIME=1s"}, 0, "admin_token: \"\"\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := runExe(t, tt.env, "config", "check")
			if code != tt.code || !strings.Contains(out, tt.out) || !strings.HasPrefix(stderr, tt.err) {
				t.Fatalf("exit %d, want %d\nstdout lacks %q:\n%s\nstderr %q, want it to start %q", code, tt.code, tt.out, out, stderr, tt.err)
			}
			if strings.Contains(out+stderr, "s3cr3t") {
				t.Fatal("config check printed the admin token")
			}
		})
	}
}

func TestRunRefusesBadConfigurationInOneLine(t *testing.T) {
	path := writeFile(t, "shutdown_timeout: 5\n")
	code, _, stderr := runExe(t, nil, "run", "--config", path)
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "shutdown_timeout") {
		t.Fatalf("want one line naming shutdown_timeout, got:\n%s", stderr)
	}
}

func TestRunFailsWhenTheBrokerCannotBeReachedWithinConnectTimeout(t *testing.T) {
	start := time.Now()
	code, _, stderr := runExe(t, []string{
		"RELAY_AMQP_URL=amqp://guest:secretpw@127.0.0.1:1/",
		"RELAY_AMQP_CONNECT_TIMEOUT=1s",
		"RELAY_HTTP_LISTEN=127.0.0.1:0",
	}, "run", "--log-level", "error")
	if code == 0 {
		t.Fatal("run exited 0 without a broker")
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("took %s with a 1s connect timeout", took)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "could not connect to broker amqp://guest:***@127.0.0.1:1/ within 1s") {
		t.Fatalf("last line does not give the reason: %q", last)
	}
	if strings.Contains(stderr, "secretpw") {
		t.Fatal("the password leaked")
	}
}

func TestUnknownFlagIsAUsageError(t *testing.T) {
	code, _, _ := runExe(t, nil, "run", "--no-such-flag")
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}
