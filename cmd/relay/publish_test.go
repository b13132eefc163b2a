package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
)

func TestPublishUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // stderr
	}{
		{"no queue", []string{"publish", "x"}, "relay: --queue is required\n"},
		{"body and file", []string{"publish", "--queue", "q", "--file", "f.json", "x"}, "relay: give the body either as an argument or with --file, not both\n"},
		{"header without =", []string{"publish", "--queue", "q", "--header", "tenant"}, "relay: --header \"tenant\": want KEY=VALUE\n"},
		{"header without key", []string{"publish", "--queue", "q", "--header", "=v"}, "relay: --header \"=v\": want KEY=VALUE\n"},
		{"n below 1", []string{"publish", "--queue", "q", "--n", "0"}, "relay: --n must be at least 1, got 0\n"},
		{"zero timeout", []string{"publish", "--queue", "q", "--timeout", "0s"}, "relay: --timeout must be above zero, got 0s\n"},
		{"bad timeout", []string{"publish", "--queue", "q", "--timeout", "30"}, "relay: invalid argument \"30\" for \"--timeout\" flag: time: missing unit in duration \"30\"\n"},
		{"two bodies", []string{"publish", "--queue", "q", "a", "b"}, "relay: accepts at most 1 arg(s), received 2\n"},
		{"missing file", []string{"publish", "--queue", "q", "--file", "/nonexistent/task.json"}, "relay: --file: open /nonexistent/task.json: no such file or directory\n"},
		{"unknown flag", []string{"publish", "--queue", "q", "--persist"}, "relay: unknown flag: --persist\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runExe(t, nil, tt.args...)
			if code != 2 || out != "" || errOut != tt.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, \"\", %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestPublishBadConfigurationExits2(t *testing.T) {
	cfg := writeFile(t, "amqp: {prefetch: 0}\nhttp: {listen: nowhere}\n")
	code, _, errOut := runExe(t, nil, "publish", "--config", cfg, "--queue", "q", "x")
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, errOut)
	}
	for _, key := range []string{"amqp.prefetch: ", "http.listen: ", "relay: 2 configuration problem(s)"} {
		if !strings.Contains(errOut, key) {
			t.Errorf("stderr lacks %q:\n%s", key, errOut)
		}
	}
}

func TestPublishUnreachableBrokerExits1(t *testing.T) {
	code, out, errOut := runExe(t, nil, "publish", "--url", "amqp://guest:secret@127.0.0.1:1/",
		"--connect-timeout", "300ms", "--queue", "q", "x")
	want := "relay: could not connect to broker amqp://guest:***@127.0.0.1:1/ within 300ms: "
	if code != 1 || out != "" || !strings.HasPrefix(errOut, want) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and prefix %q", code, out, errOut, want)
	}
}

func TestPublishToMissingQueueExits1(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.missing")
	code, _, errOut := runExe(t, nil, "publish", "--url", url, "--queue", q, "x")
	want := fmt.Sprintf("relay: queue %q does not exist (the message came back unroutable)\n", q)
	if code != 1 || errOut != want {
		t.Fatalf("exit %d, stderr %q; want 1, %q", code, errOut, want)
	}
}

func TestPublishDeliversAPersistentMessage(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.publish")
	declareQueue(t, url, q)
	code, out, errOut := runExe(t, []string{"RELAY_AMQP_URL=" + url}, "publish", "--queue", q,
		"--header", "tenant=acme", "-H", "trace=a=b", "--message-id", "m-1", "--correlation-id", "c-1",
		`{"hello": "world"}`)
	if code != 0 || out != "" || errOut != "published 1 message to "+q+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	got := getAll(t, url, q)
	if len(got) != 1 {
		t.Fatalf("%d messages in %s, want 1", len(got), q)
	}
	d := got[0]
	if string(d.Body) != `{"hello": "world"}` || d.DeliveryMode != amqp.Persistent ||
		d.ContentType != "application/json" || d.MessageId != "m-1" || d.CorrelationId != "c-1" ||
		d.ReplyTo != "" || d.AppId != "relay publish" || d.Timestamp.IsZero() {
		t.Errorf("message = body %q mode %d type %q id %q corr %q reply_to %q app %q at %v",
			d.Body, d.DeliveryMode, d.ContentType, d.MessageId, d.CorrelationId, d.ReplyTo, d.AppId, d.Timestamp)
	}
	if len(d.Headers) != 2 || d.Headers["tenant"] != "acme" || d.Headers["trace"] != "a=b" {
		t.Errorf("headers = %v, want tenant=acme trace=a=b", d.Headers)
	}
}

func TestPublishBodySourcesAndContentTypes(t *testing.T) {
	url := testbroker.URL(t)
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "task.json")
	binFile := filepath.Join(dir, "task.bin")
	if err := os.WriteFile(jsonFile, []byte("[1, 2]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(binFile, []byte{0xff, 0xfe, 0}, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		stdin    string
		args     []string
		body     string
		wantType string
	}{
		{"argument text", "", []string{"hello"}, "hello", "text/plain; charset=utf-8"},
		{"argument JSON", "", []string{`{"a":1}`}, `{"a":1}`, "application/json"},
		{"no body", "", nil, "", "text/plain; charset=utf-8"},
		{"JSON file", "", []string{"--file", jsonFile}, "[1, 2]\n", "application/json"},
		{"binary file", "", []string{"-f", binFile}, "\xff\xfe\x00", "application/octet-stream"},
		{"stdin with -", "from stdin", []string{"-"}, "from stdin", "text/plain; charset=utf-8"},
		{"stdin with --file -", `{"s":1}`, []string{"--file", "-"}, `{"s":1}`, "application/json"},
		{"given content type", "", []string{"--content-type", "text/csv", "a,b"}, "a,b", "text/csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := testbroker.Unique("cli.body")
			declareQueue(t, url, q)
			args := append([]string{"publish", "--url", url, "--queue", q}, tt.args...)
			code, _, errOut := runWithStdin(t, tt.stdin, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, errOut)
			}
			got := getAll(t, url, q)
			if len(got) != 1 {
				t.Fatalf("%d messages, want 1", len(got))
			}
			if string(got[0].Body) != tt.body || got[0].ContentType != tt.wantType {
				t.Errorf("body %q type %q, want %q %q", got[0].Body, got[0].ContentType, tt.body, tt.wantType)
			}
			if len(got[0].MessageId) != 32 {
				t.Errorf("message id %q, want 32 random hex digits", got[0].MessageId)
			}
		})
	}
}

func TestPublishBatchNumbersIdsAndReportsProgress(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.batch")
	declareQueue(t, url, q)
	code, out, errOut := runExe(t, nil, "publish", "--url", url, "--queue", q, "--n", "250",
		"--message-id", "m", "--correlation-id", "c", "job")
	var want strings.Builder
	for n := 25; n < 250; n += 25 {
		fmt.Fprintf(&want, "confirmed %d/250\n", n)
	}
	want.WriteString("confirmed 250/250\npublished 250 messages to " + q + "\n")
	if code != 0 || out != "" || errOut != want.String() {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want.String())
	}
	got := getAll(t, url, q)
	if len(got) != 250 {
		t.Fatalf("%d messages, want 250", len(got))
	}
	for i, d := range got {
		if d.MessageId != fmt.Sprintf("m-%d", i+1) || d.CorrelationId != fmt.Sprintf("c-%d", i+1) || string(d.Body) != "job" {
			t.Fatalf("message %d: id %q corr %q body %q", i, d.MessageId, d.CorrelationId, d.Body)
		}
	}
}

func TestPublishSmallBatchHasDistinctRandomIdsAndNoProgress(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.small")
	declareQueue(t, url, q)
	code, _, errOut := runExe(t, nil, "publish", "--url", url, "--queue", q, "--n", "5", "x")
	if code != 0 || errOut != "published 5 messages to "+q+"\n" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	seen := map[string]bool{}
	for _, d := range getAll(t, url, q) {
		if len(d.MessageId) != 32 || seen[d.MessageId] || d.CorrelationId != "" {
			t.Fatalf("message id %q (seen before: %v), correlation id %q", d.MessageId, seen[d.MessageId], d.CorrelationId)
		}
		seen[d.MessageId] = true
	}
	if len(seen) != 5 {
		t.Fatalf("%d messages, want 5", len(seen))
	}
}

// replyFunc makes the reply to a task, or nil for none.
type replyFunc func(task amqp.Delivery) *amqp.Publishing

// respond answers every task of queue with reply until the test ends.
// Before each real reply it sends one for another correlation id, which
// the command must ignore.
func respond(t *testing.T, url, queue string, reply replyFunc) {
	t.Helper()
	conn := testbroker.Dial(t, url)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for d := range deliveries {
			msg := reply(d)
			if msg == nil {
				continue
			}
			stray := amqp.Publishing{CorrelationId: "someone-else", Body: []byte("not yours")}
			_ = ch.Publish("", d.ReplyTo, false, false, stray)
			msg.CorrelationId = d.CorrelationId
			_ = ch.Publish("", d.ReplyTo, false, false, *msg)
		}
	}()
	t.Cleanup(func() {
		ch.Close()
		wg.Wait()
	})
}

func TestPublishReplyPrintsBodyAndRelayHeaders(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.reply")
	declareQueue(t, url, q)
	var mu sync.Mutex
	var task amqp.Delivery
	respond(t, url, q, func(d amqp.Delivery) *amqp.Publishing {
		mu.Lock()
		task = d
		mu.Unlock()
		return &amqp.Publishing{
			ContentType: "application/json",
			Headers: amqp.Table{
				"x-relay-status": int32(200), "x-relay-target": "echo", "x-relay-attempts": int32(1),
				"traceparent": "00-abc-def-01",
			},
			Body: []byte(`{"echo":` + string(d.Body) + `}`),
		}
	})
	code, out, errOut := runExe(t, nil, "publish", "--url", url, "--queue", q, "--reply", "--timeout", "10s", `{"hello":"world"}`)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	if out != `{"echo":{"hello":"world"}}`+"\n" {
		t.Errorf("stdout = %q", out)
	}
	if want := "x-relay-attempts: 1\nx-relay-status: 200\nx-relay-target: echo\n"; errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(task.ReplyTo, "amq.rabbitmq.reply-to.") || len(task.CorrelationId) != 32 || task.CorrelationId == task.MessageId {
		t.Errorf("task reply_to %q correlation_id %q message_id %q", task.ReplyTo, task.CorrelationId, task.MessageId)
	}
}

func TestPublishErrorReplyExits1(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.fail")
	declareQueue(t, url, q)
	respond(t, url, q, func(amqp.Delivery) *amqp.Publishing {
		return &amqp.Publishing{
			ContentType: "text/plain; charset=utf-8",
			Headers: amqp.Table{
				"x-relay-error": "HTTP 400 from echo", "x-relay-status": int32(400),
				"x-relay-target": "echo", "x-relay-attempts": int32(1),
			},
			Body: []byte("HTTP 400 from echo"),
		}
	})
	code, out, errOut := runExe(t, nil, "publish", "--url", url, "--queue", q, "--reply", "bad")
	want := "x-relay-attempts: 1\nx-relay-error: HTTP 400 from echo\nx-relay-status: 400\nx-relay-target: echo\n" +
		"relay: the task failed (x-relay-error)\n"
	if code != 1 || out != "HTTP 400 from echo\n" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1, %q, %q", code, out, errOut, "HTTP 400 from echo\n", want)
	}
}

func TestPublishReplyTimeoutExits3(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.silent")
	declareQueue(t, url, q)
	code, out, errOut := runExe(t, nil, "publish", "--url", url, "--queue", q, "--reply", "--timeout", "500ms", "x")
	if code != 3 || out != "" || errOut != "relay: no reply within 500ms\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 3", code, out, errOut)
	}
	if got := getAll(t, url, q); len(got) != 1 {
		t.Fatalf("%d tasks in the queue, want the 1 published", len(got))
	}
}

func TestPublishBatchWaitsForEveryReply(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.replies")
	declareQueue(t, url, q)
	respond(t, url, q, func(d amqp.Delivery) *amqp.Publishing {
		h := amqp.Table{"x-relay-status": int32(200)}
		if d.CorrelationId == "job-2" {
			h = amqp.Table{"x-relay-error": "HTTP 503", "x-relay-status": int32(503)}
		}
		return &amqp.Publishing{Headers: h, Body: []byte(d.CorrelationId)}
	})
	code, out, errOut := runExe(t, nil, "publish", "--url", url, "--queue", q, "--reply", "--n", "3", "--correlation-id", "job", "x")
	if code != 1 || !strings.HasSuffix(errOut, "relay: 1 of 3 tasks failed (x-relay-error)\n") {
		t.Fatalf("exit %d, stderr %q; want 1 with one failed task", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	got := map[string]bool{}
	for _, l := range lines {
		got[l] = true
	}
	if len(lines) != 3 || !got["job-1"] || !got["job-2"] || !got["job-3"] {
		t.Errorf("stdout lines = %q, want job-1, job-2, job-3 in any order", lines)
	}
	if !strings.Contains(errOut, "correlation_id: job-2\nx-relay-error: HTTP 503\nx-relay-status: 503\n") {
		t.Errorf("stderr lacks job-2's headers:\n%s", errOut)
	}
}

func TestNthIDs(t *testing.T) {
	tests := []struct {
		given string
		i, n  int
		want  string
	}{
		{"", 0, 1, ""},
		{"", 3, 10, ""},
		{"m", 0, 1, "m"},
		{"m", 0, 3, "m-1"},
		{"m", 2, 3, "m-3"},
	}
	for _, tt := range tests {
		if got := nth(tt.given, tt.i, tt.n); got != tt.want {
			t.Errorf("nth(%q, %d, %d) = %q, want %q", tt.given, tt.i, tt.n, got, tt.want)
		}
	}
}

func TestProgressOnATerminalRewritesOneLine(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, 1000, true)
	p.update(1)  // first update is shown
	p.update(2)  // within 100ms of the last: not shown
	p.done(1000) // always shown, with the newline
	if want := "\rconfirmed 1/1000\rconfirmed 1000/1000\n"; b.String() != want {
		t.Errorf("progress = %q, want %q", b.String(), want)
	}
	var nilProgress *progress
	nilProgress.update(1)
	nilProgress.done(1)
}

func FuzzParseHeaders(f *testing.F) {
	f.Add("tenant=acme")
	f.Add("=")
	f.Add("k==v")
	f.Fuzz(func(t *testing.T, pair string) {
		h, err := parseHeaders([]string{pair})
		if err != nil {
			return
		}
		if len(h) != 1 {
			t.Fatalf("parseHeaders(%q) = %v, want one header", pair, h)
		}
		for k, v := range h {
			if k == "" || !strings.Contains(pair, k) || !strings.HasSuffix(pair, "="+v.(string)) {
				t.Fatalf("parseHeaders(%q) = %q: %q", pair, k, v)
			}
		}
	})
}
