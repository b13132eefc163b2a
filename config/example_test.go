package config_test

import (
	"fmt"
	"strings"

	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/fielderr"
)

func ExampleLoad() {
	// "" loads the configuration embedded in the binary, with the RELAY_*
	// environment variables applied.
	cfg, err := config.Load("")
	if err != nil {
		for _, line := range fielderr.Lines(err) {
			fmt.Println(line)
		}
		return
	}
	llm := cfg.Breakers["llm_api"]
	fmt.Println("llm_api:", llm.FailureThreshold, llm.ResetTimeout, llm.Timeout)
	fmt.Println("work:", cfg.Work[0].Queue, "->", cfg.Work[0].Target, cfg.Work[0].Redelivery)
	fmt.Println("instance set:", cfg.Instance != "")
	// Output:
	// llm_api: 3 2m0s 30s
	// work: vsm.tasks.echo -> echo [5s 30s 2m0s]
	// instance set: true
}

func ExampleLoadBytes() {
	file := `
amqp:
  prefech: 32
  connect_timeout: 30
targets:
  echo:
    url: http://127.0.0.1:8081/
    breaker: external_api
    bulkhead: api_pool
    backoff: external_api
`
	env := map[string]string{"RELAY_HTTP_LISTEN": "0.0.0.0:9090"}
	_, err := config.LoadBytes([]byte(file), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	for _, line := range fielderr.Lines(err) {
		fmt.Println(line)
	}
	// Output:
	// amqp.connect_timeout: a duration needs a unit, like "30s"; got 30
	// amqp.prefech: unknown key (did you mean "prefetch"?)
	// targets.echo.bulkhead: unknown bulkhead "api_pool" (have: api_agent, llm_worker, sensor_agent, telegram_bot, worker_agent)
}

func ExampleConfig_Redacted() {
	cfg, err := config.LoadBytes([]byte(`amqp: {url: "amqps://relay:s3cret@broker:5671/prod"}`), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, _ := cfg.Redacted()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "amqps://") {
			fmt.Println(strings.TrimSpace(line))
		}
	}
	// Output:
	// url: amqps://relay:***@broker:5671/prod
}

func ExampleRedactURL() {
	fmt.Println(config.RedactURL("amqp://guest:guest@127.0.0.1:5672/"))
	// Output: amqp://guest:***@127.0.0.1:5672/
}

func ExampleTarget_ExpandedHeaders() {
	t := config.Target{Name: "llm", Headers: map[string]string{
		"authorization": "Bearer ${LLM_TOKEN}",
		"x-org":         "${LLM_ORG}",
	}}
	env := map[string]string{"LLM_TOKEN": "t0ken"}
	lookup := func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
	_, err := t.ExpandedHeaders(lookup)
	fmt.Println(err)

	env["LLM_ORG"] = "vsm"
	h, _ := t.ExpandedHeaders(lookup)
	fmt.Println(h["authorization"], h["x-org"])
	// Output:
	// targets.llm.headers.x-org: environment variable LLM_ORG is not set
	// Bearer t0ken vsm
}

func ExampleSource_Load() {
	// A Source reads its file and environment again on every Load, so a
	// reload sees what changed. Environ stands in for os.Environ here.
	src := config.Source{Environ: func() []string {
		return []string{"RELAY_AMQP_PREFECH=5", "RELAY_HTTP_LISTEN=0.0.0.0:9090"}
	}}
	_, err := src.Load()
	for _, line := range fielderr.Lines(err) {
		fmt.Println(line)
	}
	// Output:
	// RELAY_AMQP_PREFECH: no such configuration key; did you mean RELAY_AMQP_PREFETCH?
}

func ExampleAMQP_URLs() {
	cfg, err := config.LoadBytes([]byte(`amqp: {url: "amqp://u:p@rmq-0:5672/,amqp://u:p@rmq-1:5672/"}`), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, u := range cfg.AMQP.URLs() {
		fmt.Println(config.RedactURL(u))
	}
	// Output:
	// amqp://u:***@rmq-0:5672/
	// amqp://u:***@rmq-1:5672/
}
