package testbroker

import (
	"encoding/json"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestList(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ", nil},
		{"a@localhost", []string{"a@localhost"}},
		{"a@localhost, b@localhost,", []string{"a@localhost", "b@localhost"}},
	}
	for _, c := range cases {
		if got := list(c.in); !slices.Equal(got, c.want) {
			t.Errorf("list(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestNodeName(t *testing.T) {
	t.Setenv(EnvNode, "")
	if n, why := NodeName(); n != "" || !strings.Contains(why, EnvNode) {
		t.Errorf("unset: NodeName() = %q, %q", n, why)
	}
	t.Setenv(EnvNode, " relaytest@localhost ")
	if n, why := NodeName(); n != "relaytest@localhost" || why != "" {
		t.Errorf("set: NodeName() = %q, %q", n, why)
	}
}

// TestNodeIsTheBrokerAtURL checks that the node rabbitmqctl is pointed at
// is the broker the tests connect to: a connection made to URL shows up
// in that node's list_connections.
func TestNodeIsTheBrokerAtURL(t *testing.T) {
	node := Node(t)
	u := URL(t)
	name := Unique("testbroker.probe")
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(u, amqp.Config{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if out := Ctl(t, node, "list_connections", "client_properties", "-q"); !strings.Contains(out, name) {
		t.Fatalf("node %s does not list the connection %s made to %s:\n%s", node, name, u, out)
	}
}

// TestClusterIsJoined checks that every node of the test cluster sees all
// of them running, and that each URL reaches a broker.
func TestClusterIsJoined(t *testing.T) {
	urls, nodes := ClusterURLs(t), ClusterNodes(t)
	LockCluster(t, false)
	want := slices.Sorted(slices.Values(nodes))
	for i, node := range nodes {
		var st struct {
			RunningNodes []string `json:"running_nodes"`
		}
		out := Ctl(t, node, "cluster_status", "--formatter", "json", "-q")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("cluster_status of %s: %v\n%s", node, err, out)
		}
		if got := slices.Sorted(slices.Values(st.RunningNodes)); !slices.Equal(got, want) {
			t.Errorf("%s sees running %q, want %q", node, got, want)
		}
		if _, err := url.Parse(urls[i]); err != nil {
			t.Fatal(err)
		}
		conn, err := amqp.Dial(urls[i])
		if err != nil {
			t.Errorf("dialling %s: %v", urls[i], err)
			continue
		}
		conn.Close()
	}
}

func TestLockCluster(t *testing.T) {
	t.Setenv(EnvClusterNodes, Unique("lock-test")+"@localhost")
	t.Cleanup(func() { os.Remove(clusterLockPath()) })
	// tryShared reports whether a shared lock could be had at once, as
	// another test binary would ask for it.
	tryShared := func() bool {
		f, err := os.OpenFile(clusterLockPath(), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
			return false
		}
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return true
	}
	cases := []struct {
		name      string
		exclusive bool
		wantOther bool
	}{
		{"exclusive keeps others out", true, false},
		{"shared lets others in", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Run("holder", func(t *testing.T) {
				LockCluster(t, c.exclusive)
				if got := tryShared(); got != c.wantOther {
					t.Errorf("while held: another shared lock granted = %v, want %v", got, c.wantOther)
				}
			})
			if !tryShared() {
				t.Error("the lock is still held after the test that took it ended")
			}
		})
	}
}
