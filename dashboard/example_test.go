package dashboard_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/dashboard"
	"github.com/vsm-relay/relay/health"
)

// A relay mounts the page and the stream next to /health, hands the hub
// its events, and lets it poll the health report and the queue counters.
func ExampleNewHub() {
	report := func() health.Report { return health.Report{Overall: health.Healthy, Instance: "relay-1"} }
	queues := func() []dashboard.QueueStats {
		return []dashboard.QueueStats{{Queue: "tasks.agent", InFlight: 3, Replied: 120}}
	}
	hub, err := dashboard.NewHub(dashboard.Options{Health: report, Queues: queues})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close() // before the server's Shutdown, which waits for open streams

	mux := http.NewServeMux()
	hub.Register(mux) // GET /, GET /assets/, GET /events

	// With an *algedonic.Emitter: emitter.Subscribe(hub.PublishEvent).
	hub.PublishEvent(algedonic.Event{Signal: algedonic.Pain, Source: "breaker", Name: "llm_api", Event: "open",
		Severity: algedonic.Critical, Count: 1, At: time.Now()})
	fmt.Println(hub.Subscribers(), hub.Dropped())
	// Output: 0 0
}
