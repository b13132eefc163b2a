package relayproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrExited reports a process that ended before it said it was ready.
var ErrExited = errors.New("exited")

// Process is one running relay, or another measured process.
type Process struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	err  error // set before done closes

	mu   sync.Mutex
	tail []string // the last log lines, for error messages
}

const tailLines = 20

// Start runs bin with args (for example "run", "--config", FILE,
// "--log-format", "json") and returns once the relay logs that it is
// running, or fails when it exits first or ready passes.
func Start(ctx context.Context, bin string, args []string, ready time.Duration) (*Process, error) {
	return StartUntil(ctx, bin, args, ready, ParseRunning)
}

// StartUntil is Start for any process that announces on stderr that it
// is ready: running recognises that line and returns the address it
// names, if any.
func StartUntil(ctx context.Context, bin string, args []string, ready time.Duration, running func(line []byte) (string, bool)) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	up := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			p.remember(line)
			if addr, ok := running([]byte(line)); ok {
				select {
				case up <- addr:
				default:
				}
			}
		}
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it to the end first
		p.err = cmd.Wait()
		close(p.done)
	}()

	timer := time.NewTimer(ready)
	defer timer.Stop()
	select {
	case addr := <-up:
		p.addr = addr
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s: %w before it was ready (%v): %s", filepath.Base(bin), ErrExited, p.err, p.Tail())
	case <-timer.C:
		p.Stop(2 * time.Second)
		return nil, fmt.Errorf("%s not ready after %s: %s", filepath.Base(bin), ready, p.Tail())
	case <-ctx.Done():
		p.Stop(2 * time.Second)
		return nil, ctx.Err()
	}
}

func (p *Process) remember(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == tailLines {
		p.tail = append(p.tail[:0], p.tail[1:]...)
	}
	p.tail = append(p.tail, line)
}

// Tail returns the last lines the relay logged, joined.
func (p *Process) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// PID is the relay's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Addr is the host:port of the relay's HTTP endpoints.
func (p *Process) Addr() string { return p.addr }

// Exited reports whether the relay has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop asks the process to shut down (SIGTERM) and kills it if it has not
// exited within grace. It returns its exit error, if any.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s; killed", filepath.Base(p.cmd.Path), grace)
	}
}

// ParseRunning recognises the relay's "relay running" JSON log line and
// returns the HTTP address it carries.
func ParseRunning(line []byte) (addr string, ok bool) {
	var rec struct {
		Msg  string `json:"msg"`
		HTTP string `json:"http"`
	}
	if json.Unmarshal(line, &rec) != nil || rec.Msg != "relay running" || rec.HTTP == "" {
		return "", false
	}
	return rec.HTTP, true
}
