package health_test

import (
	"fmt"

	"github.com/vsm-relay/relay/health"
)

// The relay's own connections may sit on different nodes of a cluster;
// AMQPStatus.Node names them all.
func ExampleNodesOf() {
	conns := map[string]health.ConnStatus{
		"consume": {Connected: true, Node: "rmq-0:5672"},
		"publish": {Connected: true, Node: "rmq-2:5672"},
	}
	fmt.Println(health.NodesOf(conns, "consume", "publish"))
	// Output:
	// rmq-0:5672,rmq-2:5672
}
