package main

import (
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
)

func TestQueuesPrintsTheConfiguredQueuesDepths(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.depth")
	out := testbroker.Unique("cli.out")
	cfg := writeFile(t, fmt.Sprintf("work:\n  - {queue: %s, target: echo, redelivery: [5s, 2m]}\noutbound:\n  - {queue: %s, breaker: amqp, bulkhead: worker_agent, exchanges: [vsm.events]}\n", q, out))
	declareQueue(t, url, q)
	declareQueue(t, url, q+".dlq")
	ch := confirmChannel(t, url)
	for i := range 3 {
		publishJSON(t, ch, "", q, fmt.Sprintf(`{"n":%d}`, i))
	}
	publishJSON(t, ch, "", q+".dlq", `{}`)
	// A consumer on the dead-letter queue, to be counted.
	if _, err := testbroker.Channel(t, url).Consume(q+".dlq", "", false, false, false, false, amqp.Table{}); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runExe(t, []string{"RELAY_AMQP_URL=" + url}, "queues", "--config", cfg)
	pad := func(s string) string { return fmt.Sprintf("%-*s", len(q)+len(".delay.5s")+2, s) }
	want := pad("QUEUE") + "MESSAGES  CONSUMERS\n" +
		pad(q) + "3         0\n" +
		pad(q+".delay.5s") + "-         -\n" +
		pad(q+".delay.2m") + "-         -\n" +
		pad(q+".dlq") + "0         1\n" +
		pad(out) + "-         -\n" +
		pad(out+".dlq") + "-         -\n" +
		"(-: not declared yet; the relay declares its queues when it starts)\n"
	if code != 0 || stderr != "" || stdout != want {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, stderr, stdout, want)
	}

	code, stdout, _ = runExe(t, nil, "queues", "--url", url, q)
	if want := "QUEUE" + fmt.Sprintf("%*s", len(q)-len("QUEUE")+2, "") + "MESSAGES  CONSUMERS\n" + q + "  3         0\n"; code != 0 || stdout != want {
		t.Fatalf("queues %s: exit %d, stdout:\n%s\nwant:\n%s", q, code, stdout, want)
	}
}
