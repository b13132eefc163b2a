package config

import (
	"strings"
	"testing"

	"github.com/vsm-relay/relay/configs"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// FuzzLoadBytes feeds arbitrary bytes to the loader: it must never panic,
// every problem must name its key (or be a YAML parse error), and what
// loads must print as YAML that loads again.
func FuzzLoadBytes(f *testing.F) {
	for _, seed := range []string{
		string(configs.Default), secretFile, "", "amqp: [", "- a", "amqp: {prefech: 3}",
		"work: [5, {queue: q, redelivery: [1s, 30]}]", "targets: {echo: {headers: {X.Y: 1, x-a: '${A'}}}",
		"breakers: {defaults: {timeout: 1s}}", "a: &a [*a, *a]", "amqp: {url: 'amqp://u:p%zz@h'}",
		"instance: '\xff'", "bulkheads: {'': {size: 1}}", "targets: {1: {}}", "{? [a]: b}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := LoadBytes(data, nil)
		if err != nil {
			if c != nil {
				t.Fatal("a config returned along with an error")
			}
			for _, e := range fielderr.Flatten(err) {
				if e.Key == "" && !strings.HasPrefix(e.Msg, "invalid YAML: ") && !strings.HasPrefix(e.Msg, "the configuration must be") {
					t.Fatalf("problem without a key: %q", e.Msg)
				}
				if strings.Contains(e.Msg, "\n") {
					t.Fatalf("problem spans lines: %q", e.Error())
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
		out, err := c.Redacted()
		if err != nil {
			t.Fatalf("Redacted: %v", err)
		}
		if _, err := LoadBytes(out, nil); err != nil {
			t.Fatalf("redacted output does not load: %v\n%s", err, out)
		}
	})
}

// FuzzEnv feeds arbitrary RELAY_ variables to a load: it must never
// panic, every problem must name a key or the variable, on one line, and
// a configuration that loads must validate.
func FuzzEnv(f *testing.F) {
	for _, seed := range [][2]string{
		{"AMQP_PREFECH", "5"}, {"AMQP_PREFETCH", "x"}, {"WORK_0_REDELIVERY", "1s, 30"}, {"WORK_9_TARGET", "echo"},
		{"AMQP_URL", "amqp://a/,amqp://b/"}, {"BACKOFF_LLM_API_JITTER", "wild"}, {"TARGETS_ECHO_RETRY_BUDGET_RATIO", "NaN"},
		{"HTTP_ADMIN_TOKEN", "a\nb"}, {"", "x"}, {"TEST_X", "y"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, suffix, value string) {
		name := EnvPrefix + "_" + suffix
		c, err := Source{Environ: func() []string { return []string{name + "=" + value} }}.Load()
		if err != nil {
			if c != nil {
				t.Fatal("a config returned along with an error")
			}
			for _, e := range fielderr.Flatten(err) {
				if e.Key == "" {
					t.Fatalf("problem without a key: %q", e.Msg)
				}
				if strings.Contains(e.Msg, "\n") {
					t.Fatalf("problem spans lines: %q", e.Error())
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
	})
}
