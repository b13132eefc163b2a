package main

import (
	"context"
	"testing"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
)

// Allocs are the allocations per operation of the protections' hot
// paths, as the relay takes them for every task: a closed breaker
// admitting a call that succeeds, and a bulkhead with a free slot.
type Allocs struct {
	Breaker, Bulkhead float64
}

func measureAllocs() (Allocs, error) {
	b, err := breaker.New("allocs", breaker.Settings{})
	if err != nil {
		return Allocs{}, err
	}
	bh, err := bulkhead.New("allocs", bulkhead.Settings{Size: 64})
	if err != nil {
		return Allocs{}, err
	}
	defer bh.Close()
	ctx := context.Background()
	var a Allocs
	a.Breaker = testing.AllocsPerRun(10000, func() {
		p, err := b.Allow()
		if err == nil {
			b.Done(p, breaker.Success, nil)
		}
	})
	a.Bulkhead = testing.AllocsPerRun(10000, func() {
		h, err := bh.Checkout(ctx)
		if err == nil {
			_ = bh.Checkin(h)
		}
	})
	return a, nil
}
