package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/fleet"
)

// direct is an in-process Transport: it hands every message to every
// coordinator, as a topic exchange would (the sender ignores its own).
type direct struct{ to []*fleet.Coordinator }

func (d *direct) Publish(ctx context.Context, m fleet.Message) error {
	for _, c := range d.to {
		c.Deliver(m)
	}
	return nil
}

// Two relays share the breaker llm_api: three failures at relay-a open
// it there, and relay-a's opening opens it at relay-b, with relay-a as
// origin. The relay's own transport is a topic exchange on its broker.
func Example() {
	bus := &direct{}
	settings := breaker.Settings{FailureThreshold: 3, ResetTimeout: time.Minute}
	opened := make(chan breaker.Transition, 1)

	a, _ := breaker.New("llm_api", settings)
	b, _ := breaker.New("llm_api", settings, breaker.WithListener(func(t breaker.Transition) {
		if t.To == breaker.Open {
			opened <- t
		}
	}))
	ca, err := fleet.New("relay-a", bus)
	if err != nil {
		fmt.Println(err)
		return
	}
	cb, _ := fleet.New("relay-b", bus)
	bus.to = []*fleet.Coordinator{ca, cb}
	if err := ca.Share(a); err != nil {
		fmt.Println(err)
		return
	}
	_ = cb.Share(b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ca.Run(ctx)
	go cb.Run(ctx)

	for range 3 {
		_ = a.Call(ctx, func(context.Context) error { return errors.New("HTTP 503") })
	}
	t := <-opened
	fmt.Println("relay-b:", t.To, "origin", t.Origin)
	fmt.Println(t.Reason)
	// Output:
	// relay-b: open origin relay-a
	// opened at relay-a: 3 failures within 60s; last: HTTP 503
}
