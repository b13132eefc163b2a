package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// alarmLock keeps memory-alarm tests of every test process on this
// machine from overlapping: the alarm is the broker's, not the test's.
func alarmLock(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "relay-it-memory-alarm.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// watermarkArgs reads the broker's vm_memory_high_watermark as the
// arguments that set it again. A setting too low to run with (left by an
// interrupted run) reads as the broker's default, 0.4.
func watermarkArgs(t *testing.T, path string) []string {
	t.Helper()
	out := strings.TrimSpace(ctl(t, path, "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."))
	if f, err := strconv.ParseFloat(out, 64); err == nil && f >= 0.05 && f <= 1 {
		return []string{out}
	}
	if rest, ok := strings.CutPrefix(out, "{absolute,"); ok {
		n, err := strconv.ParseInt(strings.TrimSuffix(rest, "}"), 10, 64)
		if err == nil && n >= 256<<20 {
			return []string{"absolute", strconv.FormatInt(n, 10)}
		}
	}
	t.Logf("vm_memory_high_watermark reads %q; restoring the default 0.4", out)
	return []string{"0.4"}
}

// TestFaultsMemoryAlarm raises the broker's memory alarm twice under
// load. The first time the broker blocks the relay's publishing
// connection (connection.blocked): the relay reports not ready and pain,
// stops taking tasks, and resumes once the alarm clears. The second time
// the relay is stopped while blocked: it must exit within its
// shutdown_timeout and wind-down, not wait for the alarm to clear; a new
// relay then finishes the work, with nothing lost.
//
// The alarm is the whole broker's: while it is on, every publisher on
// this broker blocks, including other tests running at the same time. So
// each window is kept to seconds, the watermark is restored in a cleanup
// that runs even on failure, and a lock file keeps two of these from
// overlapping.
func TestFaultsMemoryAlarm(t *testing.T) {
	e := newEnv(t)
	path, whyNot := rabbitmqctl(t, e.url)
	if path == "" {
		t.Skip(whyNot)
	}
	in := e.inspector()
	// 200ms a task, 10 at a time: the backlog lasts through both alarms.
	ds := newDownstream(t, paced(200*time.Millisecond))
	q := e.name("it.faults.alarm")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}}.yaml())
	cfg.ShutdownTimeout = 2 * time.Second
	run := e.startRelay(cfg)
	events := e.events(cfg)
	l := e.ledger("broker memory alarm under load, twice: resumed, then stopped while blocked and restarted", in)
	body := func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) }
	const n = 500
	// Published before each alarm: publishers block while it is on.
	l.publishNow(e.url, q, 0, n, body)
	waitProgress(t, l, 0, 20)

	alarmLock(t)
	restoreArgs := append([]string{"set_vm_memory_high_watermark"}, watermarkArgs(t, path)...)
	on := false
	restore := func() {
		if on {
			on = false
			ctl(t, path, restoreArgs...)
		}
	}
	raise := func() time.Time {
		on = true
		ctl(t, path, "set_vm_memory_high_watermark", "0.0000001")
		return time.Now()
	}
	t.Cleanup(restore)
	blocked := func() bool {
		code, _ := run.get(t, "/readyz")
		return code == http.StatusServiceUnavailable && !run.r.Ready()
	}

	raised := raise()
	eventually(t, 30*time.Second, "relay not ready while blocked", blocked)
	_, health := run.get(t, "/health")
	restore()
	t.Logf("first alarm on for %s", time.Since(raised).Round(time.Millisecond))
	if !strings.Contains(health, `"blocked":true`) {
		t.Errorf("/health while blocked: %s", health)
	}
	eventually(t, 30*time.Second, "relay ready after the alarm", run.r.Ready)
	eventually(t, 30*time.Second, "amqp blocked pain and restored pleasure", func() bool {
		var blockedEv, restoredEv bool
		for _, m := range events.all() {
			blockedEv = blockedEv || m.RoutingKey == "amqp.broker.blocked"
			restoredEv = restoredEv || m.RoutingKey == "amqp.broker.restored"
		}
		return blockedEv && restoredEv
	})
	waitProgress(t, l, l.rep.count(), 20)

	l.publishNow(e.url, q, n, n+100, body)
	raised = raise()
	eventually(t, 30*time.Second, "relay not ready while blocked again", blocked)
	// shutdown_timeout, then a bounded wind-down: signals are given 3s to
	// flush, cancelled work a moment to hand its tasks back.
	limit := cfg.ShutdownTimeout + 6*time.Second
	took, ok := run.stopWithin(t, limit)
	if !ok {
		restore()
		t.Fatalf("relay stopped while the broker blocked it has not returned after %s (shutdown_timeout %s)", limit, cfg.ShutdownTimeout)
	}
	t.Logf("stopped while blocked: Run returned after %s", took.Round(time.Millisecond))
	restore()
	t.Logf("second alarm on for %s", time.Since(raised).Round(time.Millisecond))

	run = e.startRelay(cfg)
	tl := l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	run.stop(t)
	if m, _ := in.depth(q); m != 0 {
		t.Fatalf("after stop: %d tasks left unacked in %s", m, q)
	}
	// Stopping hands back the tasks in hand; those answered whose ack
	// did not make it come again.
	l.check(tl, cfg.Work[0].Prefetch)
}
