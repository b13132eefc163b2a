package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/internal/fielderr"
	"github.com/vsm-relay/relay/retrybudget"
)

const quorumFile = `
amqp: {queue_type: quorum, delivery_limit: 5, prefetch: 9}
work:
  - {queue: a, target: echo}
  - {queue: b, target: echo, queue_type: classic, delivery_limit: 3, prefetch: 2}
outbound:
  - {queue: o, breaker: amqp, bulkhead: worker_agent, exchanges: [x]}
`

func TestClusterAndQueueKeys(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		got  func(*Config) any
		want any
	}{
		{"one URL", "", nil, func(c *Config) any { return c.AMQP.URLs() }, []string{"amqp://guest:guest@127.0.0.1:5672/"}},
		{"a cluster's nodes", "amqp: {url: 'amqp://u:p@rmq-0:5672/, amqp://u:p@rmq-1:5672/,amqps://u:p@rmq-2:5671/'}", nil,
			func(c *Config) any { return c.AMQP.URLs() },
			[]string{"amqp://u:p@rmq-0:5672/", "amqp://u:p@rmq-1:5672/", "amqps://u:p@rmq-2:5671/"}},
		{"a cluster from the environment", "", map[string]string{"RELAY_AMQP_URL": "amqp://a/,amqp://b/"},
			func(c *Config) any { return c.AMQP.URLs() }, []string{"amqp://a/", "amqp://b/"}},
		{"an outbound cluster", "", map[string]string{"RELAY_OUTBOUND_0_URL": "amqp://a/,amqp://b/"},
			func(c *Config) any { return c.Outbound[0].URLs() }, []string{"amqp://a/", "amqp://b/"}},
		{"the same broker has no outbound URL", "", nil, func(c *Config) any { return c.Outbound[0].URLs() }, []string(nil)},
		{"queue type and delivery limit by default", "", nil,
			func(c *Config) any {
				return [4]any{c.AMQP.QueueType, c.AMQP.DeliveryLimit, c.Work[0].QueueType, c.Outbound[0].DeliveryLimit}
			},
			[4]any{"classic", 20, "classic", 20}},
		{"entries inherit amqp's or keep their own", quorumFile, nil,
			func(c *Config) any {
				return [3][3]any{
					{c.Work[0].QueueType, c.Work[0].DeliveryLimit, c.Work[0].Prefetch},
					{c.Work[1].QueueType, c.Work[1].DeliveryLimit, c.Work[1].Prefetch},
					{c.Outbound[0].QueueType, c.Outbound[0].DeliveryLimit, c.Outbound[0].Prefetch},
				}
			},
			[3][3]any{{"quorum", 5, 9}, {"classic", 3, 2}, {"quorum", 5, 9}}},
		{"an entry's queue type from the environment", "", map[string]string{"RELAY_WORK_0_QUEUE_TYPE": "quorum", "RELAY_AMQP_DELIVERY_LIMIT": "7"},
			func(c *Config) any {
				return [3]any{c.Work[0].QueueType, c.Outbound[0].QueueType, c.Work[0].DeliveryLimit}
			},
			[3]any{"quorum", "classic", 7}},
		{"admin token", "http: {admin_token: s3cret}", nil, func(c *Config) any { return c.HTTP.AdminToken }, "s3cret"},
		{"admin token from the environment", "", map[string]string{"RELAY_HTTP_ADMIN_TOKEN": "t0k"},
			func(c *Config) any { return c.HTTP.AdminToken }, "t0k"},
		{"no admin token by default", "", nil, func(c *Config) any { return c.HTTP.AdminToken }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.file, tt.env)
			if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestShareAndRetryBudget(t *testing.T) {
	user := `
targets:
  api: {url: "http://h/", breaker: llm_api, bulkhead: api_agent, backoff: llm_api}
  off: {url: "http://h/", breaker: llm_api, bulkhead: api_agent, backoff: llm_api, retry_budget: {ratio: 1000}}
  tight: {url: "http://h/", breaker: llm_api, bulkhead: api_agent, backoff: llm_api, retry_budget: {ratio: 0.05, min_per_second: 1, window: 1m}}
work: [{queue: q, target: api}]
`
	tests := []struct {
		name string
		file string
		env  map[string]string
		got  func(*Config) any
		want any
	}{
		{"no breaker shared by default", "", nil,
			func(c *Config) any { return [2]bool{c.Breakers["llm_api"].Share, c.Breakers["amqp"].Share} }, [2]bool{false, false}},
		{"share in defaults reaches every breaker", "breakers: {defaults: {share: true}}", nil,
			func(c *Config) any { return [2]bool{c.Breakers["llm_api"].Share, c.Breakers["amqp"].Share} }, [2]bool{true, true}},
		{"share per breaker", "breakers: {llm_api: {share: true}, amqp: {}, external_api: {}}", nil,
			func(c *Config) any { return [2]bool{c.Breakers["llm_api"].Share, c.Breakers["amqp"].Share} }, [2]bool{true, false}},
		{"share from the environment", "", map[string]string{"RELAY_BREAKERS_AMQP_SHARE": "true"},
			func(c *Config) any { return [2]bool{c.Breakers["llm_api"].Share, c.Breakers["amqp"].Share} }, [2]bool{false, true}},
		{"a target without retry_budget has the contract's", user, nil,
			func(c *Config) any { return c.Targets["api"].RetryBudget }, contractBudget},
		{"a partial budget is filled in", user, nil,
			func(c *Config) any { return c.Targets["off"].RetryBudget },
			retrybudget.Settings{Ratio: 1000, MinPerSecond: 10, Window: 10 * time.Second}},
		{"a budget of one's own", user, nil,
			func(c *Config) any { return c.Targets["tight"].RetryBudget },
			retrybudget.Settings{Ratio: 0.05, MinPerSecond: 1, Window: time.Minute}},
		{"a budget from the environment", "", map[string]string{"RELAY_TARGETS_ECHO_RETRY_BUDGET_WINDOW": "30s"},
			func(c *Config) any { return c.Targets["echo"].RetryBudget.Window }, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.file, tt.env)
			if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNewKeyProblems(t *testing.T) {
	const target = "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, "
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"a bad node in a cluster", "amqp: {url: 'amqp://a/,http://b/'}",
			[]string{`amqp.url: URL 2 of the list must be an amqp:// or amqps:// URL, got scheme "http"`}},
		{"an empty node in a cluster", "amqp: {url: 'amqp://a/,,amqp://c/'}",
			[]string{"amqp.url: URL 2 of the list is required"}},
		{"a node without host", "outbound: [{queue: o, url: 'amqp://a/, amqp://u:p@/', breaker: amqp, bulkhead: worker_agent, exchanges: [x]}]",
			[]string{"outbound[0].url: URL 2 of the list has no host"}},
		{"unknown queue type", "amqp: {queue_type: stream}",
			[]string{`amqp.queue_type: must be classic or quorum, got "stream"`}},
		{"empty queue type", "amqp: {queue_type: ''}",
			[]string{"amqp.queue_type: is required: classic or quorum"}},
		{"an entry's queue type", "work: [{queue: q, target: echo, queue_type: Quorum}]",
			[]string{`work[0].queue_type: must be classic or quorum, got "Quorum"`}},
		{"delivery limit zero", "amqp: {delivery_limit: 0}",
			[]string{"amqp.delivery_limit: must be from 1 to 1000000, got 0"}},
		{"an entry's delivery limit", "outbound: [{queue: o, breaker: amqp, bulkhead: worker_agent, exchanges: [x], delivery_limit: -1}]",
			[]string{"outbound[0].delivery_limit: must be from 0 to 1000000, got -1"}},
		{"delivery limit not a number", "amqp: {delivery_limit: many}",
			[]string{`amqp.delivery_limit: must be a whole number, got "many"`}},
		{"share not a bool", "breakers: {defaults: {share: yes please}}",
			[]string{`breakers.defaults.share: must be true or false, got "yes please"`}},
		{"retry budget out of range", target + "retry_budget: {ratio: 1001, min_per_second: -1, window: -1s}}}", []string{
			"targets.echo.retry_budget.min_per_second: must be a non-negative number of retries per second, got -1",
			"targets.echo.retry_budget.ratio: must be from 0 to 1000 retries per call, got 1001",
			"targets.echo.retry_budget.window: must not be negative, got -1s",
		}},
		{"retry budget window too long", target + "retry_budget: {window: 2h}}}",
			[]string{"targets.echo.retry_budget.window: must be at most 1h0m0s, got 2h0m0s"}},
		{"retry budget typo", target + "retry_budget: {min_per_secnd: 1}}}",
			[]string{`targets.echo.retry_budget.min_per_secnd: unknown key (did you mean "min_per_second"?)`}},
		{"retry budget window without unit", target + "retry_budget: {window: 10}}}",
			[]string{`targets.echo.retry_budget.window: a duration needs a unit, like "30s"; got 10`}},
		{"admin token with a space", "http: {admin_token: 'a b'}",
			[]string{"http.admin_token: must be printable ASCII without white space (it is sent as a bearer token)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tt.file), nil)
			if got := fielderr.Lines(err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// A value an entry inherits is reported under defaults when it is bad
// there; a problem that only the combination with the entry's own values
// makes is reported under the entry. (Every inherited value used to be
// passed over, so backoff.llm_api below loaded with max under initial.)
func TestInheritedProblems(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"bad in defaults", "backoff: {defaults: {max_retries: -1}}",
			[]string{"backoff.defaults.max_retries: must not be negative, got -1"}},
		{"bad in the combination", "backoff: {llm_api: {initial: 20s, max: 0s}, external_api: {}}",
			[]string{"backoff.llm_api.max: must not be less than initial (20s), got 10s by default"}},
		{"bad with an inherited value", "backoff: {llm_api: {initial: 20s}, external_api: {}}",
			[]string{"backoff.llm_api.max: must not be less than initial (20s), got 10s"}},
		{"bad in defaults and in an entry of its own", "breakers: {defaults: {timeout: -1s}, llm_api: {timeout: -2s}, amqp: {}, external_api: {}}", []string{
			"breakers.defaults.timeout: must not be negative, got -1s",
			"breakers.llm_api.timeout: must not be negative, got -2s",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tt.file), nil)
			if got := fielderr.Lines(err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRedactedNewSecrets(t *testing.T) {
	c := mustLoad(t, "http: {admin_token: t0ken}\namqp: {url: 'amqp://u:pw1@a/, amqps://v:pw2@b:5671/'}", nil)
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"t0ken", "pw1", "pw2"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("redacted output shows %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"admin_token: '***'\n", "url: amqp://u:***@a/,amqps://v:***@b:5671/\n", "share: false\n",
		"retry_budget:\n      ratio: 0.2\n      min_per_second: 10\n      window: 10s\n", "queue_type: classic\n", "delivery_limit: 20\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("redacted output lacks %q:\n%s", want, out)
		}
	}
	// No token stays no token, so that the output says the endpoints are off.
	out, _ = mustLoad(t, "", nil).Redacted()
	if !strings.Contains(string(out), "admin_token: \"\"\n") {
		t.Errorf("empty token not shown as empty:\n%s", out)
	}
	if c.Backoff["llm_api"].Jitter != backoff.Full {
		t.Errorf("jitter %v", c.Backoff["llm_api"].Jitter)
	}
}
