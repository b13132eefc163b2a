package config

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/configs"
	"github.com/vsm-relay/relay/health"
	"github.com/vsm-relay/relay/internal/fielderr"
	"github.com/vsm-relay/relay/retrybudget"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func mustLoad(t *testing.T, yaml string, env map[string]string) *Config {
	t.Helper()
	c, err := LoadBytes([]byte(yaml), envOf(env))
	if err != nil {
		t.Fatalf("LoadBytes: unexpected problems:\n%s", strings.Join(fielderr.Lines(err), "\n"))
	}
	return c
}

func defaultBreaker() breaker.Settings {
	return breaker.Settings{
		FailureThreshold: 5, SuccessThreshold: 3, ResetTimeout: 60 * time.Second,
		HalfOpenTimeout: 30 * time.Second, WindowSize: 60 * time.Second, Timeout: 10 * time.Second,
		MinimumCalls: 10,
	}
}

// contractBudget is the contract's retry budget.
var contractBudget = retrybudget.Settings{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second}

// contractDefault is the contract's configuration, value by value.
func contractDefault() *Config {
	llm := defaultBreaker()
	llm.FailureThreshold, llm.ResetTimeout, llm.Timeout = 3, 120*time.Second, 30*time.Second
	return &Config{
		Instance:        "",
		ShutdownTimeout: 30 * time.Second,
		AMQP: AMQP{
			URL:            "amqp://guest:guest@127.0.0.1:5672/",
			ConnectTimeout: 30 * time.Second,
			Prefetch:       64,
			Reconnect:      Reconnect{Initial: 250 * time.Millisecond, Max: 30 * time.Second},
			Heartbeat:      10 * time.Second,
			QueueType:      "classic",
			DeliveryLimit:  20,
		},
		HTTP: HTTP{Listen: "127.0.0.1:9090"},
		Breakers: map[string]breaker.Settings{
			"llm_api":      llm,
			"amqp":         defaultBreaker(),
			"external_api": defaultBreaker(),
			"database":     defaultBreaker(),
		},
		Bulkheads: map[string]bulkhead.Settings{
			"worker_agent": {Size: 20, Overflow: 10, Timeout: 5 * time.Second},
			"llm_worker":   {Size: 5, Overflow: 2, Timeout: 30 * time.Second, RateLimit: 10},
			"sensor_agent": {Size: 10, Overflow: 5, Timeout: 5 * time.Second},
			"api_agent":    {Size: 15, Overflow: 5, Timeout: 10 * time.Second},
			"telegram_bot": {Size: 3, Overflow: 1, Timeout: 10 * time.Second, RateLimit: 30},
		},
		Backoff: map[string]backoff.Policy{
			"external_api": {Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, Jitter: backoff.Full, MaxRetries: 5},
			"llm_api":      {Initial: time.Second, Max: 30 * time.Second, Multiplier: 2, Jitter: backoff.Full, MaxRetries: 3},
		},
		Targets: map[string]Target{
			"echo": {
				Name: "echo", URL: "http://127.0.0.1:8081/", Method: "POST", Timeout: 10 * time.Second,
				Headers: map[string]string{}, Breaker: "external_api", Bulkhead: "api_agent", Backoff: "external_api",
				MaxRequestBytes: 1 << 20, MaxResponseBytes: 4 << 20, Concurrency: 20,
				RetryBudget: contractBudget,
			},
		},
		Work: []Work{{
			Queue: "vsm.tasks.echo", Target: "echo",
			Redelivery: []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute},
			Prefetch:   64, QueueType: "classic", DeliveryLimit: 20,
		}},
		Outbound: []Outbound{{
			Queue: "vsm.outbound", URL: "", Breaker: "amqp", Bulkhead: "worker_agent",
			Exchanges: []string{"vsm.events"}, Prefetch: 64, QueueType: "classic", DeliveryLimit: 20,
		}},
		Algedonic: algedonic.Config{
			PainExchange: "vsm.algedonic.pain", PleasureExchange: "vsm.algedonic.pleasure",
			Coalesce: 10 * time.Second, Buffer: 1000,
		},
		Health: health.Config{Exchange: "vsm.health", Interval: 15 * time.Second, DegradedUtilization: 0.8},
	}
}

func TestDefaultMatchesContract(t *testing.T) {
	for name, data := range map[string][]byte{"no file": nil, "the default file itself": configs.Default} {
		t.Run(name, func(t *testing.T) {
			c := mustLoad(t, string(data), nil)
			if want := contractDefault(); !reflect.DeepEqual(c, want) {
				t.Fatalf("default configuration\n got %+v\nwant %+v", c, want)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestDefaultSpotValues(t *testing.T) {
	c := mustLoad(t, "", nil)
	llm := c.Breakers["llm_api"]
	amqp := c.Breakers["amqp"]
	checks := []struct {
		what      string
		got, want any
	}{
		{"llm_api failure_threshold", llm.FailureThreshold, 3},
		{"llm_api reset_timeout", llm.ResetTimeout, 120 * time.Second},
		{"llm_api timeout", llm.Timeout, 30 * time.Second},
		{"llm_api success_threshold (inherited)", llm.SuccessThreshold, 3},
		{"amqp breaker", [6]any{amqp.FailureThreshold, amqp.SuccessThreshold, amqp.ResetTimeout, amqp.HalfOpenTimeout, amqp.WindowSize, amqp.Timeout},
			[6]any{5, 3, 60 * time.Second, 30 * time.Second, 60 * time.Second, 10 * time.Second}},
		{"no defaults breaker", len(c.Breakers), 4},
		{"llm_worker rate_limit", c.Bulkheads["llm_worker"].RateLimit, 10.0},
		{"backoff llm_api", c.Backoff["llm_api"], backoff.Policy{Initial: time.Second, Max: 30 * time.Second, Multiplier: 2, Jitter: backoff.Full, MaxRetries: 3}},
		{"backoff external_api max_retries", c.Backoff["external_api"].MaxRetries, 5},
		{"no defaults policy", len(c.Backoff), 2},
		{"echo url", c.Targets["echo"].URL, "http://127.0.0.1:8081/"},
		{"work queue", c.Work[0].Queue, "vsm.tasks.echo"},
		{"redelivery", c.Work[0].Redelivery, []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}},
		{"outbound exchanges", c.Outbound[0].Exchanges, []string{"vsm.events"}},
		{"algedonic", c.Algedonic, algedonic.Config{PainExchange: "vsm.algedonic.pain", PleasureExchange: "vsm.algedonic.pleasure", Coalesce: 10 * time.Second, Buffer: 1000}},
		{"health", c.Health, health.Config{Exchange: "vsm.health", Interval: 15 * time.Second, DegradedUtilization: 0.8}},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.what, ck.got, ck.want)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		got  func(*Config) any
		want any
	}{
		{"amqp url", "", map[string]string{"RELAY_AMQP_URL": "amqps://relay:pw@broker:5671/prod"},
			func(c *Config) any { return c.AMQP.URL }, "amqps://relay:pw@broker:5671/prod"},
		{"http listen", "", map[string]string{"RELAY_HTTP_LISTEN": "0.0.0.0:9191"},
			func(c *Config) any { return c.HTTP.Listen }, "0.0.0.0:9191"},
		{"breaker defaults reach every breaker without its own value", "",
			map[string]string{"RELAY_BREAKERS_DEFAULTS_FAILURE_THRESHOLD": "7"},
			func(c *Config) any {
				return [4]int{c.Breakers["amqp"].FailureThreshold, c.Breakers["database"].FailureThreshold,
					c.Breakers["external_api"].FailureThreshold, c.Breakers["llm_api"].FailureThreshold}
			}, [4]int{7, 7, 7, 3}},
		{"duration", "", map[string]string{"RELAY_ALGEDONIC_COALESCE": "45s"},
			func(c *Config) any { return c.Algedonic.Coalesce }, 45 * time.Second},
		{"named entry", "", map[string]string{"RELAY_BREAKERS_LLM_API_TIMEOUT": "1m"},
			func(c *Config) any { return c.Breakers["llm_api"].Timeout }, time.Minute},
		{"key absent from every file", "", map[string]string{"RELAY_BULKHEADS_LLM_WORKER_MAX_WAITING": "3"},
			func(c *Config) any { return c.Bulkheads["llm_worker"].MaxWaiting }, 3},
		{"bool", "", map[string]string{"RELAY_AMQP_TLS_INSECURE_SKIP_VERIFY": "true"},
			func(c *Config) any { return c.AMQP.TLS.InsecureSkipVerify }, true},
		{"float", "", map[string]string{"RELAY_HEALTH_DEGRADED_UTILIZATION": "0.5"},
			func(c *Config) any { return c.Health.DegradedUtilization }, 0.5},
		{"list entry by position", "", map[string]string{"RELAY_WORK_0_REDELIVERY": "1s, 2m"},
			func(c *Config) any { return c.Work[0].Redelivery }, []time.Duration{time.Second, 2 * time.Minute}},
		{"outbound url", "", map[string]string{"RELAY_OUTBOUND_0_URL": "amqp://u:p@other:5672/"},
			func(c *Config) any { return c.Outbound[0].URL }, "amqp://u:p@other:5672/"},
		{"empty counts as unset", "", map[string]string{"RELAY_AMQP_URL": ""},
			func(c *Config) any { return c.AMQP.URL }, "amqp://guest:guest@127.0.0.1:5672/"},
		{"over the file", "amqp: {prefetch: 10}", map[string]string{"RELAY_AMQP_PREFETCH": "20"},
			func(c *Config) any { return c.AMQP.Prefetch }, 20},
		{"header of a user target", `
targets:
  api:
    url: https://api.example.com/v1
    headers: {Authorization: "Bearer ${TOKEN}"}
    breaker: external_api
    bulkhead: api_agent
    backoff: external_api
work: [{queue: q, target: api}]
`, map[string]string{"RELAY_TARGETS_API_HEADERS_AUTHORIZATION": "Bearer ${OTHER}"},
			func(c *Config) any { return c.Targets["api"].Headers }, map[string]string{"authorization": "Bearer ${OTHER}"}},
		{"name with a hyphen", `
bulkheads: {api-pool: {size: 2}, worker_agent: {size: 1}}
targets: {echo: {url: "http://h/", breaker: external_api, bulkhead: api-pool, backoff: llm_api}}
`, map[string]string{"RELAY_BULKHEADS_API_POOL_SIZE": "9"},
			func(c *Config) any { return c.Bulkheads["api-pool"].Size }, 9},
		{"no lookup for unrelated names", "", map[string]string{"RELAY_NOT_A_KEY": "x", "AMQP_URL": "amqp://x/"},
			func(c *Config) any { return c.AMQP.URL }, "amqp://guest:guest@127.0.0.1:5672/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.file, tt.env)
			if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBadEnvOverrides(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"RELAY_AMQP_CONNECT_TIMEOUT": "30"},
			[]string{`amqp.connect_timeout: a duration needs a unit, like "30s"; got 30 (from RELAY_AMQP_CONNECT_TIMEOUT)`}},
		{map[string]string{"RELAY_AMQP_PREFETCH": "lots"},
			[]string{`amqp.prefetch: must be a whole number, got "lots" (from RELAY_AMQP_PREFETCH)`}},
		{map[string]string{"RELAY_AMQP_TLS_INSECURE_SKIP_VERIFY": "maybe"},
			[]string{`amqp.tls.insecure_skip_verify: must be true or false, got "maybe" (from RELAY_AMQP_TLS_INSECURE_SKIP_VERIFY)`}},
		{map[string]string{"RELAY_WORK_0_REDELIVERY": "5s,30"},
			[]string{`work[0].redelivery: item 1: a duration needs a unit, like "30s"; got 30 (from RELAY_WORK_0_REDELIVERY)`}},
		{map[string]string{"RELAY_AMQP_URL": "http://guest:hunter2@h/"},
			[]string{`amqp.url: must be an amqp:// or amqps:// URL, got scheme "http"`}},
		{map[string]string{"RELAY_HEALTH_INTERVAL": "0s", "RELAY_ALGEDONIC_BUFFER": "0"},
			[]string{"algedonic.buffer: must be from 1 to 1000000, got 0", "health.interval: must be above zero, got 0s"}},
	}
	for _, tt := range tests {
		_, err := LoadBytes(nil, envOf(tt.env))
		if got := fielderr.Lines(err); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("env %v:\n got %q\nwant %q", tt.env, got, tt.want)
		}
	}
}

const userBase = `
amqp: {url: "amqp://relay:s3cret@broker:5672/prod"}
bulkheads: {pool: {size: 4, overflow: 1}}
targets:
  api:
    url: https://api.example.com/v1
    breaker: mine
    bulkhead: pool
    backoff: mine
work: [{queue: tasks.api, target: api}]
outbound: []
`

func TestUserFileCombination(t *testing.T) {
	tests := []struct {
		name string
		file string
		got  func(*Config) any
		want any
	}{
		{"targets replace the default set", userBase + "breakers: {mine: {}}\nbackoff: {mine: {}}\n",
			func(c *Config) any { return slices.Sorted(maps.Keys(c.Targets)) }, []string{"api"}},
		{"bulkheads replace the default set", userBase + "breakers: {mine: {}}\nbackoff: {mine: {}}\n",
			func(c *Config) any { return slices.Sorted(maps.Keys(c.Bulkheads)) }, []string{"pool"}},
		{"named breakers replace the built-in ones", userBase + "breakers: {mine: {timeout: 2s}}\nbackoff: {mine: {}}\n",
			func(c *Config) any { return c.Breakers }, map[string]breaker.Settings{"mine": func() breaker.Settings {
				s := defaultBreaker()
				s.Timeout = 2 * time.Second
				return s
			}()}},
		{"defaults alone keep the built-in breakers", "breakers: {defaults: {failure_threshold: 9, window_size: 2m}}",
			func(c *Config) any {
				return [3]any{slices.Sorted(maps.Keys(c.Breakers)), c.Breakers["amqp"].FailureThreshold, c.Breakers["llm_api"].WindowSize}
			}, [3]any{[]string{"amqp", "database", "external_api", "llm_api"}, 9, 2 * time.Minute}},
		{"breaker defaults merge key by key", "breakers: {defaults: {timeout: 1s}}",
			func(c *Config) any { return [2]any{c.Breakers["amqp"].Timeout, c.Breakers["amqp"].ResetTimeout} },
			[2]any{time.Second, 60 * time.Second}},
		{"named policies replace the built-in ones, defaults merge under them",
			userBase + "breakers: {mine: {}}\nbackoff: {defaults: {max_retries: 7}, mine: {initial: 2s, max: 1m}}\n",
			func(c *Config) any { return c.Backoff },
			map[string]backoff.Policy{"mine": {Initial: 2 * time.Second, Max: time.Minute, Multiplier: 2, Jitter: backoff.Full, MaxRetries: 7}}},
		{"a user target gets the entry defaults", userBase + "breakers: {mine: {}}\nbackoff: {mine: {}}\n",
			func(c *Config) any { return c.Targets["api"] }, Target{
				Name: "api", URL: "https://api.example.com/v1", Method: "POST", Timeout: 10 * time.Second,
				Headers: map[string]string{}, Breaker: "mine", Bulkhead: "pool", Backoff: "mine",
				MaxRequestBytes: 1 << 20, MaxResponseBytes: 4 << 20, Concurrency: 5, RetryBudget: contractBudget,
			}},
		{"a user work entry gets the entry defaults", userBase + "breakers: {mine: {}}\nbackoff: {mine: {}}\n",
			func(c *Config) any { return c.Work },
			[]Work{{Queue: "tasks.api", Target: "api", Redelivery: []time.Duration{}, Prefetch: 64, QueueType: "classic", DeliveryLimit: 20}}},
		{"an empty outbound list is no outbound queue", userBase + "breakers: {mine: {}}\nbackoff: {mine: {}}\n",
			func(c *Config) any { return c.Outbound }, []Outbound{}},
		{"plain sections merge key by key", "amqp: {prefetch: 8}\nhealth: {interval: 1m}",
			func(c *Config) any { return [3]any{c.AMQP.Prefetch, c.AMQP.URL, c.Health} },
			[3]any{8, "amqp://guest:guest@127.0.0.1:5672/", health.Config{Exchange: "vsm.health", Interval: time.Minute, DegradedUtilization: 0.8}}},
		{"explicit prefetch and concurrency are kept", "amqp: {prefetch: 8}\nwork: [{queue: a, target: echo, prefetch: 2}]\ntargets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, concurrency: 3}}",
			func(c *Config) any {
				return [3]int{c.Work[0].Prefetch, c.Outbound[0].Prefetch, c.Targets["echo"].Concurrency}
			},
			[3]int{2, 8, 3}},
		{"null sections are empty", userBase + "breakers: {mine: }\nbackoff: {mine: }\nhttp:\n",
			func(c *Config) any { return [2]any{len(c.Breakers), c.HTTP.Listen} }, [2]any{1, "127.0.0.1:9090"}},
		{"durations of every spelling", "shutdown_timeout: 1h30m\nalgedonic: {coalesce: 0s}\namqp: {reconnect: {initial: 1.5s, max: 90s}}",
			func(c *Config) any {
				return [4]time.Duration{c.ShutdownTimeout, c.Algedonic.Coalesce, c.AMQP.Reconnect.Initial, c.AMQP.Reconnect.Max}
			}, [4]time.Duration{90 * time.Minute, 0, 1500 * time.Millisecond, 90 * time.Second}},
		{"header names are kept in lower case", `targets: {echo: {url: "http://h/", breaker: amqp, bulkhead: api_agent, backoff: llm_api, headers: {X-Api-Key: "${KEY}"}}}`,
			func(c *Config) any { return c.Targets["echo"].Headers }, map[string]string{"x-api-key": "${KEY}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.file, nil)
			if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // every line of the error, in order
	}{
		{"unknown top-level key", "bogus: 1", []string{"bogus: unknown key"}},
		{"unknown nested key", "amqp: {prefech: 3}", []string{`amqp.prefech: unknown key (did you mean "prefetch"?)`}},
		{"unknown key in a named entry", "breakers: {defaults: {timout: 1s}}", []string{`breakers.defaults.timout: unknown key (did you mean "timeout"?)`}},
		{"unknown key in a list entry", "outbound: [{queue: q, breaker: amqp, bulkhead: worker_agent, exchanges: [x], retries: 3}]",
			[]string{"outbound[0].retries: unknown key"}},
		{"upper-case key", "AMQP: {}", []string{`AMQP: unknown key (did you mean "amqp"?)`}},
		{"bare number duration", "amqp: {connect_timeout: 30}", []string{`amqp.connect_timeout: a duration needs a unit, like "30s"; got 30`}},
		{"bare float duration", "health: {interval: 1.5}", []string{`health.interval: a duration needs a unit, like "30s"; got 1.5`}},
		{"bare number duration in a string", `shutdown_timeout: "30"`, []string{`shutdown_timeout: a duration needs a unit, like "30s"; got 30`}},
		{"bare zero duration", "algedonic: {coalesce: 0}", []string{`algedonic.coalesce: a duration needs a unit, like "30s"; got 0`}},
		{"bare number in a duration list", "work: [{queue: q, target: echo, redelivery: [5s, 30]}]",
			[]string{`work[0].redelivery[1]: a duration needs a unit, like "30s"; got 30`}},
		{"not a duration", "amqp: {connect_timeout: soon}",
			[]string{`amqp.connect_timeout: not a duration: "soon" (a number with a unit: ms, s, m or h, like "500ms" or "1m30s")`}},
		{"string for a number", "amqp: {prefetch: many}", []string{`amqp.prefetch: must be a whole number, got "many"`}},
		{"fraction for a whole number", "algedonic: {buffer: 10.5}", []string{`algedonic.buffer: must be a whole number, got 10.5`}},
		{"map for a string", "http: {listen: {host: h}}", []string{"http.listen: must be a string, got a map"}},
		{"no value", "amqp: {url: }", []string{`amqp.url: has no value (write "" for an empty string)`}},
		{"list for a section", "targets: [echo]", []string{"targets: must be a map of named entries, got a list"}},
		{"scalar for a list", "work: echo", []string{"work: must be a list of entries, got a string"}},
		{"scalar for a list of durations", "work: [{queue: q, target: echo, redelivery: 5s}]",
			[]string{"work[0].redelivery: must be a list, like [a, b], got a string"}},
		{"bad broker scheme", "amqp: {url: 'http://127.0.0.1/'}", []string{`amqp.url: must be an amqp:// or amqps:// URL, got scheme "http"`}},
		{"broker without host", "amqp: {url: 'amqp:///vhost'}", []string{"amqp.url: has no host"}},
		{"broker url that does not parse", "amqp: {url: 'amqp://u:p ss@h/'}", []string{"amqp.url: is not a valid URL: net/url: invalid userinfo"}},
		{"bad target url", "targets: {echo: {url: 'ftp://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api}}",
			[]string{`targets.echo.url: must be an http:// or https:// URL, got scheme "ftp"`}},
		{"missing target url", "targets: {echo: {breaker: amqp, bulkhead: api_agent, backoff: llm_api}}",
			[]string{"targets.echo.url: is required"}},
		{"dangling breaker", "targets: {echo: {url: 'http://h/', breaker: nope, bulkhead: api_agent, backoff: llm_api}}",
			[]string{`targets.echo.breaker: unknown breaker "nope" (have: amqp, database, external_api, llm_api)`}},
		{"dangling bulkhead", "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: nope, backoff: llm_api}}",
			[]string{`targets.echo.bulkhead: unknown bulkhead "nope" (have: api_agent, llm_worker, sensor_agent, telegram_bot, worker_agent)`}},
		{"dangling backoff", "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: nope}}",
			[]string{`targets.echo.backoff: unknown backoff policy "nope" (have: external_api, llm_api)`}},
		{"missing reference", "targets: {echo: {url: 'http://h/', bulkhead: api_agent, backoff: llm_api}}",
			[]string{`targets.echo.breaker: is required: name a breaker (have: amqp, database, external_api, llm_api)`}},
		{"dangling target", "work: [{queue: q, target: nope}]", []string{`work[0].target: unknown target "nope" (have: echo)`}},
		{"dangling outbound references", "outbound: [{queue: o, breaker: b, bulkhead: w, exchanges: [x]}]", []string{
			`outbound[0].breaker: unknown breaker "b" (have: amqp, database, external_api, llm_api)`,
			`outbound[0].bulkhead: unknown bulkhead "w" (have: api_agent, llm_worker, sensor_agent, telegram_bot, worker_agent)`,
		}},
		{"duplicate queue", "outbound: [{queue: vsm.tasks.echo, breaker: amqp, bulkhead: worker_agent, exchanges: [x]}]",
			[]string{`outbound[0].queue: queue "vsm.tasks.echo" is already used by work[0].queue`}},
		{"queue named like another's dead-letter queue", "outbound: [{queue: vsm.tasks.echo.dlq, breaker: amqp, bulkhead: worker_agent, exchanges: [x]}]",
			[]string{`outbound[0].queue: queue "vsm.tasks.echo.dlq" is the dead-letter queue of work[0].queue`}},
		{"reserved queue name", "work: [{queue: amq.tasks, target: echo}]",
			[]string{`work[0].queue: must not start with "amq." (reserved by the broker), got "amq.tasks"`}},
		{"empty queue name", "work: [{queue: '', target: echo}]", []string{"work[0].queue: is required"}},
		{"negative size", "bulkheads: {api_agent: {size: -1}, worker_agent: {size: 1, overflow: -3}}",
			[]string{"bulkheads.api_agent.size: must be at least 1, got -1", "bulkheads.worker_agent.overflow: must not be negative, got -3"}},
		{"negative breaker value", "breakers: {llm_api: {success_threshold: -2}, amqp: {}, external_api: {}}",
			[]string{"breakers.llm_api.success_threshold: must not be negative, got -2"}},
		{"bad defaults reported once, under defaults", "breakers: {defaults: {window_size: -1s}}",
			[]string{"breakers.defaults.window_size: must not be negative, got -1s"}},
		{"bad jitter", "backoff: {llm_api: {jitter: wild}, external_api: {}}",
			[]string{`backoff.llm_api.jitter: unknown jitter "wild" (want full, equal, decorrelated or none)`}},
		{"bad jitter in defaults", "backoff: {defaults: {jitter: wild}}",
			[]string{`backoff.defaults.jitter: unknown jitter "wild" (want full, equal, decorrelated or none)`}},
		{"backoff max under initial", "backoff: {llm_api: {initial: 1s, max: 500ms}, external_api: {}}",
			[]string{"backoff.llm_api.max: must not be less than initial (1s), got 500ms"}},
		{"bad name", "bulkheads: {Pool: {size: 1}, api_agent: {size: 1}, worker_agent: {size: 1}}",
			[]string{`bulkheads.Pool: a name is lower-case letters, digits, "_" and "-", starting with a letter or digit`}},
		{"instance with a dot", "instance: relay.one", []string{`instance: must be one routing-key word: no ".", "#", "*" or white space, got "relay.one"`}},
		{"zero shutdown timeout", "shutdown_timeout: 0s", []string{"shutdown_timeout: must be above zero, got 0s"}},
		{"prefetch out of range", "amqp: {prefetch: 70000}", []string{"amqp.prefetch: must be from 1 to 65535, got 70000"}},
		{"reconnect max under initial", "amqp: {reconnect: {initial: 5s, max: 1s}}", []string{"amqp.reconnect.max: must not be less than initial (5s), got 1s"}},
		{"tls cert without key", "amqp: {tls: {cert_file: " + strconv.Quote(os.Args[0]) + "}}",
			[]string{"amqp.tls.key_file: is needed with cert_file: give both or neither"}},
		{"tls file missing", "amqp: {tls: {ca_file: /no/such/ca.pem}}", []string{`amqp.tls.ca_file: file "/no/such/ca.pem" does not exist`}},
		{"bad listen", "http: {listen: localhost}", []string{`http.listen: must be host:port, like 127.0.0.1:9090, got "localhost"`}},
		{"bad method", "targets: {echo: {url: 'http://h/', method: 'PO ST', breaker: amqp, bulkhead: api_agent, backoff: llm_api}}",
			[]string{`targets.echo.method: must be an HTTP method, like POST, got "PO ST"`}},
		{"zero request limit", "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, max_request_bytes: 0}}",
			[]string{"targets.echo.max_request_bytes: must be at least 1, got 0"}},
		{"unterminated header reference", "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, headers: {authorization: 'Bearer ${TOKEN'}}}",
			[]string{`targets.echo.headers.authorization: the value has a "${" without its "}" (write "$${" for a literal "${")`}},
		{"header value not a string", "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, headers: {x-n: 5}}}",
			[]string{"targets.echo.headers.x-n: must be a string, got a number (quote it)"}},
		{"header name with a dot", "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, headers: {x.y: v}}}",
			[]string{`targets.echo.headers.x.y: a header name with "." cannot be configured (the key path uses ".")`}},
		{"header twice", "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, headers: {X-A: v, x-a: w}}}",
			[]string{`targets.echo.headers.x-a: header "X-A" is given twice (header names ignore case)`}},
		{"no exchanges", "outbound: [{queue: o, breaker: amqp, bulkhead: worker_agent, exchanges: []}]",
			[]string{"outbound[0].exchanges: must list at least one exchange"}},
		{"bad exchange", "outbound: [{queue: o, breaker: amqp, bulkhead: worker_agent, exchanges: [ok, 'no way']}]",
			[]string{`outbound[0].exchanges[1]: an exchange name is letters, digits, "-", "_", "." and ":", got "no way"`}},
		{"reserved event exchange", "health: {exchange: amq.topic}",
			[]string{`health.exchange: must not start with "amq." (reserved by the broker), got "amq.topic"`}},
		{"zero redelivery step", "work: [{queue: q, target: echo, redelivery: [0s]}]",
			[]string{"work[0].redelivery[0]: must be at least 1ms (message TTLs count milliseconds), got 0s"}},
		{"algedonic limits", "algedonic: {coalesce: -1s, buffer: 0}", []string{
			"algedonic.buffer: must be from 1 to 1000000, got 0",
			"algedonic.coalesce: must not be negative, got -1s",
		}},
		{"utilization above one", "health: {degraded_utilization: 1.5}",
			[]string{"health.degraded_utilization: must be above 0 and at most 1, got 1.5"}},
		{"utilization zero", "health: {degraded_utilization: 0}",
			[]string{"health.degraded_utilization: must be above 0 and at most 1, got 0"}},
		{"not a map", "- a\n- b", []string{"the configuration must be a map of keys, got a list"}},
		{"invalid YAML", "amqp: [", []string{"invalid YAML: line 1: did not find expected node content"}},
		{"duplicate YAML key", "amqp: {}\namqp: {}", []string{`invalid YAML: line 2: mapping key "amqp" already defined at line 1`}},
		{"a replaced section takes the built-in names with it", "breakers: {llm_api: {timeout: 1m}}", []string{
			`outbound[0].breaker: unknown breaker "amqp" (have: llm_api)`,
			`targets.echo.breaker: unknown breaker "external_api" (have: llm_api)`,
		}},
		{"a rejected value draws one complaint", "targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, timeout: 10}}",
			[]string{`targets.echo.timeout: a duration needs a unit, like "30s"; got 10`}},
		{"a rejected list entry keeps the others' positions", "work: [5, {queue: q, target: nope}]", []string{
			"work[0]: must be a map of keys, got a number",
			`work[1].target: unknown target "nope" (have: echo)`,
		}},
		{"multiple problems reported together", `
bogus: true
amqp: {url: 'amqp://guest:guest@h:5672/', prefetch: 0, connect_timeout: 30}
targets: {echo: {url: 'http://h/', breaker: nope, bulkhead: api_agent, backoff: external_api}}
backoff: {external_api: {jitter: sometimes}}
health: {degraded_utilization: 2}
`, []string{
			`amqp.connect_timeout: a duration needs a unit, like "30s"; got 30`,
			"amqp.prefetch: must be from 1 to 65535, got 0",
			`backoff.external_api.jitter: unknown jitter "sometimes" (want full, equal, decorrelated or none)`,
			"bogus: unknown key",
			"health.degraded_utilization: must be above 0 and at most 1, got 2",
			`targets.echo.breaker: unknown breaker "nope" (have: amqp, database, external_api, llm_api)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadBytes([]byte(tt.file), nil)
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Errorf("config returned along with the error")
			}
			got := fielderr.Lines(err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems\n got %q\nwant %q", got, tt.want)
			}
			for _, e := range fielderr.Flatten(err) {
				if e.Key == "" && !strings.HasPrefix(e.Msg, "invalid YAML: ") && !strings.HasPrefix(e.Msg, "the configuration must be") {
					t.Errorf("problem without a key: %q", e.Msg)
				}
			}
		})
	}
}

func TestNoSecretInProblems(t *testing.T) {
	const secret = "hunter2"
	files := []string{
		"amqp: {url: 'amqp://u:" + secret + "@h:99999/'}",
		"amqp: {url: 'amqp://u:" + secret + "%zz@h/'}",
		"amqp: {url: 'amqp://u:" + secret + " x@h/'}",
		"amqp: {url: 'ftp://u:" + secret + "@h/'}",
		"outbound: [{queue: o, url: 'amqp://u:" + secret + "@/', breaker: amqp, bulkhead: worker_agent, exchanges: [x]}]",
		"targets: {echo: {url: 'http://h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api, headers: {a: '" + secret + "${', b: \"" + secret + "\\n\", c: [" + secret + "]}}}",
		"targets: {echo: {url: 'gopher://u:" + secret + "@h/', breaker: amqp, bulkhead: api_agent, backoff: llm_api}}",
	}
	for _, f := range files {
		_, err := LoadBytes([]byte(f), nil)
		if err == nil {
			t.Errorf("%s: no error", f)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the secret:\n%v", f, err)
		}
	}
}

func TestValidateHandBuilt(t *testing.T) {
	c := contractDefault()
	c.Breakers["defaults"] = defaultBreaker()
	c.Targets["echo"] = Target{Name: "echo", URL: "http://h/", Method: "POST", Timeout: time.Second,
		Headers: map[string]string{"Bad Name": "v"}, Breaker: "amqp", Bulkhead: "api_agent", Backoff: "llm_api",
		MaxRequestBytes: 1, MaxResponseBytes: 1, Concurrency: -1}
	want := []string{
		`breakers.defaults: "defaults" is the base of the other entries, not an entry itself`,
		"targets.echo.concurrency: must be from 0 (the bulkhead's capacity) to 65536, got -1",
		"targets.echo.headers.Bad Name: a header name is an HTTP token (letters, digits and !#$%&'*+-^_`|~)",
	}
	if got := fielderr.Lines(c.Validate()); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if err := (&Config{}).Validate(); len(fielderr.Lines(err)) < 10 {
		t.Errorf("zero Config: want many problems, got %q", fielderr.Lines(err))
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte("instance: edge-1\namqp: {prefetch: 5}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAY_HTTP_LISTEN", "127.0.0.1:0")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance != "edge-1" || c.AMQP.Prefetch != 5 || c.HTTP.Listen != "127.0.0.1:0" {
		t.Errorf("got instance %q prefetch %d listen %q", c.Instance, c.AMQP.Prefetch, c.HTTP.Listen)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "reading configuration") {
		t.Errorf("missing file: got %v", err)
	}
}

func TestLoadFillsInstance(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	suffix := "-" + strconv.Itoa(os.Getpid())
	if !strings.HasSuffix(c.Instance, suffix) || len(c.Instance) <= len(suffix) {
		t.Errorf("instance %q, want <hostname>%s", c.Instance, suffix)
	}
	if msg := checkWord(c.Instance); msg != "" {
		t.Errorf("instance %q: %s", c.Instance, msg)
	}
}

// Every key of the schema is documented in the default file.
func TestDefaultFileDocumentsEveryKey(t *testing.T) {
	text := string(configs.Default)
	var keys []string
	var collect func(n *node)
	collect = func(n *node) {
		for _, f := range n.fields {
			keys = append(keys, f.key)
			collect(f.node)
		}
		if n.elem != nil {
			collect(n.elem)
		}
	}
	collect(schema())
	for _, k := range keys {
		if !strings.Contains(text, k) {
			t.Errorf("key %q is not mentioned in configs/relay.yaml", k)
		}
	}
}

// The schema's kinds agree with the Go types they are read from.
func TestSchemaKinds(t *testing.T) {
	want := map[reflect.Kind]kind{reflect.String: kindString, reflect.Int: kindInt, reflect.Int64: kindInt,
		reflect.Float64: kindFloat, reflect.Bool: kindBool}
	var visit func(t reflect.Type, n *node, path string)
	visit = func(rt reflect.Type, n *node, path string) {
		switch rt {
		case reflect.TypeFor[time.Duration]():
			if n.kind != kindDuration {
				t.Errorf("%s: kind %d, want duration", path, n.kind)
			}
			return
		case reflect.TypeFor[backoff.Jitter]():
			if n.kind != kindJitter {
				t.Errorf("%s: kind %d, want jitter", path, n.kind)
			}
			return
		}
		switch rt.Kind() {
		case reflect.Struct:
			i := 0
			for sf := range rt.Fields() {
				if keyOf(sf) == "" {
					continue
				}
				if n.fields[i].key != keyOf(sf) {
					t.Errorf("%s: field %s has key %q, want %q", path, sf.Name, n.fields[i].key, keyOf(sf))
				}
				visit(sf.Type, n.fields[i].node, join(path, n.fields[i].key))
				i++
			}
		case reflect.Map, reflect.Slice:
			if n.elem != nil {
				visit(rt.Elem(), n.elem, path+"[]")
			}
		default:
			if k, ok := want[rt.Kind()]; !ok || n.kind != k {
				t.Errorf("%s: Go kind %s has schema kind %d", path, rt.Kind(), n.kind)
			}
		}
	}
	visit(reflect.TypeFor[Config](), schema(), "")
}

func TestKeyNames(t *testing.T) {
	tests := []struct{ name, want string }{
		{"URL", "url"}, {"CAFile", "ca_file"}, {"InsecureSkipVerify", "insecure_skip_verify"},
		{"MinPerSecond", "min_per_second"}, {"AMQP", "amqp"}, {"HTTP", "http"}, {"MaxRequestBytes", "max_request_bytes"},
		{"HalfOpenTimeout", "half_open_timeout"}, {"Share", "share"}, {"TLS", "tls"}, {"Retry2Budget", "retry2_budget"},
	}
	for _, tt := range tests {
		if got := snake(tt.name); got != tt.want {
			t.Errorf("snake(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
	for _, f := range []reflect.StructField{
		reflect.TypeFor[Target]().Field(0), reflect.TypeFor[algedonic.Config]().Field(4), reflect.TypeFor[health.Config]().Field(0),
	} {
		if got := keyOf(f); got != "" {
			t.Errorf("%s: key %q, want none (it is filled in, not read)", f.Name, got)
		}
	}
}

func BenchmarkLoadBytes(b *testing.B) {
	for _, bm := range []struct{ name, file string }{{"default", ""}, {"user file", secretFile}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := LoadBytes([]byte(bm.file), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The decoder is strict on its own: whatever shape a value arrives in, a
// value of the wrong kind is refused, keyed by its path.
func TestDecodeIsStrict(t *testing.T) {
	tests := []struct {
		tree map[string]any
		want string
	}{
		{map[string]any{"shutdown_timeout": 30}, `shutdown_timeout: a duration needs a unit, like "30s"; got 30`},
		{map[string]any{"shutdown_timeout": "30"}, `shutdown_timeout: a duration needs a unit, like "30s"; got 30`},
		{map[string]any{"breakers": map[string]any{"x": map[string]any{"timeout": 2.5}}}, `breakers.x.timeout: a duration needs a unit, like "30s"; got 2.5`},
		{map[string]any{"work": []any{map[string]any{"redelivery": []any{"1s", 5}}}}, `work[0].redelivery[1]: a duration needs a unit, like "30s"; got 5`},
		{map[string]any{"work": []any{map[string]any{"prefetch": "3"}}}, `work[0].prefetch: must be a whole number, got "3"`},
		{map[string]any{"amqp": map[string]any{"bogus": 1}}, `amqp.bogus: unknown key`},
		{map[string]any{"algedonic": map[string]any{"instance": "x"}}, `algedonic.instance: unknown key`},
		{map[string]any{"targets": map[string]any{"a": map[string]any{"name": "x"}}}, `targets.a.name: unknown key`},
		{map[string]any{"backoff": map[string]any{"x": map[string]any{"jitter": 1}}}, `backoff.x.jitter: must be a jitter name (full, equal, decorrelated or none), got 1`},
		{map[string]any{"breakers": map[string]any{"x": map[string]any{"share": "yes"}}}, `breakers.x.share: must be true or false, got "yes"`},
	}
	for _, tt := range tests {
		var p problems
		decode(tt.tree, schema(), "", &p)
		if got := fielderr.Lines(p.Err()); len(got) != 1 || got[0] != tt.want {
			t.Errorf("decode(%v) = %q, want %q", tt.tree, got, tt.want)
		}
	}
	var p problems
	tree, _ := decode(map[string]any{"shutdown_timeout": "1m30s", "backoff": map[string]any{"x": map[string]any{"jitter": "none"}}}, schema(), "", &p)
	var c Config
	if err := assign(tree.(map[string]any), &c); err != nil || p.Err() != nil {
		t.Fatalf("assign: %v, %v", err, p.Err())
	}
	if c.ShutdownTimeout != 90*time.Second || c.Backoff["x"].Jitter != backoff.None {
		t.Errorf("decoded %v and %v", c.ShutdownTimeout, c.Backoff["x"].Jitter)
	}
}
