package dispatch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/metrics"
)

func testTarget(url string, timeout time.Duration) *Target {
	var m *metrics.Metrics // a nil *Metrics hands out unregistered metrics
	return &Target{
		name: "svc", url: url, method: http.MethodPost, timeout: timeout,
		maxReq: 1 << 10, maxResp: 64, client: &http.Client{}, m: m.Target("svc"), userAgent: "relay/test",
	}
}

func TestClassifyByStatus(t *testing.T) {
	cases := []struct {
		code       int
		retryAfter string
		body       string
		kind       kind
		outcome    breaker.Outcome
		after      time.Duration
		reason     string
	}{
		{200, "", "ok", kindSuccess, breaker.Success, 0, ""},
		{204, "", "", kindSuccess, breaker.Success, 0, ""},
		{400, "", "bad field", kindPermanent, breaker.Neutral, 0, "HTTP 400 Bad Request from target svc: bad field"},
		{404, "", "", kindPermanent, breaker.Neutral, 0, "HTTP 404 Not Found from target svc"},
		{409, "", "", kindPermanent, breaker.Neutral, 0, "HTTP 409 Conflict from target svc"},
		{408, "", "", kindRetryable, breaker.Failure, 0, "HTTP 408 Request Timeout from target svc"},
		{429, "7", "slow down", kindRetryable, breaker.Failure, 7 * time.Second, "HTTP 429 Too Many Requests from target svc: slow down"},
		{500, "", "", kindRetryable, breaker.Failure, 0, "HTTP 500 Internal Server Error from target svc"},
		{503, "2", "", kindRetryable, breaker.Failure, 2 * time.Second, "HTTP 503 Service Unavailable from target svc"},
		{302, "", "", kindPermanent, breaker.Neutral, 0, "HTTP 302 Found from target svc"},
		{200, "", strings.Repeat("x", 65), kindPermanent, breaker.Neutral, 0, "HTTP 200 from target svc with a body over the 64-byte limit"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d", c.code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.retryAfter != "" {
					w.Header().Set("Retry-After", c.retryAfter)
				}
				if c.code == 302 {
					w.Header().Set("Location", "http://example.invalid/")
				}
				w.WriteHeader(c.code)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			tg := testTarget(srv.URL, time.Second)
			tg.client = newHTTPClientForTest()
			res := tg.call(context.Background(), &task{body: []byte("x")})
			if res.kind != c.kind || res.breakerOutcome != c.outcome || res.status != c.code || res.retryAfter != c.after || res.reason != c.reason {
				t.Fatalf("got kind=%d outcome=%v status=%d after=%s reason=%q\nwant kind=%d outcome=%v status=%d after=%s reason=%q",
					res.kind, res.breakerOutcome, res.status, res.retryAfter, res.reason, c.kind, c.outcome, c.code, c.after, c.reason)
			}
		})
	}
}

func newHTTPClientForTest() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestCallSendsContractHeaders(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(200)
	}))
	defer srv.Close()
	tg := testTarget(srv.URL, time.Second)
	tg.headers = http.Header{"Authorization": {"Bearer s3cret"}}
	tg.call(context.Background(), &task{body: []byte("{}"), contentType: "application/json", correlationID: "c1", messageID: "m1",
		traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "a=b"})
	want := map[string]string{
		"Content-Type": "application/json", "X-Correlation-Id": "c1", "Idempotency-Key": "m1", "Authorization": "Bearer s3cret",
		"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Tracestate": "a=b", "User-Agent": "relay/test",
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, got.Get(k), v)
		}
	}
}

// The task's header values share one backing array (see call): a value
// added to one header by whatever handles the request must not overwrite
// the next header's.
func TestCallHeaderValuesDoNotShareRoom(t *testing.T) {
	tg := testTarget("http://svc.test/", time.Second)
	var got http.Header
	tg.client = &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		for _, k := range []string{"Content-Type", "X-Correlation-Id", "Idempotency-Key", "Traceparent", "Tracestate"} {
			req.Header.Add(k, "added")
		}
		got = req.Header.Clone()
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})}
	tg.call(context.Background(), &task{body: []byte("{}"), contentType: "application/json", correlationID: "c1", messageID: "m1",
		traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "a=b"})
	want := map[string][]string{
		"Content-Type": {"application/json", "added"}, "X-Correlation-Id": {"c1", "added"}, "Idempotency-Key": {"m1", "added"},
		"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "added"}, "Tracestate": {"a=b", "added"},
		"User-Agent": {"relay/test"},
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("header %s = %q, want %q", k, got[k], v)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func TestTransportFailuresAreRetryableBreakerFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	res := testTarget("http://user:pw@"+addr+"/", time.Second).call(context.Background(), &task{})
	if res.kind != kindRetryable || res.breakerOutcome != breaker.Failure || !strings.HasPrefix(res.reason, "request to target svc failed: ") {
		t.Fatalf("refused connection: %+v", res)
	}
	if strings.Contains(res.reason, "pw") {
		t.Fatalf("reason leaks the URL's password: %q", res.reason)
	}

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	res = testTarget(slow.URL, 50*time.Millisecond).call(context.Background(), &task{})
	if res.kind != kindRetryable || res.breakerOutcome != breaker.Failure || res.reason != "no response from target svc within 50ms" {
		t.Fatalf("timeout: %+v", res)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res = testTarget(slow.URL, time.Second).call(ctx, &task{})
	if res.breakerOutcome != breaker.Neutral {
		t.Fatalf("a cancelled caller must be neutral for the breaker: %+v", res)
	}
}

func TestIntHeader(t *testing.T) {
	cases := []struct {
		v    any
		want int
	}{
		{int32(3), 3}, {int64(4), 4}, {int8(5), 5}, {uint16(6), 6}, {"7", 7}, {" 8 ", 8}, {float64(9), 9},
		{int32(-1), 0}, {"x", 0}, {nil, 0}, {true, 0}, {int64(1) << 40, 0}, {amqp.Table{}, 0},
	}
	for _, c := range cases {
		if got := intHeader(amqp.Table{"k": c.v}, "k"); got != c.want {
			t.Errorf("intHeader(%#v) = %d, want %d", c.v, got, c.want)
		}
	}
	if got := intHeader(amqp.Table{}, "k"); got != 0 {
		t.Errorf("missing header = %d", got)
	}
}

func TestCopyHeadersDropsRelayHeaders(t *testing.T) {
	in := amqp.Table{"x-relay-exchange": "e", "X-Relay-Error": "old", "keep": "v", "traceparent": "t"}
	out := copyHeaders(in, 0)
	if len(out) != 2 || out["keep"] != "v" || out["traceparent"] != "t" {
		t.Fatalf("copyHeaders = %v", out)
	}
	if len(in) != 4 {
		t.Fatal("copyHeaders changed its input")
	}
}

func TestDelayQueueNames(t *testing.T) {
	cases := map[time.Duration]string{
		5 * time.Second: "q.delay.5s", 2 * time.Minute: "q.delay.2m", time.Hour: "q.delay.1h",
		1500 * time.Millisecond: "q.delay.1500ms", 90 * time.Second: "q.delay.90s",
	}
	for d, want := range cases {
		if got := DelayQueueName("q", d); got != want {
			t.Errorf("DelayQueueName(%s) = %q, want %q", d, got, want)
		}
	}
}

func FuzzIntHeader(f *testing.F) {
	for _, s := range []string{"0", "12", "-3", "99999999999", " 4", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n := intHeader(amqp.Table{"k": s}, "k"); n < 0 {
			t.Fatalf("intHeader(%q) = %d", s, n)
		}
	})
}
