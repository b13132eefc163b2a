package fleet_test

import (
	"context"
	"log"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/fleet"
)

// A relay shares its breaker llm_api with the fleet over its broker: the
// consuming connection declares the relay's fleet queue on every
// (re)connect, the transport publishes on the publishing connection, and
// the coordinator's peers' messages come back through Listen.
func ExampleNewAMQP() {
	ctx := context.Background()
	opts := fleet.AMQPOptions{Instance: "relay-7f3a", Breakers: []string{"llm_api"}}
	url := "amqp://guest:guest@127.0.0.1:5672/"

	publish, err := broker.Dial(ctx, broker.Options{Name: "publish", Instance: opts.Instance, URL: url})
	if err != nil {
		log.Fatal(err)
	}
	defer publish.Close()
	consume, err := broker.Dial(ctx, broker.Options{Name: "consume", Instance: opts.Instance, URL: url,
		Topology: func(conn *amqp.Connection) error {
			// The relay's own topology first, then the fleet's.
			return opts.Declare(conn)
		}})
	if err != nil {
		log.Fatal(err)
	}
	defer consume.Close()

	transport, err := fleet.NewAMQP(publish, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer transport.Close()
	coord, err := fleet.New(opts.Instance, transport)
	if err != nil {
		log.Fatal(err)
	}
	llm, _ := breaker.New("llm_api", breaker.Settings{})
	if err := coord.Share(llm); err != nil {
		log.Fatal(err)
	}
	if err := transport.Listen(consume, coord.Deliver); err != nil {
		log.Fatal(err)
	}
	go coord.Run(ctx)
}
