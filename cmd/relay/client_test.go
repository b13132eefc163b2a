package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/testbroker"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeExe()
		os.Exit(code)
	}))
}

// runWithStdin runs the binary like runExe, with stdin as its input.
func runWithStdin(t *testing.T, stdin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(relayExe(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		t.Fatalf("running relay: %v", err)
	}
	return 0, out.String(), errb.String()
}

// proc is the binary running in the background.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout syncBuffer
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{}
	code   int
}

// start runs the binary in the background; it is killed when the test
// ends if it is still running.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(relayExe(t), args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = &p.stdout
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		// Wait only after every read from the pipe, as exec requires.
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitStderr waits for a stderr line containing want and returns it.
func (p *proc) waitStderr(want string, within time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		s := p.stderr.String()
		p.mu.Unlock()
		for _, line := range strings.Split(s, "\n") {
			if strings.Contains(line, want) {
				return line
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("process exited with %d before printing %q; stderr:\n%s", p.code, want, s)
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("no stderr line with %q within %s; stderr:\n%s", want, within, p.errText())
	return ""
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(within time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		p.t.Fatalf("process still running after %s; stderr:\n%s", within, p.errText())
		return -1
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) errText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// out is what the process wrote to stdout so far.
func (p *proc) out() string { return p.stdout.String() }

// waitStdout waits until stdout holds a line containing every one of
// want, and returns that line.
func (p *proc) waitStdout(within time.Duration, want ...string) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
	lines:
		for _, line := range strings.Split(p.out(), "\n") {
			for _, w := range want {
				if !strings.Contains(line, w) {
					continue lines
				}
			}
			return line
		}
		select {
		case <-p.done:
			p.t.Fatalf("process exited with %d before printing a line with %q; stdout:\n%s\nstderr:\n%s", p.code, want, p.out(), p.errText())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("no stdout line with %q within %s; stdout:\n%s\nstderr:\n%s", want, within, p.out(), p.errText())
	return ""
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// declareQueue declares a durable queue deleted when the test ends.
func declareQueue(t *testing.T, url, name string) {
	t.Helper()
	ch := testbroker.Channel(t, url)
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatalf("declaring %s: %v", name, err)
	}
	testbroker.CleanupQueues(t, url, name)
}

// getAll takes every message waiting in queue.
func getAll(t *testing.T, url, queue string) []amqp.Delivery {
	t.Helper()
	ch := testbroker.Channel(t, url)
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// publishJSON publishes body to exchange and waits for the confirm.
func publishJSON(t *testing.T, ch *amqp.Channel, exchange, key, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, amqp.Publishing{
		ContentType: "application/json", Body: []byte(body),
	})
	if err != nil {
		t.Fatalf("publishing to %s: %v", exchange, err)
	}
	if ok, err := conf.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("confirm of publish to %s: %v %v", exchange, ok, err)
	}
}

// confirmChannel opens a channel in confirm mode.
func confirmChannel(t *testing.T, url string) *amqp.Channel {
	t.Helper()
	ch := testbroker.Channel(t, url)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestBrokerURLOrder(t *testing.T) {
	cfg := &config.Config{AMQP: config.AMQP{URL: "amqp://from-config/"}}
	tests := []struct {
		name, flag, env, want string
	}{
		{"flag first", "amqp://from-flag/", "amqp://from-env/", "amqp://from-flag/"},
		{"then the environment", "", "amqp://from-env/", "amqp://from-env/"},
		{"then the configuration", "", "", "amqp://from-config/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("RELAY_AMQP_URL", tt.env)
			if got := brokerURL(tt.flag, cfg); got != tt.want {
				t.Errorf("brokerURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTLSConfigNamesTheBadKey(t *testing.T) {
	dir := t.TempDir()
	notPEM := dir + "/ca.pem"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tls  config.TLS
		want string
	}{
		{"missing CA file", config.TLS{CAFile: dir + "/none.pem"}, "amqp.tls.ca_file: "},
		{"CA file without certificates", config.TLS{CAFile: notPEM}, "amqp.tls.ca_file: no certificate found in " + notPEM},
		{"missing client certificate", config.TLS{CertFile: dir + "/c.pem", KeyFile: dir + "/k.pem"}, "amqp.tls.cert_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.tls.ClientConfig()
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("tlsConfig error = %v, want prefix %q", err, tt.want)
			}
		})
	}
	conf, err := config.TLS{ServerName: "broker.example", InsecureSkipVerify: true}.ClientConfig()
	if err != nil || conf.ServerName != "broker.example" || !conf.InsecureSkipVerify {
		t.Fatalf("tlsConfig = %+v, %v", conf, err)
	}
}

func TestPaintOnlyWhenAsked(t *testing.T) {
	if got := paint(false, ansiRed, "pain"); got != "pain" {
		t.Errorf("paint(false) = %q", got)
	}
	if got := paint(true, ansiRed, "pain"); got != "\x1b[31mpain\x1b[0m" {
		t.Errorf("paint(true) = %q", got)
	}
}
