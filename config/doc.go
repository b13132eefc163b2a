// Package config loads, checks and prints the relay's configuration.
//
// # One model
//
// Config is what the file decodes into. Its sections are the components'
// own types (breaker.Settings, bulkhead.Settings, backoff.Policy,
// retrybudget.Settings, algedonic.Config, health.Config), so a value means
// the same in the file and in the component, and there is no second tree
// to keep in step. A field's key is its Go name in snake case
// (FailureThreshold is failure_threshold) unless a `config` tag says
// otherwise; `config:"-"` marks a field the relay fills in itself.
//
// # Layers
//
// A configuration is built from three layers, each over the one before:
//
//  1. the default file, configs/relay.yaml, embedded in the binary;
//  2. the user's YAML file, if any;
//  3. environment variables: RELAY_ + the key path in upper case with "."
//     replaced by "_" (RELAY_AMQP_URL, RELAY_BREAKERS_LLM_API_TIMEOUT,
//     RELAY_WORK_0_TARGET for the first work entry).
//
// Each source is decoded once, strictly, into values of its fields' types;
// the decoded layers are held in a fresh viper instance per load: every
// key of the default file is a viper default, the user's file is merged as
// viper's config, and the overrides are set on top. The result is placed
// into a Config and validated once. A Source names the file and the
// environment, and its Load can be called again at any time, as a reload
// does. Sections of named things do
// not merge entry by entry: a user file's targets, bulkheads, work and
// outbound are the complete set, and its breakers and backoff replace the
// built-in named entries when they name any (their `defaults` entry always
// merges key by key). configs/relay.yaml spells the rules out for users.
//
// # Strictness
//
// A configuration that loads is one the relay can run. Unknown keys are
// errors (with the nearest known key suggested), and so is a RELAY_
// variable that names no key (RELAY_AMQP_PREFECH: did you mean
// RELAY_AMQP_PREFETCH?), durations need a unit (a bare 30 is an error,
// never 30ns), no value is silently converted to another type, and
// Validate checks every value and every reference between sections.
// Loading does not stop at the first problem: every problem is reported
// at once, each as a *fielderr.Error whose key is the path in the file
// ("amqp.prefetch", "targets.echo.breaker", "work[0].redelivery[1]") or
// the environment variable, sorted by key, so `relay config check` can
// print one per line.
//
// # Secrets
//
// Passwords live in broker URLs, secret tokens in target headers and in
// http.admin_token. No error message quotes any of them: messages about
// URLs describe what is wrong without the URL, messages about headers
// name the header and, for ${VAR} references, the variable. Redacted
// prints the effective configuration with all of them shown as "***", and
// RedactURL is the one way a broker URL reaches a log line. Header values
// are kept raw in Config; Target.ExpandedHeaders expands their ${VAR}
// references when the relay starts.
package config
