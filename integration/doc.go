// Package integration holds the relay's end-to-end tests: the relay (in
// process, or the built binary) against a real RabbitMQ broker and local
// HTTP downstreams, with every message counted.
//
// The broker comes from RELAY_TEST_AMQP_URL, else 127.0.0.1:5672 when it
// answers, else a RabbitMQ container through testcontainers-go when
// Docker is there; with none the tests skip, except under CI=true, where
// they fail. Every test uses queue and exchange names of its own and
// deletes them when it ends, so runs can overlap and repeat.
package integration
