package broker_test

import (
	"fmt"

	"github.com/vsm-relay/relay/broker"
)

// A cluster's nodes are given as one comma-separated list; each is shown
// as host:port, without credentials.
func ExampleSplitURLs() {
	for _, u := range broker.SplitURLs("amqp://relay:s3cret@rmq-0:5672/, amqp://relay:s3cret@rmq-1/,amqps://relay:s3cret@rmq-2/") {
		addr, err := broker.NodeAddr(u)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(addr)
	}
	// Output:
	// rmq-0:5672
	// rmq-1:5672
	// rmq-2:5671
}
