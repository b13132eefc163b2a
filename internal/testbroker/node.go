package testbroker

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The environment a private broker is described by (.ci/run sets it,
// after starting the nodes with scripts/rabbitmq-private.sh).
const (
	// EnvNode names the Erlang node of the broker at RELAY_TEST_AMQP_URL,
	// for rabbitmqctl -n. Tests make broker-wide faults (memory alarms,
	// connections closed by the broker) only on a node named here, never
	// on a broker that others share.
	EnvNode = "RELAY_TEST_RABBITMQ_NODE"
	// EnvClusterURLs lists the AMQP URLs of a private cluster's nodes,
	// comma-separated, in the order of EnvClusterNodes.
	EnvClusterURLs = "RELAY_TEST_CLUSTER_URLS"
	// EnvClusterNodes lists the Erlang node names of that cluster.
	EnvClusterNodes = "RELAY_TEST_CLUSTER_NODES"
)

// NodeName returns the Erlang node name of the test broker, or "" and
// why there is none, for tests that can do without it.
func NodeName() (node, whyNot string) {
	if n := strings.TrimSpace(os.Getenv(EnvNode)); n != "" {
		return n, ""
	}
	return "", EnvNode + " is not set: broker-wide faults are made only on a private node (see .ci/run)"
}

// Node returns the Erlang node name of the test broker, for rabbitmqctl
// -n, or skips (fails under CI=true) the test.
func Node(t testing.TB) string {
	t.Helper()
	n, why := NodeName()
	if n == "" {
		absent(t, why)
	}
	return n
}

// ClusterURLs returns the AMQP URLs of a private test cluster's nodes, or
// skips (fails under CI=true) the test.
func ClusterURLs(t testing.TB) []string {
	t.Helper()
	urls := list(os.Getenv(EnvClusterURLs))
	if len(urls) == 0 {
		absent(t, "no RabbitMQ cluster: "+EnvClusterURLs+" is not set")
	}
	return urls
}

// ClusterNodes returns the Erlang node names of the private test
// cluster, in the order of ClusterURLs, or skips (fails under CI=true)
// the test.
func ClusterNodes(t testing.TB) []string {
	t.Helper()
	nodes := list(os.Getenv(EnvClusterNodes))
	if len(nodes) == 0 {
		absent(t, "no RabbitMQ cluster: "+EnvClusterNodes+" is not set")
	}
	if urls := list(os.Getenv(EnvClusterURLs)); len(urls) != len(nodes) {
		t.Fatalf("%s lists %d nodes and %s %d URLs", EnvClusterNodes, len(nodes), EnvClusterURLs, len(urls))
	}
	return nodes
}

// Ctl runs rabbitmqctl -n node with args and returns its output; an error
// fails the test. rabbitmqctl missing skips (fails under CI=true) it.
func Ctl(t testing.TB, node string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		absent(t, "rabbitmqctl is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, append([]string{"-n", node}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl -n %s %s: %v\n%s", node, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func absent(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("needed under CI=true: %s", why)
	}
	t.Skip(why)
}

func list(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// LockCluster keeps tests that disturb the private test cluster (a node
// that stops taking connections, say) from running while others use it,
// across the test binaries of one run: exclusive for a test that
// disturbs it, shared for one that needs it whole. The lock is released
// when the test ends.
func LockCluster(t testing.TB, exclusive bool) {
	t.Helper()
	f, err := os.OpenFile(clusterLockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// clusterLockPath names the lock file of the cluster in EnvClusterNodes.
func clusterLockPath() string {
	name := strings.NewReplacer("@", "_", ",", "_", "/", "_").Replace(os.Getenv(EnvClusterNodes))
	return filepath.Join(os.TempDir(), "relay-test-cluster-"+name+".lock")
}
