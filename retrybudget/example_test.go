package retrybudget_test

import (
	"fmt"
	"time"

	"github.com/vsm-relay/relay/clock"
	"github.com/vsm-relay/relay/retrybudget"
)

// A target called 100 times within the window may retry 20% of them plus
// a reserve of 1 a second: 30 retries, then the budget is spent and a
// failure goes to its next redelivery step instead.
func Example() {
	fc := clock.NewFake(time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC))
	b, err := retrybudget.New(retrybudget.Settings{Ratio: 0.2, MinPerSecond: 1, Window: 10 * time.Second}, retrybudget.WithClock(fc))
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 100 {
		b.Call() // every first attempt
	}
	granted := 0
	for b.TryRetry() { // before every in-process retry
		granted++
	}
	s := b.Snapshot()
	fmt.Println(granted, "retries granted")
	fmt.Println(s.Reason(b.Settings().Window))
	fmt.Printf("denied share %.2f\n", s.DeniedShare())

	// The window slides: ten seconds later the budget is the reserve again.
	fc.Advance(10 * time.Second)
	fmt.Println(b.Snapshot().Left, "retries left")
	// Output:
	// 30 retries granted
	// retry budget spent: 30 retries for 100 calls within 10s
	// denied share 0.01
	// 10 retries left
}
