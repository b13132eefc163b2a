// Package testbroker finds a RabbitMQ broker for tests and gives each test
// names of its own, so runs can overlap and repeat.
//
// The broker comes from RELAY_TEST_AMQP_URL, else a broker answering on
// 127.0.0.1:5672 (guest/guest), else a RabbitMQ container started through
// testcontainers-go when Docker is available. With none of these the test
// is skipped with the reason, except under CI=true, where it fails.
//
// .ci/run starts private nodes from the installed rabbitmq-server
// (scripts/rabbitmq-private.sh) rather than use a broker others share:
// one node, given as RELAY_TEST_AMQP_URL with its Erlang node name in
// RELAY_TEST_RABBITMQ_NODE, and a cluster of three, given as
// RELAY_TEST_CLUSTER_URLS and RELAY_TEST_CLUSTER_NODES. Tests that raise
// broker-wide faults (memory alarms, connections closed by the broker)
// make them only on the node Node names; cluster tests take the cluster
// from ClusterURLs and ClusterNodes.
package testbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// LocalURL is the broker tried when RELAY_TEST_AMQP_URL is not set.
const LocalURL = "amqp://guest:guest@127.0.0.1:5672/"

var (
	once   sync.Once
	found  string
	reason string
)

// URL returns a broker URL, or skips (fails under CI=true) the test.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(discover)
	if found == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no RabbitMQ broker for integration tests under CI=true: %s", reason)
		}
		t.Skipf("no RabbitMQ broker: %s", reason)
	}
	return found
}

func discover() {
	if u := os.Getenv("RELAY_TEST_AMQP_URL"); u != "" {
		found = u
		return
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:5672", time.Second); err == nil {
		c.Close()
		found = LocalURL
		return
	}
	reasons := []string{"RELAY_TEST_AMQP_URL is not set", "nothing answers on 127.0.0.1:5672"}
	if u, err := startContainer(); err == nil {
		found = u
		return
	} else {
		reasons = append(reasons, "no RabbitMQ container: "+err.Error())
	}
	reason = strings.Join(reasons, "; ")
}

func startContainer() (url string, err error) {
	defer func() {
		// testcontainers panics in some environments without Docker.
		if r := recover(); r != nil {
			err = errFromPanic(r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := testcontainers.NewDockerClientWithOpts(ctx); err != nil {
		return "", err
	}
	c, err := testcontainers.Run(ctx, "rabbitmq:3.13-management-alpine",
		testcontainers.WithExposedPorts("5672/tcp"),
		testcontainers.WithWaitStrategy(wait.ForListeningPort("5672/tcp").WithStartupTimeout(2*time.Minute)),
	)
	if err != nil {
		return "", err
	}
	endpoint, err := c.PortEndpoint(ctx, "5672/tcp", "")
	if err != nil {
		return "", err
	}
	return "amqp://guest:guest@" + endpoint + "/", nil
}

type panicError struct{ v any }

func (p panicError) Error() string { return "docker unavailable" }

func errFromPanic(v any) error { return panicError{v} }

// Unique returns prefix followed by a random suffix, for queue and
// exchange names private to one test run.
func Unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "." + hex.EncodeToString(b[:])
}

// Dial opens a plain amqp091 connection for test set-up and inspection,
// closed when the test ends.
func Dial(t testing.TB, url string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dialling test broker: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Channel opens a channel on a fresh test connection.
func Channel(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	ch, err := Dial(t, url).Channel()
	if err != nil {
		t.Fatalf("opening test channel: %v", err)
	}
	return ch
}

// CleanupQueues deletes the named queues when the test ends.
func CleanupQueues(t testing.TB, url string, queues ...string) {
	t.Helper()
	cleanup(t, url, func(ch *amqp.Channel) {
		for _, q := range queues {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})
}

// CleanupExchanges deletes the named exchanges when the test ends.
func CleanupExchanges(t testing.TB, url string, exchanges ...string) {
	t.Helper()
	cleanup(t, url, func(ch *amqp.Channel) {
		for _, x := range exchanges {
			_ = ch.ExchangeDelete(x, false, false)
		}
	})
}

// cleanup runs del on a fresh connection when the test ends; the broker
// being gone by then is no failure of the test.
func cleanup(t testing.TB, url string, del func(*amqp.Channel)) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			del(ch)
		}
	})
}
