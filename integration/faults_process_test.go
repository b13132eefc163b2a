package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// proc is one run of the built relay binary.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	log  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeConfig writes e's base configuration plus extra to a file.
func writeConfig(t *testing.T, e *env, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(e.baseYAML()+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startBinary runs `relay run --config path` with extra environment and
// waits until /readyz answers 200. The process is killed when the test
// ends if it still runs.
func startBinary(t *testing.T, path string, env ...string) *proc {
	t.Helper()
	bin := relayBinary(t)
	p := &proc{t: t, addr: freeAddr(t), log: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "run", "--config", path, "--log-format", "json")
	p.cmd.Env = append(append(os.Environ(), "RELAY_HTTP_LISTEN="+p.addr, "GOTRACEBACK=all"), env...)
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			// A failed test is worth the relay's goroutines: SIGQUIT makes
			// the Go runtime write them all (GOTRACEBACK=all) and exit.
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case err := <-p.done:
				p.done <- err
			case <-time.After(5 * time.Second):
			}
		}
		_ = p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
		if t.Failed() {
			t.Logf("relay log (pid %d):\n%s", p.cmd.Process.Pid, p.log.String())
		}
	})
	eventually(t, 30*time.Second, "relay binary ready", func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("relay exited before it was ready: %v\n%s", err, p.log.String())
		default:
		}
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// signal sends sig and waits for the process to exit, returning how long
// that took and its error (nil for exit status 0).
func (p *proc) signal(sig os.Signal, within time.Duration) (time.Duration, error) {
	p.t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return time.Since(start), err
	case <-time.After(within):
		p.t.Fatalf("relay did not exit within %s of %v", within, sig)
		return 0, nil
	}
}

// TestFaultsSIGKILLMidStreamAndRestart kills the relay binary twice while
// it works through a backlog, starts it again each time, and counts.
func TestFaultsSIGKILLMidStreamAndRestart(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	ds := newDownstream(t, paced(20*time.Millisecond))
	q := e.name("it.faults.kill")
	fc := faultConfig{URL: ds.URL, Queues: []string{q}}
	cfg := e.loadConfig(fc.yaml())
	path := writeConfig(t, e, fc.yaml())
	// Declared as the relay declares it, so the backlog can wait for it.
	if _, err := e.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	l := e.ledger("relay binary SIGKILLed twice mid-stream and restarted", in)
	const n = 300
	l.publishNow(e.url, q, 0, n, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) })

	const kills = 2
	for k := range kills {
		p := startBinary(t, path)
		waitProgress(t, l, l.rep.count(), 50)
		_, err := p.signal(syscall.SIGKILL, 10*time.Second)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: relay ended with %v, want killed by SIGKILL", k+1, err)
		}
		eventually(t, 30*time.Second, "the broker drops the killed relay's consumer", func() bool { _, c := in.depth(q); return c == 0 })
	}
	p := startBinary(t, path)
	tl := l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	if _, err := p.signal(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("relay exited with %v after SIGTERM", err)
	}
	if m, c := in.depth(q); m != 0 || c != 0 {
		t.Fatalf("after exit: %d tasks left in %s, %d consumers", m, q, c)
	}
	// A kill redoes at most the tasks in hand: the prefetch.
	l.check(tl, kills*cfg.Work[0].Prefetch)
}

// TestFaultsSIGTERMUnderLoad stops the relay binary with SIGTERM while
// tasks are in flight, some of them slower than shutdown_timeout: it must
// exit 0 soon after shutdown_timeout, handing the unfinished tasks back,
// and a restarted relay must finish them.
func TestFaultsSIGTERMUnderLoad(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	var slow atomic.Bool // until the restart, every tenth task is slow
	slow.Store(true)
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Correlation-ID")
		d := 50 * time.Millisecond
		if n, _ := strconv.Atoi(id[strings.LastIndex(id, "-")+1:]); slow.Load() && n%10 == 0 {
			d = 8 * time.Second // over shutdown_timeout, under the target's timeout
		}
		paced(d)(w, r)
	})
	q := e.name("it.faults.term")
	fc := faultConfig{URL: ds.URL, Queues: []string{q}, Timeout: "20s"}
	cfg := e.loadConfig(fc.yaml())
	path := writeConfig(t, e, fc.yaml())
	if _, err := e.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	l := e.ledger("relay binary SIGTERMed under load, tasks slower than shutdown_timeout in flight, restarted", in)
	const n = 200
	l.publishNow(e.url, q, 0, n, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) })

	const shutdownTimeout = 3 * time.Second
	env := "RELAY_SHUTDOWN_TIMEOUT=" + shutdownTimeout.String()
	p := startBinary(t, path, env)
	waitProgress(t, l, 0, 40)
	took, err := p.signal(syscall.SIGTERM, 30*time.Second)
	if err != nil {
		t.Fatalf("relay exited with %v after SIGTERM", err)
	}
	t.Logf("exit 0 %s after SIGTERM (shutdown_timeout %s)", took.Round(time.Millisecond), shutdownTimeout)
	// The drain ends at shutdown_timeout; what follows is bounded: a
	// moment for cancelled work to hand its tasks back, flushing signals,
	// closing connections.
	if limit := shutdownTimeout + 6*time.Second; took > limit {
		t.Fatalf("exit took %s, more than shutdown_timeout %s and the bounded wind-down (%s)", took, shutdownTimeout, limit)
	}
	if _, c := in.depth(q); c != 0 {
		t.Fatalf("%d consumers left after exit", c)
	}
	if tl := l.tally(); tl.Lost == 0 {
		t.Fatalf("every task was answered before SIGTERM; the scenario needs a backlog")
	}

	slow.Store(false)
	p = startBinary(t, path, env)
	tl := l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	if _, err := p.signal(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("restarted relay exited with %v after SIGTERM", err)
	}
	if m, c := in.depth(q); m != 0 || c != 0 {
		t.Fatalf("after exit: %d tasks left in %s, %d consumers", m, q, c)
	}
	l.check(tl, cfg.Work[0].Prefetch)
}
