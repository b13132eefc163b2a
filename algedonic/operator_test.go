package algedonic

import (
	"strings"
	"testing"
	"time"
)

func TestOperatorSignals(t *testing.T) {
	cases := []struct {
		ev         Event
		key        string
		signal     Signal
		by         bool
		reasonPart string
	}{
		{QueuePaused("vsm.tasks.echo"), "queue.vsm_tasks_echo.paused", Pain, true, "paused by an operator"},
		{QueueResumed("vsm.tasks.echo"), "queue.vsm_tasks_echo.resumed", Pleasure, true, "resumed"},
		{ReloadRefused([]string{"breakers.x.timeout: must have a unit", "work[0].queue: empty"}), "config.reload.refused", Pain, false, "breakers.x.timeout: must have a unit; work[0].queue: empty"},
		{Reloaded([]string{"breaker llm_api: settings changed"}), "config.reload.applied", Pleasure, false, "llm_api"},
	}
	for _, c := range cases {
		full := c.ev // as Emit fills it in
		full.Count, full.Instance, full.At = 1, "relay-1", time.Unix(1, 0)
		if err := full.validate(); err != nil {
			t.Errorf("%s: %v", c.key, err)
		}
		if k := c.ev.RoutingKey(); k != c.key {
			t.Errorf("routing key %q, want %q", k, c.key)
		}
		if c.ev.Signal != c.signal {
			t.Errorf("%s: signal %s", c.key, c.ev.Signal)
		}
		if got := c.ev.Details["by"] == ByOperator; got != c.by {
			t.Errorf("%s: details.by operator = %v", c.key, got)
		}
		if !strings.Contains(c.ev.Reason, c.reasonPart) {
			t.Errorf("%s: reason %q", c.key, c.ev.Reason)
		}
	}
	ev := ByOperatorDetails(BreakerClosed("b", "reset"))
	if ev.Details["by"] != ByOperator {
		t.Fatal("ByOperatorDetails")
	}
}
