// Package config loads, checks and prints the relay's configuration.
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
// The layers are held in a fresh viper instance per load: every key of the
// default file is a viper default, the user's file is merged as viper's
// config, and the overrides are set on top. Sections of named things do
// not merge entry by entry: a user file's targets, bulkheads, work and
// outbound are the complete set, and its breakers and backoff replace the
// built-in named entries when they name any (their `defaults` entry always
// merges key by key). configs/relay.yaml spells the rules out for users.
//
// # Strictness
//
// A configuration that loads is one the relay can run. Unknown keys are
// errors (with the nearest known key suggested), durations need a unit (a
// bare 30 is an error, never 30ns), no value is silently converted to
// another type, and Validate checks every value and every reference
// between sections. Loading does not stop at the first problem: every
// problem is reported at once, each as a *fielderr.Error whose key is the
// path in the file ("amqp.prefetch", "targets.echo.breaker",
// "work[0].redelivery[1]"), sorted by key, so `relay config check` can
// print one per line.
//
// # Secrets
//
// Passwords live in broker URLs and secret tokens in target headers. No
// error message quotes either: messages about URLs describe what is wrong
// without the URL, messages about headers name the header and, for
// ${VAR} references, the variable. Redacted prints the effective
// configuration with both shown as "***", and RedactURL is the one way a
// broker URL reaches a log line. Header values are kept raw in Config;
// Target.ExpandedHeaders expands their ${VAR} references when the relay
// starts.
package config
