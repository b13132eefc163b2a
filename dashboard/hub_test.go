package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/health"
)

func newHub(t *testing.T, o Options) *Hub {
	t.Helper()
	h, err := NewHub(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// frame is one parsed SSE message.
type frame struct{ id, event, data string }

// readFrames parses SSE messages from r onto a channel until r ends.
func readFrames(r *bufio.Reader) <-chan frame {
	out := make(chan frame, 64)
	go func() {
		defer close(out)
		var f frame
		var data []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if f.event != "" || len(data) > 0 {
					f.data = strings.Join(data, "\n")
					out <- f
				}
				f, data = frame{}, nil
			case strings.HasPrefix(line, ":"):
				out <- frame{event: "comment", data: line}
			case strings.HasPrefix(line, "id: "):
				f.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				f.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = append(data, line[6:])
			}
		}
	}()
	return out
}

func openStream(t *testing.T, srv *httptest.Server) <-chan frame {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	return readFrames(bufio.NewReader(resp.Body))
}

func next(t *testing.T, frames <-chan frame) frame {
	t.Helper()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatal("stream ended")
			}
			if f.event == "comment" {
				continue
			}
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("no message within 10s")
		}
	}
}

func event(name, ev string) algedonic.Event {
	return algedonic.Event{Signal: algedonic.Pain, Source: "breaker", Name: name, Event: ev, Severity: algedonic.Critical,
		Count: 1, Instance: "r1", At: time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)}
}

func TestStreamSendsLatestOnConnectThenLive(t *testing.T) {
	h := newHub(t, Options{History: 3})
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	defer h.Close() // before srv.Close, which waits for the open stream

	h.PublishHealth(health.Report{Overall: health.Degraded, Instance: "r1",
		CircuitBreakers: map[string]health.BreakerStatus{"llm_api": {State: "open", FailureCount: 3}}})
	h.Publish(KindStats, []byte(`{"at":"x","queues":[]}`))
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		h.PublishEvent(event(n, "open"))
	}
	frames := openStream(t, srv)
	var got []string
	for range 5 {
		f := next(t, frames)
		got = append(got, f.event)
		if f.event == KindEvent {
			var e algedonic.Event
			if err := json.Unmarshal([]byte(f.data), &e); err != nil {
				t.Fatalf("event data %q: %v", f.data, err)
			}
			got[len(got)-1] += ":" + e.Name
		}
		if f.event == KindHealth && !strings.Contains(f.data, `"llm_api":{"state":"open","failure_count":3`) {
			t.Errorf("health data %s", f.data)
		}
	}
	want := []string{"health", "stats", "event:c", "event:d", "event:e"}
	if !slices.Equal(got, want) {
		t.Fatalf("first messages %v, want %v", got, want)
	}

	h.PublishEvent(event("f", "closed"))
	if f := next(t, frames); f.event != KindEvent || !strings.Contains(f.data, `"name":"f"`) || f.id == "" {
		t.Errorf("live message %+v", f)
	}
	h.Publish(KindHealth, []byte("{\"overall\":\n\"healthy\"}"))
	if f := next(t, frames); f.event != KindHealth || f.data != "{\"overall\":\n\"healthy\"}" {
		t.Errorf("a payload with a line break came as %+v", f)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	h := newHub(t, Options{})
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	frames := openStream(t, srv)
	for h.Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	h.Close()
	for f := range frames {
		if f.event != "comment" {
			t.Errorf("unexpected %+v", f)
		}
	}
	if n := h.Subscribers(); n != 0 {
		t.Errorf("%d subscribers after Close", n)
	}
	h.Publish(KindEvent, []byte(`{}`)) // must not panic or block
	rec := httptest.NewRecorder()
	h.Events().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /events after Close: %d, want 503", rec.Code)
	}
}

func TestSlowSubscriberLosesOldestNotThePublisher(t *testing.T) {
	h := newHub(t, Options{Buffer: 2})
	s, _ := h.subscribe()
	defer h.unsubscribe(s)
	fast, _ := h.subscribe()
	defer h.unsubscribe(fast)
	for i := range 5 {
		h.Publish(KindEvent, []byte{'0' + byte(i)})
		<-fast.ch // fast keeps up
	}
	var got string
	for range 2 {
		got += string((<-s.ch).data)
	}
	if got != "34" {
		t.Errorf("slow subscriber kept %q, want the newest two %q", got, "34")
	}
	if s.dropped.Load() != 3 || fast.dropped.Load() != 0 || h.Dropped() != 3 {
		t.Errorf("dropped: slow %d, fast %d, hub %d; want 3, 0, 3", s.dropped.Load(), fast.dropped.Load(), h.Dropped())
	}
}

// recorder is a ResponseWriter that flushes, for handlers run inside a
// synctest bubble.
type recorder struct {
	mu      sync.Mutex
	header  http.Header
	body    strings.Builder
	flushes int
	gate    chan struct{} // while set, Write waits for it to close
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(int)     {}
func (r *recorder) setGate(g chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gate = g
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	g := r.gate
	r.mu.Unlock()
	if g != nil {
		<-g
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.body.Write(p)
}
func (r *recorder) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes++
}
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.body.String()
}

func TestHeartbeatAndDroppedNotice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := NewHub(Options{Heartbeat: 15 * time.Second, Buffer: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		ctx, cancel := context.WithCancel(t.Context())
		rec := &recorder{header: http.Header{}}
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.Events().ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/events", nil))
		}()
		synctest.Wait()
		if got := rec.String(); got != "retry: 2000\n\n" {
			t.Fatalf("stream opened with %q", got)
		}
		time.Sleep(14 * time.Second)
		synctest.Wait()
		if strings.Contains(rec.String(), "ping") {
			t.Fatal("heartbeat before 15s")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if !strings.HasSuffix(rec.String(), ": ping\n\n") {
			t.Fatalf("no heartbeat at 15s: %q", rec.String())
		}

		// The browser stalls on the first of four messages; with a buffer
		// of one the newest of the other three waits, and the page is told
		// of the two it missed.
		gate := make(chan struct{})
		rec.setGate(gate)
		h.Publish(KindEvent, []byte(`{"n":0}`))
		synctest.Wait() // the handler is stuck writing it
		for i := 1; i <= 3; i++ {
			h.Publish(KindEvent, []byte(`{"n":`+string('0'+byte(i))+`}`))
		}
		rec.setGate(nil)
		close(gate)
		synctest.Wait()
		want := "id: 1\nevent: event\ndata: {\"n\":0}\n\n" +
			"event: dropped\ndata: {\"dropped\":2}\n\nid: 4\nevent: event\ndata: {\"n\":3}\n\n"
		if got := rec.String(); !strings.HasSuffix(got, want) {
			t.Errorf("stream ends with %q, want %q", got, want)
		}
		if h.Dropped() != 2 {
			t.Errorf("Dropped() = %d, want 2", h.Dropped())
		}
		cancel()
		<-done
		if h.Subscribers() != 0 {
			t.Error("the stream stayed subscribed after its request ended")
		}
	})
}

func TestPollPublishesHealthAndRates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var polls atomic.Int64
		queues := func() []QueueStats {
			n := uint64(polls.Add(1))
			return []QueueStats{{Queue: "tasks.agent", InFlight: 2, Replied: 10 * n, DeadLettered: 3, Published: n}}
		}
		rep := func() health.Report { return health.Report{Overall: health.Healthy, Instance: "r1"} }
		h, err := NewHub(Options{Queues: queues, Health: rep, Interval: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		s, _ := h.subscribe()
		defer h.unsubscribe(s)
		synctest.Wait()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		var kinds []string
		var last StatsMessage
		for len(s.ch) > 0 {
			m := <-s.ch
			kinds = append(kinds, m.kind)
			if m.kind == KindStats {
				if err := json.Unmarshal(m.data, &last); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !slices.Equal(kinds, []string{"health", "stats", "health", "stats"}) {
			t.Fatalf("messages %v, want health and stats at start and after one interval", kinds)
		}
		want := QueueRates{
			QueueStats: QueueStats{Queue: "tasks.agent", InFlight: 2, Replied: 20, DeadLettered: 3, Published: 2},
			Rates:      Rates{Replied: 5, Published: 0.5},
		}
		if len(last.Queues) != 1 || last.Queues[0] != want {
			t.Errorf("stats %+v, want %+v", last.Queues, want)
		}
	})
}

func TestRates(t *testing.T) {
	now := time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		cur     QueueStats
		prev    map[string]QueueStats
		elapsed time.Duration
		want    Rates
	}{
		{"first sight", QueueStats{Queue: "q", Replied: 100}, nil, time.Second, Rates{}},
		{"steady", QueueStats{Queue: "q", Replied: 110, Redelivered: 4, DeadLettered: 1, Requeued: 2, Published: 9},
			map[string]QueueStats{"q": {Queue: "q", Replied: 100, Published: 1}}, 2 * time.Second,
			Rates{Replied: 5, Redelivered: 2, DeadLettered: 0.5, Requeued: 1, Published: 4}},
		{"counters reset", QueueStats{Queue: "q", Replied: 3}, map[string]QueueStats{"q": {Queue: "q", Replied: 100}}, time.Second, Rates{}},
		{"no time passed", QueueStats{Queue: "q", Replied: 3}, map[string]QueueStats{"q": {Queue: "q"}}, 0, Rates{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := rates([]QueueStats{tt.cur}, tt.prev, tt.elapsed, now)
			if m.At != "2026-11-29T14:00:00.000Z" || len(m.Queues) != 1 || m.Queues[0].Rates != tt.want || m.Queues[0].QueueStats != tt.cur {
				t.Errorf("got %+v, want rates %+v", m, tt.want)
			}
		})
	}
}

func TestPublishDropsUnusableKinds(t *testing.T) {
	h := newHub(t, Options{})
	s, _ := h.subscribe()
	defer h.unsubscribe(s)
	for _, kind := range []string{"", "a\nb", "x:y", "a\r"} {
		h.Publish(kind, []byte(`{}`))
	}
	if n := len(s.ch); n != 0 {
		t.Errorf("%d messages of unusable kinds delivered", n)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"negative interval", Options{Interval: -1}, false},
		{"negative history", Options{History: -1}, false},
		{"negative buffer", Options{Buffer: -1}, false},
		{"negative heartbeat", Options{Heartbeat: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.o.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
		if _, err := NewHub(tt.o); (err == nil) != tt.ok {
			t.Errorf("%s: NewHub error %v", tt.name, err)
		} // a hub without sources starts no goroutine, so none leaks here
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHub(t, Options{Buffer: 1, Registerer: reg})
	s, _ := h.subscribe()
	defer h.unsubscribe(s)
	h.Publish(KindEvent, []byte(`1`))
	h.Publish(KindEvent, []byte(`2`))
	want := `
# HELP relay_dashboard_dropped_total Messages of the live page's event stream dropped because a browser read too slowly.
# TYPE relay_dashboard_dropped_total counter
relay_dashboard_dropped_total 1
# HELP relay_dashboard_streams Open GET /events streams of the live page.
# TYPE relay_dashboard_streams gauge
relay_dashboard_streams 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if _, err := NewHub(Options{Registerer: reg}); err == nil {
		t.Error("a second hub on the same registry: no error")
	}
}
