package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestSIGTERMDrainsInFlightWorkAndLosesNothing runs the built binary,
// sends SIGTERM under load, and counts: every task is either answered or
// still in the queue, and the relay exits 0.
func TestSIGTERMDrainsInFlightWorkAndLosesNothing(t *testing.T) {
	bin := relayBinary(t)
	e := newEnv(t)
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		echo(w, r)
	})
	q := e.name("it.sigterm")
	yaml := e.baseYAML() + workYAML(q, ds.URL, "", "", "1s")
	e.loadConfig(workYAML(q, ds.URL, "", "", "1s")) // validates and records names for cleanup
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := e.replyQueue()
	// Declared as the relay declares it, so tasks can wait before it starts.
	if _, err := e.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	const n = 200
	e.publishMany(q, n, func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte(fmt.Sprint(i)), CorrelationId: fmt.Sprint(i), ReplyTo: rep.queue}
	})

	cmd := exec.Command(bin, "run", "--config", path, "--log-format", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay log:\n%s", stderr.String())
		}
	})
	eventually(t, 20*time.Second, "some tasks answered", func() bool { return rep.count() >= 20 })
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("relay exited with %v after SIGTERM; log:\n%s", err, stderr.String())
	}
	if took > 12*time.Second {
		t.Fatalf("drain took %s, shutdown_timeout is 10s", took)
	}
	time.Sleep(200 * time.Millisecond) // let the last replies land
	answered := map[string]bool{}
	for _, m := range rep.all() {
		answered[m.CorrelationId] = true
	}
	left, consumers := e.depth(q)
	if consumers != 0 {
		t.Fatalf("%d consumers remain after exit", consumers)
	}
	// Nothing lost: every task was answered or is back in the queue (a
	// task answered but not acked before exit is both: at least once).
	remaining := map[string]bool{}
	for _, m := range e.take(q) {
		remaining[m.CorrelationId] = true
	}
	lost := 0
	dup := 0
	for i := 0; i < n; i++ {
		id := fmt.Sprint(i)
		if !answered[id] && !remaining[id] {
			lost++
		}
		if answered[id] && remaining[id] {
			dup++
		}
	}
	t.Logf("SIGTERM after %d answers; drained in %s; answered %d, left in queue %d, both %d", 20, took, len(answered), left, dup)
	if lost != 0 {
		t.Fatalf("%d tasks lost", lost)
	}
	if dl, _ := e.depth(q + ".dlq"); dl != 0 {
		t.Fatalf("%d tasks dead-lettered", dl)
	}
}
