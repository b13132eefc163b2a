// Package configs holds the relay's default configuration file, relay.yaml,
// embedded so that the binary runs without one. The file documents every
// key; package config reads it as the base of every configuration.
package configs

import _ "embed"

// Default is the content of relay.yaml. Treat it as read-only: it is the
// one copy the whole binary shares.
//
//go:embed relay.yaml
var Default []byte
