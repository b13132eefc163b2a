package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dlqCLI runs `relay dlq ARGS --url URL` to the end and returns its exit
// code, stdout and stderr.
func dlqCLI(t *testing.T, brokerURL string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(relayBinary(t), append(append([]string{"dlq"}, args...), "--url", brokerURL)...)
	cmd.Env = os.Environ()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		t.Fatalf("running relay dlq: %v", err)
	}
	return 0, out.String(), errb.String()
}

// TestDlqListAndReplayThroughASIGKILL is the operator's way out of a bad
// hour: 100 tasks dead-lettered at once by a downstream that answers 404,
// listed with their reasons (and still there after), then, the downstream
// fixed, replayed while the relay binary is SIGKILLed and started again
// in the middle of the replay, and the replay itself SIGKILLed and run
// again. Every task must be answered at least once, and the dead-letter
// queue end empty.
func TestDlqListAndReplayThroughASIGKILL(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	var fixed atomic.Bool
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		if !fixed.Load() {
			status(http.StatusNotFound)(w, r)
			return
		}
		paced(20*time.Millisecond)(w, r)
	})
	q := e.name("it.dlq")
	dlq := q + ".dlq"
	fc := faultConfig{URL: ds.URL, Queues: []string{q}}
	cfg := e.loadConfig(fc.yaml())
	path := writeConfig(t, e, fc.yaml())
	l := e.ledger("100 dead letters replayed, relay binary SIGKILLed mid-replay, replay SIGKILLed and run again", in)
	const n = 100

	// Phase 1: every task is dead-lettered at once (a 404 is permanent).
	p := startBinary(t, path)
	l.publishNow(e.url, q, 0, n, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) })
	eventually(t, 60*time.Second, "100 dead letters", func() bool { m, _ := in.depth(dlq); return m == n })

	// The list shows every one with its reason, and removes none.
	code, out, errOut := dlqCLI(t, e.url, "list", q)
	if code != 0 || errOut != fmt.Sprintf("listed %d of %d dead letters in %s; none removed\n", n, n, dlq) {
		t.Fatalf("dlq list: exit %d, stderr %q", code, errOut)
	}
	rows := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(rows) != n+1 || strings.Join(strings.Fields(rows[0]), " ") != "ID STATUS ATTEMPTS WHEN REASON" {
		t.Fatalf("dlq list printed %d lines, want a heading and %d rows:\n%s", len(rows), n, out)
	}
	listed := map[string]bool{}
	for _, row := range rows[1:] {
		f := strings.Fields(row)
		if len(f) < 5 || f[1] != "404" || f[2] != "1" || !strings.HasPrefix(strings.Join(f[4:], " "), "HTTP 404 Not Found from target svc") {
			t.Fatalf("dlq list row %q: want status 404, 1 attempt, the 404 as reason", row)
		}
		listed[f[0]] = true
	}
	for i := range n {
		if !listed[l.id(i)] {
			t.Fatalf("task %s is not listed:\n%s", l.id(i), out)
		}
	}
	code, out, _ = dlqCLI(t, e.url, "list", q, "--json", "--n", "10")
	sc := bufio.NewScanner(strings.NewReader(out))
	lines := 0
	for sc.Scan() {
		var dl struct {
			Reason    string         `json:"reason"`
			Status    int            `json:"status"`
			BodyBytes int            `json:"body_bytes"`
			Headers   map[string]any `json:"headers"`
		}
		if err := json.Unmarshal(sc.Bytes(), &dl); err != nil || dl.Status != 404 || dl.BodyBytes == 0 ||
			dl.Headers["x-relay-error"] != dl.Reason || !strings.Contains(dl.Reason, "404") {
			t.Fatalf("dlq list --json line %s: %+v, %v", sc.Text(), dl, err)
		}
		lines++
	}
	if code != 0 || lines != 10 {
		t.Fatalf("dlq list --json --n 10: exit %d, %d lines", code, lines)
	}
	if m, c := in.depth(dlq); m != n || c != 0 {
		t.Fatalf("after listing: %d dead letters, %d consumers in %s; want %d, 0", m, c, dlq, n)
	}
	if tl := l.tally(); tl.Answered != 0 || tl.Lost != n {
		t.Fatalf("before the replay: %+v, want no task answered", tl)
	}

	// Phase 2: the downstream is fixed; the replay runs, paced so that
	// the faults strike in its middle.
	eventually(t, 30*time.Second, "the error replies of phase 1", func() bool { return l.rep.count() >= n })
	fixed.Store(true)
	answered := func(k int) func() bool { return func() bool { return l.tally().Answered >= k } }
	replay := exec.Command(relayBinary(t), "dlq", "replay", q, "--url", e.url, "--rate", "20")
	replayLog := &lockedBuffer{}
	replay.Stderr = replayLog
	if err := replay.Start(); err != nil {
		t.Fatal(err)
	}
	replayDone := make(chan error, 1)
	go func() { replayDone <- replay.Wait() }()
	t.Cleanup(func() {
		_ = replay.Process.Kill()
		<-replayDone
		if t.Failed() {
			t.Logf("first replay's stderr:\n%s", replayLog.String())
		}
	})
	running := func() bool {
		select {
		case err := <-replayDone:
			replayDone <- err
			return false
		default:
			return true
		}
	}

	eventually(t, 30*time.Second, "15 tasks answered", answered(15))
	if !running() {
		t.Fatalf("the replay ended before the relay was killed; stderr:\n%s", replayLog.String())
	}
	_, err := p.signal(syscall.SIGKILL, 10*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("relay ended with %v, want killed by SIGKILL", err)
	}
	eventually(t, 30*time.Second, "the broker drops the killed relay's consumer", func() bool { _, c := in.depth(q); return c == 0 })
	startBinary(t, path)

	// Then the replay itself dies, between a confirm and its ack at
	// worst: what it held goes back to the dead-letter queue.
	eventually(t, 30*time.Second, "half the tasks answered", answered(n/2))
	if !running() {
		t.Fatalf("the replay ended before it was killed; stderr:\n%s", replayLog.String())
	}
	if !strings.Contains(replayLog.String(), fmt.Sprintf(" of %d to %s\n", n, q)) {
		t.Errorf("the replay printed no progress line in its seconds of work; stderr:\n%s", replayLog.String())
	}
	if err := replay.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-replayDone; !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("replay ended with %v, want killed by SIGKILL", err)
	}
	replayDone <- err
	eventually(t, 30*time.Second, "the broker drops the killed replay's consumer", func() bool { _, c := in.depth(dlq); return c == 0 })
	left, _ := in.depth(dlq)
	if left == 0 || left == n {
		t.Fatalf("%d dead letters left after the replay was killed; want some replayed and some not", left)
	}
	t.Logf("the first replay got %d of %d dead letters out before it was killed", n-left, n)

	// The second replay finishes the job.
	code, _, errOut = dlqCLI(t, e.url, "replay", q)
	if code != 0 || !strings.HasPrefix(errOut, fmt.Sprintf("replayed %d of %d ", left, left)) {
		t.Fatalf("second replay: exit %d, stderr %q; want %d replayed", code, errOut, left)
	}

	tl := l.settle(90*time.Second, nil, settledQueues(cfg)...)
	if m, c := in.depth(dlq); m != 0 || c != 0 {
		t.Fatalf("after the replay: %d dead letters, %d consumers in %s; want none", m, c, dlq)
	}
	if tl.Answered != n || tl.DeadLettered != 0 {
		t.Fatalf("tally %+v: want all %d answered", tl, n)
	}
	// Duplicates are bounded by the relay's prefetch (its kill) and the
	// replay's window of unconfirmed copies (its kill).
	l.check(tl, cfg.Work[0].Prefetch+100)
	code, out, _ = dlqCLI(t, e.url, "list", q)
	if code != 0 || out != dlq+" is empty\n" {
		t.Fatalf("dlq list at the end: exit %d, stdout %q", code, out)
	}
}
