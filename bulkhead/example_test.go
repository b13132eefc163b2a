package bulkhead_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vsm-relay/relay/bulkhead"
)

func ExampleBulkhead_WithResource() {
	pool, err := bulkhead.New("api_agent", bulkhead.Settings{Size: 15, Overflow: 5, Timeout: 10 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = pool.WithResource(context.Background(), func(h bulkhead.Handle) error {
		st := pool.Stats()
		fmt.Printf("working in slot %d: %d busy, %d available\n", h.Slot(), st.Busy, st.Available)
		return nil
	})
	if reason := bulkhead.Reason(err); reason != "" {
		fmt.Println("rejected:", reason) // e.g. count relay_bulkhead_rejected_total{reason}
	}
	fmt.Println("after:", pool.Stats().Busy, "busy")
	// Output:
	// working in slot 0: 1 busy, 19 available
	// after: 0 busy
}

func ExampleBulkhead_Checkout() {
	pool, err := bulkhead.New("telegram_bot", bulkhead.Settings{Size: 1, MaxWaiting: -1})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	h, err := pool.Checkout(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The only slot is taken and nobody may wait: the next caller is
	// turned away at once.
	if _, err := pool.Checkout(ctx); errors.Is(err, bulkhead.ErrFull) {
		fmt.Println("second checkout:", bulkhead.Reason(err))
	}
	fmt.Println("check-in:", pool.Checkin(h))
	fmt.Println("again:", pool.Checkin(h))
	// Output:
	// second checkout: full
	// check-in: <nil>
	// again: bulkhead: handle not checked out from this bulkhead
}

func ExampleReason() {
	for _, err := range []error{nil, bulkhead.ErrFull, bulkhead.ErrTimeout, bulkhead.ErrRateLimited, errors.New("HTTP 503")} {
		fmt.Printf("%q\n", bulkhead.Reason(err))
	}
	// Output:
	// ""
	// "full"
	// "timeout"
	// "rate_limited"
	// ""
}

func ExampleBulkhead_SetSettings() {
	pool, _ := bulkhead.New("api_agent", bulkhead.Settings{Size: 3, MaxWaiting: -1})
	ctx := context.Background()
	var held []bulkhead.Handle
	for range 3 {
		h, _ := pool.Checkout(ctx)
		held = append(held, h)
	}
	// A reload shrinks the pool below its busy count: the three callers
	// finish, and nothing more is lent until fewer than one slot is busy.
	if err := pool.SetSettings(bulkhead.Settings{Size: 1, MaxWaiting: -1}); err != nil {
		fmt.Println(err)
		return
	}
	st := pool.Stats()
	fmt.Printf("busy %d of %d\n", st.Busy, st.Capacity)
	for _, h := range held[:2] {
		_ = pool.Checkin(h)
	}
	_, err := pool.Checkout(ctx)
	fmt.Println("one still busy:", bulkhead.Reason(err))
	_ = pool.Checkin(held[2])
	h, err := pool.Checkout(ctx)
	fmt.Println("all checked in:", err, "slot", h.Slot())
	// Output:
	// busy 3 of 1
	// one still busy: full
	// all checked in: <nil> slot 0
}
