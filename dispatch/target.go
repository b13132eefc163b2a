package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/metrics"
	"github.com/vsm-relay/relay/retrybudget"
)

// kind is how one attempt at a downstream ended.
type kind uint8

const (
	kindSuccess   kind = iota // 2xx
	kindRetryable             // transport error, timeout, 408, 429, 5xx, our own pool full
	kindPermanent             // any other status, a body too large
)

// result is one attempt's outcome.
type result struct {
	kind        kind
	status      int // 0 when no response was seen
	body        []byte
	contentType string
	retryAfter  time.Duration
	reason      string // readable, for x-relay-error and breaker reasons
	// breakerOutcome is what the attempt tells the target's breaker.
	breakerOutcome breaker.Outcome
	// local marks a result made before any request (our own pool was
	// full): it spends no attempt.
	local bool
}

// TargetSpec describes a downstream HTTP service for NewTarget.
type TargetSpec struct {
	Name    string
	URL     string
	Method  string
	Timeout time.Duration
	// Headers are sent on every request, ${VAR} references expanded.
	Headers http.Header
	// MaxRequestBytes: a task body over it is dead-lettered unsent.
	MaxRequestBytes int64
	// MaxResponseBytes: a response body over it is a permanent failure.
	MaxResponseBytes int64
	Client           *http.Client
	Guard            Guard
	// Backoff paces the in-process retries of a task.
	Backoff backoff.Policy
	// Budget bounds the in-process retries to a share of the target's
	// calls. Nil: no bound beyond Backoff's.
	Budget *retrybudget.Budget
	// BudgetExhausted is told when the budget refuses a retry; the task
	// takes its next redelivery step instead. Nil: none.
	BudgetExhausted func(target string, s retrybudget.Snapshot)
	// Metrics are the target's; nil: unregistered ones.
	Metrics   *metrics.TargetMetrics
	UserAgent string
}

// NewTarget returns the target s describes.
func NewTarget(s TargetSpec) *Target {
	if s.Metrics == nil {
		var detached *metrics.Metrics
		s.Metrics = detached.Target(s.Name)
	}
	return &Target{
		name: s.Name, url: s.URL, method: s.Method, timeout: s.Timeout, headers: s.Headers,
		maxReq: s.MaxRequestBytes, maxResp: s.MaxResponseBytes, client: s.Client,
		Guard: s.Guard, policy: s.Backoff, m: s.Metrics, userAgent: s.UserAgent,
		budget: s.Budget, exhausted: s.BudgetExhausted,
	}
}

// Name returns the target's name.
func (t *Target) Name() string { return t.name }

// Target is a downstream HTTP service and the protections around it. It is
// safe for concurrent use.
type Target struct {
	name    string
	url     string
	method  string
	timeout time.Duration
	headers http.Header
	maxReq  int64
	maxResp int64
	client  *http.Client
	Guard
	policy    backoff.Policy
	budget    *retrybudget.Budget
	exhausted func(target string, s retrybudget.Snapshot)
	m         *metrics.TargetMetrics
	userAgent string
}

// Budget returns the target's retry budget; nil for a nil target.
func (t *Target) Budget() *retrybudget.Budget {
	if t == nil {
		return nil
	}
	return t.budget
}

// firstAttempt records a delivery's first attempt in the retry budget.
func (t *Target) firstAttempt() {
	if t.budget != nil {
		t.budget.Call()
	}
}

// mayRetry asks the retry budget for one in-process retry; a refusal is
// counted and reported.
func (t *Target) mayRetry() bool {
	if t.budget == nil || t.budget.TryRetry() {
		return true
	}
	t.m.BudgetExhausted.Inc()
	if t.exhausted != nil {
		t.exhausted(t.name, t.budget.Snapshot())
	}
	return false
}

// task is what a request is made of.
type task struct {
	body          []byte
	contentType   string
	correlationID string
	messageID     string
	traceparent   string
	tracestate    string
}

// call makes one request to the target. It never returns an error: every
// way a request can end is a result.
func (t *Target) call(ctx context.Context, tk *task) result {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, t.method, t.url, bytes.NewReader(tk.body))
	if err != nil {
		return result{kind: kindPermanent, reason: fmt.Sprintf("building request for target %s: %v", t.name, err), breakerOutcome: breaker.Neutral}
	}
	for k, vs := range t.headers {
		req.Header[k] = vs
	}
	// The task's header values share one backing array, one allocation
	// rather than one per header (what Header.Set costs). Each value is a
	// full slice expression, so that an append to one cannot write into
	// the next, and each key is in canonical form, as Set would make it.
	vals := make([]string, 0, 6)
	set := func(key, v string) {
		vals = append(vals, v)
		n := len(vals)
		req.Header[key] = vals[n-1 : n : n]
	}
	if tk.contentType != "" {
		set("Content-Type", tk.contentType)
	}
	if tk.correlationID != "" {
		set("X-Correlation-Id", tk.correlationID)
	}
	if tk.messageID != "" {
		set("Idempotency-Key", tk.messageID)
	}
	if tk.traceparent != "" {
		set("Traceparent", tk.traceparent)
		if tk.tracestate != "" {
			set("Tracestate", tk.tracestate)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		set("User-Agent", t.userAgent)
	}

	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		t.m.RequestDuration.Observe(time.Since(start).Seconds())
		t.m.Responses(0).Inc()
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			// Our caller went away (shutdown): not the downstream's fault.
			return result{kind: kindRetryable, reason: "request cancelled by shutdown", breakerOutcome: breaker.Neutral}
		}
		return result{kind: kindRetryable, reason: t.transportReason(err), breakerOutcome: breaker.Failure}
	}
	defer resp.Body.Close()
	body, tooLarge, readErr := readLimited(resp.Body, t.maxResp)
	t.m.RequestDuration.Observe(time.Since(start).Seconds())
	t.m.Responses(resp.StatusCode).Inc()
	if readErr != nil {
		return result{kind: kindRetryable, status: resp.StatusCode, reason: t.transportReason(readErr), breakerOutcome: breaker.Failure}
	}
	return t.classify(resp, body, tooLarge)
}

func (t *Target) classify(resp *http.Response, body []byte, tooLarge bool) result {
	code := resp.StatusCode
	r := result{status: code, body: body, contentType: resp.Header.Get("Content-Type")}
	switch {
	case tooLarge:
		r.kind, r.breakerOutcome = kindPermanent, breaker.Neutral
		r.body = nil
		r.reason = fmt.Sprintf("HTTP %d from target %s with a body over the %d-byte limit", code, t.name, t.maxResp)
	case code >= 200 && code < 300:
		r.kind, r.breakerOutcome = kindSuccess, breaker.Success
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		r.kind, r.breakerOutcome = kindRetryable, breaker.Failure
		r.reason = statusReason(t.name, code, body)
		if d, ok := backoff.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			r.retryAfter = d
		}
	default:
		// A 4xx (or an unfollowed 3xx) is about the task, not the
		// downstream's health: permanent, and neutral for the breaker.
		r.kind, r.breakerOutcome = kindPermanent, breaker.Neutral
		r.reason = statusReason(t.name, code, body)
	}
	return r
}

func statusReason(target string, code int, body []byte) string {
	reason := fmt.Sprintf("HTTP %d %s from target %s", code, http.StatusText(code), target)
	if snippet := bodySnippet(body); snippet != "" {
		reason += ": " + snippet
	}
	return reason
}

// bodySnippet keeps the start of an error body readable in a header.
func bodySnippet(b []byte) string {
	const max = 200
	s := strings.TrimSpace(strings.ToValidUTF8(string(b[:min(len(b), max*2)]), "?"))
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

func (t *Target) transportReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no response from target %s within %s", t.name, t.timeout)
	}
	// url.Error repeats the URL, which may hold credentials: keep the cause.
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			err = inner
		}
	}
	return fmt.Sprintf("request to target %s failed: %v", t.name, err)
}

// readLimited reads at most limit bytes; tooLarge reports a longer body.
func readLimited(r io.Reader, limit int64) (body []byte, tooLarge bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(body)) > limit {
		return nil, true, nil
	}
	return body, false, nil
}

// attempt makes one protected request. A pool rejection is a retryable
// result that spends no attempt; an open breaker is errBreakerOpen.
func (t *Target) attempt(ctx context.Context, tk *task) (result, error) {
	var res result
	err := t.run(ctx, func() (breaker.Outcome, error) {
		res = t.call(ctx, tk)
		if res.breakerOutcome == breaker.Failure {
			return breaker.Failure, errors.New(shortReason(res))
		}
		return res.breakerOutcome, nil
	})
	var rej *poolRejection
	if errors.As(err, &rej) {
		return result{kind: kindRetryable, breakerOutcome: breaker.Neutral, local: true, reason: rej.Error()}, nil
	}
	return res, err
}

// shortReason is what the breaker remembers as its last failure.
func shortReason(r result) string {
	if r.status != 0 {
		return fmt.Sprintf("HTTP %d", r.status)
	}
	return r.reason
}
