package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/internal/testbroker"
)

// dlqRun runs the command in process, as run does, and returns its exit
// code, stdout and stderr.
func dlqRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(args)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(""))
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return 0, out.String(), errb.String()
	}
	code := 2
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(&errb, "relay:", msg)
	}
	return code, out.String(), errb.String()
}

// dlqPair declares a queue and its .dlq, deleted when the test ends.
func dlqPair(t *testing.T, url, prefix string) (queue, dlq string) {
	t.Helper()
	queue = testbroker.Unique(prefix)
	dlq = queue + ".dlq"
	testbroker.CleanupQueues(t, url, queue, dlq)
	ch := testbroker.Channel(t, url)
	defer ch.Close()
	for _, q := range []string{queue, dlq} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatalf("declaring %s: %v", q, err)
		}
	}
	return queue, dlq
}

// dlqPut publishes msgs to queue, confirmed, in order.
func dlqPut(t *testing.T, url, queue string, msgs ...amqp.Publishing) {
	t.Helper()
	ch := testbroker.Channel(t, url)
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var confs []*amqp.DeferredConfirmation
	for _, m := range msgs {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, m)
		if err != nil {
			t.Fatalf("publishing to %s: %v", queue, err)
		}
		confs = append(confs, c)
	}
	for _, c := range confs {
		if ok, err := c.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish to %s not confirmed: %v", queue, err)
		}
	}
}

// dlqDepth is the number of messages ready in queue.
func dlqDepth(t *testing.T, url, queue string) int {
	t.Helper()
	ch := testbroker.Channel(t, url)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspecting %s: %v", queue, err)
	}
	return q.Messages
}

// dlqTake takes (and acks) every message ready in queue, in order.
func dlqTake(t *testing.T, url, queue string) []amqp.Delivery {
	t.Helper()
	ch := testbroker.Channel(t, url)
	defer ch.Close()
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

func messageIDs(ds []amqp.Delivery) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.MessageId
		if ids[i] == "" {
			ids[i] = "corr:" + d.CorrelationId
		}
	}
	return ids
}

var dlqAt = time.Date(2026, 12, 2, 8, 30, 0, 0, time.UTC)

// workDeadLetters are three dead letters as the relay writes them for a
// work queue, and as a broker's own dead-lettering leaves them.
func workDeadLetters(queue string) []amqp.Publishing {
	return []amqp.Publishing{
		{
			MessageId: "task-1", CorrelationId: "c-1", ReplyTo: "replies", ContentType: "application/json",
			DeliveryMode: amqp.Persistent, Timestamp: dlqAt, Priority: 3, AppId: "billing", Type: "invoice",
			Headers: amqp.Table{
				"x-relay-error": "downstream answered 404 Not Found", "x-relay-status": int32(404),
				"x-relay-attempts": int32(1), "x-relay-target": "echo", "x-relay-queue": queue,
				"tenant": "acme", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			},
			Body: []byte(`{"invoice":1}`),
		},
		{
			CorrelationId: "c-2", ContentType: "text/plain", DeliveryMode: amqp.Persistent,
			Headers: amqp.Table{
				"x-relay-error": "request body over max_request_bytes\n(4096)", "x-relay-attempts": int32(0),
				"x-relay-redeliveries": int32(2), "x-relay-target": "echo", "x-relay-queue": queue,
				"x-relay-replayed": int32(1),
				"x-death": []any{amqp.Table{
					"queue": queue + ".delay.1s", "reason": "expired", "count": int64(2),
					"time": dlqAt.Add(time.Minute), "exchange": "",
				}},
				"x-first-death-queue": queue + ".delay.1s", "x-first-death-reason": "expired", "x-first-death-exchange": "",
			},
			Body: []byte("too big"),
		},
		{
			MessageId: "task-3", DeliveryMode: amqp.Transient,
			Body: []byte{0xff, 0x00},
		},
	}
}

func TestDLQListShowsWhyAndRemovesNothing(t *testing.T) {
	url := testbroker.URL(t)
	queue, dlq := dlqPair(t, url, "cli.dlq.list")
	dlqPut(t, url, dlq, workDeadLetters(queue)...)

	tests := []struct {
		name   string
		args   []string
		stdout string
		stderr string
	}{
		{
			"all",
			nil,
			"ID      STATUS  ATTEMPTS  WHEN                      REASON\n" +
				"task-1  404     1         2026-12-02T08:30:00.000Z  downstream answered 404 Not Found\n" +
				"c-2     -       0         2026-12-02T08:31:00.000Z  request body over max_request_bytes (4096)\n" +
				"task-3  -       -         -                         -\n",
			"listed 3 of 3 dead letters in " + dlq + "; none removed\n",
		},
		{
			"the oldest two",
			[]string{"--n", "2"},
			"ID      STATUS  ATTEMPTS  WHEN                      REASON\n" +
				"task-1  404     1         2026-12-02T08:30:00.000Z  downstream answered 404 Not Found\n" +
				"c-2     -       0         2026-12-02T08:31:00.000Z  request body over max_request_bytes (4096)\n",
			"listed 2 of 2 dead letters in " + dlq + "; none removed\n",
		},
		{
			"more than there are",
			[]string{"-n", "10"},
			"ID      STATUS  ATTEMPTS  WHEN                      REASON\n" +
				"task-1  404     1         2026-12-02T08:30:00.000Z  downstream answered 404 Not Found\n" +
				"c-2     -       0         2026-12-02T08:31:00.000Z  request body over max_request_bytes (4096)\n" +
				"task-3  -       -         -                         -\n",
			"listed 3 of 3 dead letters in " + dlq + "; none removed\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := dlqRun(t, append([]string{"dlq", "list", queue, "--url", url}, tt.args...)...)
			if code != 0 || out != tt.stdout || errOut != tt.stderr {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut, tt.stdout, tt.stderr)
			}
			if n := dlqDepth(t, url, dlq); n != 3 {
				t.Fatalf("%s holds %d dead letters after listing, want 3", dlq, n)
			}
		})
	}
	// Listed three times, and still all there, in their order.
	got := messageIDs(dlqTake(t, url, dlq))
	if want := []string{"task-1", "corr:c-2", "task-3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("%s after listing = %v, want %v", dlq, got, want)
	}
}

func TestDLQListJSON(t *testing.T) {
	url := testbroker.URL(t)
	queue, dlq := dlqPair(t, url, "cli.dlq.json")
	dlqPut(t, url, dlq, workDeadLetters(queue)...)

	code, out, errOut := dlqRun(t, "dlq", "list", queue, "--url", url, "--json")
	if code != 0 || errOut != "listed 3 of 3 dead letters in "+dlq+"; none removed\n" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out)
	}
	var got []map[string]any
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", line, err)
		}
		got = append(got, m)
	}
	want := []map[string]any{
		{
			"position": 1.0, "message_id": "task-1", "correlation_id": "c-1", "reason": "downstream answered 404 Not Found",
			"status": 404.0, "attempts": 1.0, "target": "echo", "queue": queue, "when": "2026-12-02T08:30:00.000Z",
			"content_type": "application/json", "reply_to": "replies", "body_bytes": 13.0,
			"headers": map[string]any{
				"x-relay-error": "downstream answered 404 Not Found", "x-relay-status": 404.0,
				"x-relay-attempts": 1.0, "x-relay-target": "echo", "x-relay-queue": queue,
				"tenant": "acme", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			},
		},
		{
			"position": 2.0, "correlation_id": "c-2", "reason": "request body over max_request_bytes\n(4096)",
			"attempts": 0.0, "target": "echo", "queue": queue, "when": "2026-12-02T08:31:00.000Z", "replayed": 1.0,
			"content_type": "text/plain", "body_bytes": 7.0,
			"headers": map[string]any{
				"x-relay-error": "request body over max_request_bytes\n(4096)", "x-relay-attempts": 0.0,
				"x-relay-redeliveries": 2.0, "x-relay-target": "echo", "x-relay-queue": queue, "x-relay-replayed": 1.0,
				"x-death": []any{map[string]any{
					"queue": queue + ".delay.1s", "reason": "expired", "count": 2.0,
					"time": "2026-12-02T08:31:00.000Z", "exchange": "",
				}},
				"x-first-death-queue": queue + ".delay.1s", "x-first-death-reason": "expired", "x-first-death-exchange": "",
			},
		},
		{"position": 3.0, "message_id": "task-3", "body_bytes": 2.0},
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("line %d =\n%v\nwant\n%v", i+1, got[i], want[i])
		}
	}
	if n := dlqDepth(t, url, dlq); n != 3 {
		t.Fatalf("%s holds %d dead letters after listing, want 3", dlq, n)
	}
}

func TestDLQEmptyAndMissingQueues(t *testing.T) {
	url := testbroker.URL(t)
	queue, dlq := dlqPair(t, url, "cli.dlq.empty")
	missing := testbroker.Unique("cli.dlq.missing")
	onlyDLQ := testbroker.Unique("cli.dlq.orphan")
	testbroker.CleanupQueues(t, url, onlyDLQ+".dlq")
	ch := testbroker.Channel(t, url)
	if _, err := ch.QueueDeclare(onlyDLQ+".dlq", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	dlqPut(t, url, onlyDLQ+".dlq", amqp.Publishing{MessageId: "stays", Body: []byte("x")})

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"list empty", []string{"list", queue}, 0, dlq + " is empty\n", ""},
		{"list empty as JSON", []string{"list", queue, "--json"}, 0, "", dlq + " is empty\n"},
		{"replay empty", []string{"replay", queue}, 0, "", dlq + " is empty\n"},
		{"list unknown", []string{"list", missing}, 1, "",
			fmt.Sprintf("relay: dead-letter queue %q does not exist (has a relay with this queue ever run?)\n", missing+".dlq")},
		{"list by the dlq's name", []string{"list", missing + ".dlq"}, 1, "",
			fmt.Sprintf("relay: dead-letter queue %q does not exist (give the queue's own name, %q)\n", missing+".dlq.dlq", missing)},
		{"replay unknown", []string{"replay", missing}, 1, "",
			fmt.Sprintf("relay: queue %q does not exist; nothing was replayed\n", missing)},
		{"replay to a queue that is gone", []string{"replay", onlyDLQ}, 1, "",
			fmt.Sprintf("relay: queue %q does not exist; nothing was replayed\n", onlyDLQ)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := dlqRun(t, append(append([]string{"dlq"}, tt.args...), "--url", url)...)
			if code != tt.code || out != tt.stdout || errOut != tt.stderr {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
	if n := dlqDepth(t, url, onlyDLQ+".dlq"); n != 1 {
		t.Fatalf("the refused replay moved dead letters: %d left, want 1", n)
	}
}

func TestDLQUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"dlq"}, "relay: want relay dlq list|replay QUEUE\n"},
		{"no queue", []string{"dlq", "list"}, "relay: QUEUE is missing\n"},
		{"two queues", []string{"dlq", "replay", "a", "b"}, "relay: one QUEUE, got 2 arguments\n"},
		{"empty queue", []string{"dlq", "list", ""}, "relay: QUEUE is empty\n"},
		{"negative n", []string{"dlq", "list", "q", "--n", "-1"}, "relay: --n must be 0 (all) or more, got -1\n"},
		{"zero timeout", []string{"dlq", "replay", "q", "--timeout", "0s"}, "relay: --timeout must be above zero, got 0s\n"},
		{"negative rate", []string{"dlq", "replay", "q", "--rate", "-5"}, "relay: --rate must be 0 (no limit) or more, got -5\n"},
		{"rate on list", []string{"dlq", "list", "q", "--rate", "5"}, "relay: unknown flag: --rate\n"},
		{"json on replay", []string{"dlq", "replay", "q", "--json"}, "relay: unknown flag: --json\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := dlqRun(t, tt.args...)
			if code != 2 || out != "" || errOut != tt.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, \"\", %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestDLQUnreachableBrokerExits1(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"one node", "amqp://guest:secret@127.0.0.1:1/",
			"relay: could not connect to broker amqp://guest:***@127.0.0.1:1/ within 300ms: "},
		{"every node of a list", "amqp://guest:secret@127.0.0.1:1/, amqp://guest:secret@127.0.0.1:2/",
			"relay: no node of the broker answered: could not connect to broker amqp://guest:***@127.0.0.1:1/ within 300ms: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := dlqRun(t, "dlq", "list", "q", "--url", tt.url, "--connect-timeout", "300ms")
			if code != 1 || out != "" || !strings.HasPrefix(errOut, tt.want) || strings.Contains(errOut, "secret") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and prefix %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestDLQTriesTheNodesOfAListInOrder(t *testing.T) {
	url := testbroker.URL(t)
	queue, dlq := dlqPair(t, url, "cli.dlq.nodes")
	code, out, errOut := dlqRun(t, "dlq", "list", queue, "--url", "amqp://guest:guest@127.0.0.1:1/,"+url, "--connect-timeout", "2s")
	if code != 0 || out != dlq+" is empty\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestDLQReplayMovesEveryDeadLetterBack(t *testing.T) {
	url := testbroker.URL(t)
	queue, dlq := dlqPair(t, url, "cli.dlq.replay")
	outbound := amqp.Publishing{
		MessageId: "out-1", ContentType: "application/json", DeliveryMode: amqp.Persistent,
		Headers: amqp.Table{
			"x-relay-exchange": "billing", "x-relay-routing-key": "invoice.created",
			"x-relay-error": "exchange billing does not exist", "x-relay-queue": queue, "tenant": "acme",
		},
		Body: []byte(`{"invoice":2}`),
	}
	sent := append(workDeadLetters(queue), outbound)
	dlqPut(t, url, dlq, sent...)

	code, out, errOut := dlqRun(t, "dlq", "replay", queue, "--url", url)
	if code != 0 || out != "" || errOut != "replayed 4 of 4 dead letters from "+dlq+" to "+queue+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if n := dlqDepth(t, url, dlq); n != 0 {
		t.Fatalf("%d dead letters left in %s, want 0", n, dlq)
	}
	got := dlqTake(t, url, queue)
	if ids, want := messageIDs(got), []string{"task-1", "corr:c-2", "task-3", "out-1"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("%s after the replay = %v, want %v", queue, ids, want)
	}
	wantHeaders := []amqp.Table{
		{"tenant": "acme", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-relay-replayed": int32(1)},
		{"x-relay-replayed": int32(2)},
		{"x-relay-replayed": int32(1)},
		{"x-relay-exchange": "billing", "x-relay-routing-key": "invoice.created", "tenant": "acme", "x-relay-replayed": int32(1)},
	}
	for i, d := range got {
		if !reflect.DeepEqual(d.Headers, wantHeaders[i]) {
			t.Errorf("%s: headers %v, want %v", messageIDs(got)[i], d.Headers, wantHeaders[i])
		}
		s := sent[i]
		if !bytes.Equal(d.Body, s.Body) || d.ContentType != s.ContentType || d.CorrelationId != s.CorrelationId ||
			d.ReplyTo != s.ReplyTo || d.DeliveryMode != s.DeliveryMode || d.Priority != s.Priority ||
			d.AppId != s.AppId || d.Type != s.Type || !d.Timestamp.Equal(s.Timestamp) {
			t.Errorf("%s: properties or body changed: got %+v", messageIDs(got)[i], d)
		}
	}
}

func TestDLQReplayTakesTheOldestN(t *testing.T) {
	url := testbroker.URL(t)
	queue, dlq := dlqPair(t, url, "cli.dlq.replayn")
	dlqPut(t, url, dlq, workDeadLetters(queue)...)

	code, _, errOut := dlqRun(t, "dlq", "replay", queue, "--url", url, "--n", "1")
	if code != 0 || errOut != "replayed 1 of 1 dead letter from "+dlq+" to "+queue+"\n" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if ids := messageIDs(dlqTake(t, url, queue)); !reflect.DeepEqual(ids, []string{"task-1"}) {
		t.Fatalf("%s = %v, want [task-1]", queue, ids)
	}
	if ids, want := messageIDs(dlqTake(t, url, dlq)), []string{"corr:c-2", "task-3"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("%s = %v, want %v", dlq, ids, want)
	}
}

// TestDLQReplayBeyondTheWindow replays more dead letters than may await
// their confirm at once: every one arrives, once, in order.
func TestDLQReplayBeyondTheWindow(t *testing.T) {
	url := testbroker.URL(t)
	queue, dlq := dlqPair(t, url, "cli.dlq.window")
	const n = 3*replayWindow + 17
	msgs := make([]amqp.Publishing, n)
	want := make([]string, n)
	for i := range msgs {
		want[i] = fmt.Sprintf("m-%04d", i)
		msgs[i] = amqp.Publishing{MessageId: want[i], Body: []byte(want[i]), Headers: amqp.Table{"x-relay-attempts": int32(3)}}
	}
	dlqPut(t, url, dlq, msgs...)

	code, _, errOut := dlqRun(t, "dlq", "replay", queue, "--url", url)
	if code != 0 || errOut != fmt.Sprintf("replayed %d of %d dead letters from %s to %s\n", n, n, dlq, queue) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	got := dlqTake(t, url, queue)
	if ids := messageIDs(got); !reflect.DeepEqual(ids, want) {
		t.Fatalf("%s holds %d messages, want the %d in order; first %v", queue, len(ids), n, ids[:min(5, len(ids))])
	}
	for _, d := range got {
		if _, ok := d.Headers["x-relay-attempts"]; ok {
			t.Fatalf("%s kept x-relay-attempts: %v", d.MessageId, d.Headers)
		}
	}
	if m := dlqDepth(t, url, dlq); m != 0 {
		t.Fatalf("%d left in %s", m, dlq)
	}
}

func TestReplayPublishingDropsTheFailureOnly(t *testing.T) {
	tests := []struct {
		name string
		in   amqp.Table
		want amqp.Table
	}{
		{"no headers", nil, amqp.Table{"x-relay-replayed": int32(1)}},
		{
			"work dead letter",
			amqp.Table{
				"x-relay-error": "boom", "x-relay-status": int32(500), "x-relay-attempts": int32(4),
				"x-relay-redeliveries": int32(3), "x-relay-target": "echo", "x-relay-queue": "q", "tenant": "acme",
			},
			amqp.Table{"tenant": "acme", "x-relay-replayed": int32(1)},
		},
		{
			"outbound dead letter keeps its route",
			amqp.Table{"x-relay-exchange": "x", "x-relay-routing-key": "k", "x-relay-error": "no route", "x-relay-queue": "q"},
			amqp.Table{"x-relay-exchange": "x", "x-relay-routing-key": "k", "x-relay-replayed": int32(1)},
		},
		{
			"the broker's dead-lettering record goes",
			amqp.Table{
				"x-death": []any{amqp.Table{"count": int64(1)}}, "x-first-death-queue": "q", "x-first-death-reason": "expired",
				"x-first-death-exchange": "", "x-last-death-queue": "q", "x-last-death-reason": "expired",
				"x-last-death-exchange": "", "x-delivery-count": int64(3),
			},
			amqp.Table{"x-relay-replayed": int32(1)},
		},
		{"counts replays up", amqp.Table{"x-relay-replayed": int64(6)}, amqp.Table{"x-relay-replayed": int32(7)}},
		{"counts replays from text", amqp.Table{"x-relay-replayed": "2"}, amqp.Table{"x-relay-replayed": int32(3)}},
		{"a bad count starts again", amqp.Table{"x-relay-replayed": "many"}, amqp.Table{"x-relay-replayed": int32(1)}},
		{"case of the names", amqp.Table{"X-Relay-Error": "boom", "X-Death": []any{}}, amqp.Table{"x-relay-replayed": int32(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := amqp.Delivery{Headers: tt.in, MessageId: "m", Body: []byte("b")}
			p := replayPublishing(&d)
			if !reflect.DeepEqual(p.Headers, tt.want) {
				t.Fatalf("headers = %v, want %v", p.Headers, tt.want)
			}
			if p.MessageId != "m" || string(p.Body) != "b" {
				t.Fatalf("publishing = %+v", p)
			}
			if tt.in != nil && len(d.Headers) != len(tt.in) {
				t.Fatalf("the dead letter's own headers changed: %v", d.Headers)
			}
		})
	}
}

func TestDescribeDeadLetter(t *testing.T) {
	four, zero := 404, 0
	death := dlqAt.Add(time.Hour)
	tests := []struct {
		name string
		d    amqp.Delivery
		want deadLetter
		id   string
	}{
		{
			"relay headers",
			amqp.Delivery{MessageId: "m", Timestamp: dlqAt, Headers: amqp.Table{
				"x-relay-error": "r", "x-relay-status": int16(404), "x-relay-attempts": "0", "x-relay-replayed": int32(2),
			}},
			deadLetter{Position: 1, MessageID: "m", Reason: "r", Status: &four, Attempts: &zero, Replayed: 2, When: "2026-12-02T08:30:00.000Z"},
			"m",
		},
		{
			"latest x-death time without a timestamp",
			amqp.Delivery{CorrelationId: "c", Headers: amqp.Table{"x-death": []any{
				amqp.Table{"time": dlqAt}, amqp.Table{"time": death}, "junk",
			}}},
			deadLetter{Position: 1, CorrelationID: "c", When: "2026-12-02T09:30:00.000Z"},
			"c",
		},
		{
			"headers of the wrong kind",
			amqp.Delivery{Headers: amqp.Table{"x-relay-error": int32(5), "x-relay-status": "bad", "x-relay-attempts": int64(1) << 40}},
			deadLetter{Position: 1},
			"-",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeDeadLetter(1, &tt.d)
			got.Headers = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("= %+v\nwant %+v", got, tt.want)
			}
			if got.id() != tt.id {
				t.Fatalf("id %q, want %q", got.id(), tt.id)
			}
		})
	}
}

func TestHeaderJSON(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{[]byte("text"), `"text"`},
		{[]byte{0xff, 0xfe}, `"//4="`},
		{amqp.Decimal{Scale: 2, Value: 1234}, `12.34`},
		{dlqAt, `"2026-12-02T08:30:00.000Z"`},
		{[]any{amqp.Table{"b": []byte("x")}}, `[{"b":"x"}]`},
		{float32(1.5), `1.5`},
		{math.NaN(), `"NaN"`},
		{int8(-3), `-3`},
		{nil, `null`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(headerJSON(tt.in))
		if err != nil || string(b) != tt.want {
			t.Errorf("headerJSON(%#v) = %s, %v; want %s", tt.in, b, err, tt.want)
		}
	}
}

func TestReplayProgressEverySecondOrThousand(t *testing.T) {
	start := dlqAt
	type step struct {
		after time.Duration // since start
		n     int
	}
	tests := []struct {
		name  string
		total int
		steps []step
		want  string
	}{
		{"fast: by the thousand", 2500, []step{{0, 1}, {10 * time.Millisecond, 999}, {20 * time.Millisecond, 1000}, {30 * time.Millisecond, 1500}, {40 * time.Millisecond, 2001}, {50 * time.Millisecond, 2500}},
			"replayed 1000 of 2500 to q\nreplayed 2001 of 2500 to q\n"},
		{"slow: by the second", 50, []step{{500 * time.Millisecond, 1}, {time.Second, 2}, {1500 * time.Millisecond, 3}, {2 * time.Second, 4}, {3 * time.Second, 50}},
			"replayed 2 of 50 to q\nreplayed 4 of 50 to q\n"},
		{"nothing for a quick small replay", 100, []step{{time.Millisecond, 50}, {2 * time.Millisecond, 100}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := start
			var b bytes.Buffer
			p := newReplayProgress(&b, tt.total, "q", func() time.Time { return now })
			for _, s := range tt.steps {
				now = start.Add(s.after)
				p.update(s.n)
			}
			if b.String() != tt.want {
				t.Fatalf("progress:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
	var none *replayProgress
	none.update(5) // a nil progress prints nothing, and does not panic
}

func TestSplitNodeURLs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"amqp://a/", []string{"amqp://a/"}},
		{"amqp://a/, amqp://b/,,", []string{"amqp://a/", "amqp://b/"}},
	}
	for _, tt := range tests {
		if got := splitNodeURLs(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitNodeURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestReplayConfirmErrors(t *testing.T) {
	r := &replayer{queue: "q", timeout: time.Second}
	tests := []struct {
		err  error
		code int
		want string
	}{
		{context.DeadlineExceeded, 3, "the broker did not confirm a replayed dead letter within 1s; it stays in the dead-letter queue"},
		{context.Canceled, 1, "interrupted"},
		{&broker.ReturnedError{RoutingKey: "q", ReplyCode: 312, ReplyText: "NO_ROUTE"}, 1, `queue "q" no longer takes messages (a replayed dead letter came back unroutable); it stays in the dead-letter queue`},
		{broker.ErrNacked, 1, `the broker refused a replayed dead letter to "q"; it stays in the dead-letter queue`},
		{broker.ErrLost, 1, `the broker connection was lost before a replayed dead letter was confirmed; it stays in the dead-letter queue and may be in "q" too`},
		{io.ErrUnexpectedEOF, 1, `replaying to "q": unexpected EOF`},
	}
	for _, tt := range tests {
		err := r.confirmError(tt.err)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != tt.code || err.Error() != tt.want {
			t.Errorf("confirmError(%v) = %v; want exit %d, %q", tt.err, err, tt.code, tt.want)
		}
	}
}

// fakeAcks is the acknowledger of fake deliveries: it records the acks
// and fails those it is told to.
type fakeAcks struct {
	mu     sync.Mutex
	acked  []uint64
	nacked []uint64
	fail   map[uint64]bool
}

func (f *fakeAcks) Ack(tag uint64, multiple bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if multiple {
		return errors.New("a replay acks one at a time")
	}
	if f.fail[tag] {
		return amqp.ErrClosed
	}
	f.acked = append(f.acked, tag)
	return nil
}

func (f *fakeAcks) Nack(tag uint64, _, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nacked = append(f.nacked, tag)
	return nil
}

func (f *fakeAcks) Reject(tag uint64, requeue bool) error { return f.Nack(tag, false, requeue) }

func (f *fakeAcks) tags() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.acked)
}

// fakePublisher confirms every publish at once, with the outcome set for
// its message id.
type fakePublisher struct {
	mu       sync.Mutex
	sent     []string
	outcome  map[string]error // of the confirm
	refuse   map[string]error // of Publish itself
	exchange string
}

func (p *fakePublisher) Publish(_ context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) (*broker.Confirmation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if exchange != "" || key != "q" || !mandatory {
		return nil, fmt.Errorf("published to %q/%q mandatory %v, want the default exchange, q, mandatory", exchange, key, mandatory)
	}
	if err := p.refuse[msg.MessageId]; err != nil {
		return nil, err
	}
	p.sent = append(p.sent, msg.MessageId)
	return broker.Resolved(p.outcome[msg.MessageId]), nil
}

func fakeDeadLetters(acks *fakeAcks, n int) []amqp.Delivery {
	ds := make([]amqp.Delivery, n)
	for i := range ds {
		ds[i] = amqp.Delivery{Acknowledger: acks, DeliveryTag: uint64(i + 1), MessageId: fmt.Sprintf("m-%d", i+1)}
	}
	return ds
}

// TestReplayAcksEachDeadLetterOnceConfirmed feeds dead letters one at a
// time: each is acked as soon as its copy is confirmed, before the next
// is taken, even with copies to spare in the window.
func TestReplayAcksEachDeadLetterOnceConfirmed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		acks := &fakeAcks{}
		deliveries := make(chan amqp.Delivery)
		r := &replayer{pub: &fakePublisher{}, queue: "q", window: replayWindow, timeout: time.Minute}
		done := make(chan replayResult, 1)
		go func() { done <- r.run(t.Context(), deliveries, 5) }()
		for i, d := range fakeDeadLetters(acks, 5) {
			deliveries <- d
			synctest.Wait()
			if got := acks.tags(); len(got) != i+1 {
				t.Fatalf("after dead letter %d, acked %v", i+1, got)
			}
		}
		res := <-done
		if res.err != nil || res.replayed != 5 || !reflect.DeepEqual(acks.tags(), []uint64{1, 2, 3, 4, 5}) {
			t.Fatalf("result %+v, acked %v", res, acks.tags())
		}
	})
}

func TestReplayLoop(t *testing.T) {
	tests := []struct {
		name      string
		queued    int // dead letters waiting
		n         int
		outcome   map[string]error
		refuse    map[string]error
		failAck   map[uint64]bool
		cancelled bool
		closed    bool // the delivery channel closes after the queued ones
		interval  time.Duration

		replayed, unremoved int
		acked               []uint64
		sent                []string
		left                int // dead letters not taken
		code                int // 0: no error
		err                 string
		took                time.Duration
	}{
		{name: "takes n and leaves the rest", queued: 5, n: 3,
			replayed: 3, acked: []uint64{1, 2, 3}, sent: []string{"m-1", "m-2", "m-3"}, left: 2},
		{name: "a refused copy stops the replay and its dead letter stays", queued: 5, n: 5,
			outcome:  map[string]error{"m-2": broker.ErrNacked},
			replayed: 1, acked: []uint64{1}, sent: []string{"m-1", "m-2"}, left: 3,
			code: 1, err: `the broker refused a replayed dead letter to "q"; it stays in the dead-letter queue`},
		{name: "a copy that came back unroutable", queued: 3, n: 3,
			outcome:  map[string]error{"m-1": &broker.ReturnedError{RoutingKey: "q", ReplyCode: 312}},
			replayed: 0, sent: []string{"m-1"}, left: 2,
			code: 1, err: `queue "q" no longer takes messages (a replayed dead letter came back unroutable); it stays in the dead-letter queue`},
		{name: "a publish that fails", queued: 4, n: 4,
			refuse:   map[string]error{"m-3": context.DeadlineExceeded},
			replayed: 2, acked: []uint64{1, 2}, sent: []string{"m-1", "m-2"}, left: 1,
			code: 3, err: "the broker did not confirm a replayed dead letter within 1m0s; it stays in the dead-letter queue"},
		{name: "an ack that fails leaves a duplicate, counted", queued: 3, n: 3,
			failAck:  map[uint64]bool{2: true},
			replayed: 1, unremoved: 1, acked: []uint64{1}, sent: []string{"m-1", "m-2"}, left: 1,
			code: 1, err: "removing a replayed dead letter after its confirm: Exception (504) Reason: \"channel/connection is not open\""},
		{name: "interrupted before it starts", queued: 2, n: 2, cancelled: true,
			left: 2, code: 1, err: "interrupted"},
		{name: "fewer dead letters than expected", queued: 2, n: 3,
			replayed: 2, acked: []uint64{1, 2}, sent: []string{"m-1", "m-2"},
			code: 3, err: "no further dead letter arrived within 1m0s (does another consumer hold them?)", took: time.Minute},
		{name: "the connection lost", queued: 1, n: 3, closed: true,
			replayed: 1, acked: []uint64{1}, sent: []string{"m-1"},
			code: 1, err: "the broker connection was lost during the replay; the dead letters not replayed stay in the dead-letter queue"},
		{name: "paced", queued: 5, n: 5, interval: time.Second,
			replayed: 5, acked: []uint64{1, 2, 3, 4, 5}, sent: []string{"m-1", "m-2", "m-3", "m-4", "m-5"}, took: 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				acks := &fakeAcks{fail: tt.failAck}
				deliveries := make(chan amqp.Delivery, tt.queued)
				for _, d := range fakeDeadLetters(acks, tt.queued) {
					deliveries <- d
				}
				if tt.closed {
					close(deliveries)
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tt.cancelled {
					cancel()
				}
				pub := &fakePublisher{outcome: tt.outcome, refuse: tt.refuse}
				r := &replayer{pub: pub, queue: "q", window: 2, timeout: time.Minute, interval: tt.interval}
				start := time.Now()
				res := r.run(ctx, deliveries, tt.n)
				if took := time.Since(start); took != tt.took {
					t.Errorf("took %s, want %s", took, tt.took)
				}
				if res.replayed != tt.replayed || res.unremoved != tt.unremoved {
					t.Errorf("replayed %d, unremoved %d; want %d, %d", res.replayed, res.unremoved, tt.replayed, tt.unremoved)
				}
				if got := acks.tags(); !reflect.DeepEqual(got, tt.acked) {
					t.Errorf("acked %v, want %v", got, tt.acked)
				}
				if len(acks.nacked) != 0 {
					t.Errorf("nacked %v: a replay leaves what it does not move to its channel's close", acks.nacked)
				}
				if !reflect.DeepEqual(pub.sent, tt.sent) {
					t.Errorf("sent %v, want %v", pub.sent, tt.sent)
				}
				if !tt.closed && len(deliveries) != tt.left {
					t.Errorf("%d dead letters not taken, want %d", len(deliveries), tt.left)
				}
				var ee *exitError
				switch {
				case tt.code == 0 && res.err != nil:
					t.Errorf("error %v, want none", res.err)
				case tt.code != 0 && (!errors.As(res.err, &ee) || ee.code != tt.code || res.err.Error() != tt.err):
					t.Errorf("error %v, want exit %d with %q", res.err, tt.code, tt.err)
				}
			})
		})
	}
}
