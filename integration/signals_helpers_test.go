package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/config"
)

// This file holds what the signal tests share: a strict reader of
// algedonic events and health reports, a reader of the Prometheus text
// format, and a TCP proxy that can refuse the relay's reconnects, so that
// the broker stays unreachable for as long as a test needs.

// signalYAML is a configuration with one target at url and one work
// queue; every section is the caller's.
func signalYAML(queue, url, breakerExtra, pool, backoffExtra, targetExtra, redelivery string) string {
	return fmt.Sprintf(`breakers:
  defaults: {failure_threshold: 1000, success_threshold: 2, reset_timeout: 500ms, half_open_timeout: 5s, window_size: 60s, timeout: 5s}
  downstream: {%s}
bulkheads:
  pool: %s
backoff:
  defaults: {initial: 10ms, max: 50ms, multiplier: 2, jitter: full, max_retries: 0}
  downstream: {%s}
targets:
  svc: {url: %q, timeout: 2s, breaker: downstream, bulkhead: pool, backoff: downstream%s}
work:
  - {queue: %s, target: svc, redelivery: [%s]}
outbound: []
`, breakerExtra, pool, backoffExtra, url, targetExtra, queue, redelivery)
}

// signalEvent is one algedonic event as it arrived, after every field was
// checked.
type signalEvent struct {
	Signal, Source, Name, Event, Severity, Reason, Instance string
	Intensity                                               float64
	Count                                                   int
	At                                                      time.Time
	Details                                                 map[string]any
	Key, Exchange                                           string
}

// contractEvents are the (source, event) pairs of the contract and the
// signal each carries.
var contractEvents = map[[2]string]string{
	{"breaker", "open"}: "pain", {"breaker", "closed"}: "pleasure",
	{"bulkhead", "rejected"}: "pain", {"queue", "dead_lettered"}: "pain",
	{"health", "degraded"}: "pain", {"health", "unhealthy"}: "pain", {"health", "healthy"}: "pleasure",
	{"amqp", "blocked"}: "pain", {"amqp", "lost"}: "pain", {"amqp", "restored"}: "pleasure",
	// Extensions: sections 8 and 9, and the operator's queue controls.
	{"target", "retry_budget_exhausted"}: "pain",
	{"queue", "paused"}:                  "pain", {"queue", "resumed"}: "pleasure",
	{"config", "refused"}: "pain", {"config", "applied"}: "pleasure",
}

var eventFields = []string{"at", "count", "details", "event", "instance", "intensity", "name", "reason", "severity", "signal", "source"}

// decodeSignals checks every delivery against the contract (section 5)
// and returns the events in arrival order. since bounds how old an
// event's time may be.
func decodeSignals(t *testing.T, cfg *config.Config, since time.Time, ds []amqp.Delivery) []signalEvent {
	t.Helper()
	out := make([]signalEvent, 0, len(ds))
	for _, d := range ds {
		out = append(out, decodeSignal(t, cfg, since, d))
	}
	return out
}

func decodeSignal(t *testing.T, cfg *config.Config, since time.Time, d amqp.Delivery) signalEvent {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(d.Body, &raw); err != nil {
		t.Fatalf("event %s is not a JSON object: %v: %s", d.RoutingKey, err, d.Body)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, eventFields) {
		t.Errorf("event %s has fields %v, want exactly %v", d.RoutingKey, keys, eventFields)
	}
	str := func(k string) string {
		s, ok := raw[k].(string)
		if !ok {
			t.Errorf("event %s: %s is %T, want a string: %s", d.RoutingKey, k, raw[k], d.Body)
		}
		return s
	}
	num := func(k string) float64 {
		v, ok := raw[k].(float64)
		if !ok {
			t.Errorf("event %s: %s is %T, want a number: %s", d.RoutingKey, k, raw[k], d.Body)
		}
		return v
	}
	ev := signalEvent{
		Signal: str("signal"), Source: str("source"), Name: str("name"), Event: str("event"),
		Severity: str("severity"), Reason: str("reason"), Instance: str("instance"),
		Intensity: num("intensity"), Key: d.RoutingKey, Exchange: d.Exchange,
	}
	count := num("count")
	ev.Count = int(count)
	if float64(ev.Count) != count || ev.Count < 1 {
		t.Errorf("event %s: count %v, want an integer >= 1", d.RoutingKey, count)
	}
	det, ok := raw["details"].(map[string]any)
	if !ok {
		t.Errorf("event %s: details is %T, want an object: %s", d.RoutingKey, raw["details"], d.Body)
	}
	ev.Details = det
	at := str("at")
	var err error
	if ev.At, err = time.Parse(time.RFC3339Nano, at); err != nil {
		t.Errorf("event %s: at %q does not parse: %v", d.RoutingKey, at, err)
	} else if _, err := time.Parse(algedonic.TimeLayout, at); err != nil || !strings.HasSuffix(at, "Z") {
		t.Errorf("event %s: at %q is not UTC with milliseconds", d.RoutingKey, at)
	}
	if now := time.Now(); ev.At.Before(since.Add(-time.Second)) || ev.At.After(now.Add(time.Second)) {
		t.Errorf("event %s: at %s is not between the test's start %s and now %s", d.RoutingKey, at, since.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	}

	if d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent {
		t.Errorf("event %s: content type %q, delivery mode %d; want application/json, persistent", d.RoutingKey, d.ContentType, d.DeliveryMode)
	}
	want, known := contractEvents[[2]string{ev.Source, ev.Event}]
	switch {
	case !known:
		t.Errorf("event %s: source %q, event %q is not in the contract", d.RoutingKey, ev.Source, ev.Event)
	case ev.Signal != want:
		t.Errorf("event %s: signal %q, want %q", d.RoutingKey, ev.Signal, want)
	}
	exchange := cfg.Algedonic.PainExchange
	if ev.Signal == "pleasure" {
		exchange = cfg.Algedonic.PleasureExchange
	}
	if d.Exchange != exchange {
		t.Errorf("event %s (%s) arrived through exchange %q, want %q", d.RoutingKey, ev.Signal, d.Exchange, exchange)
	}
	if key := algedonic.RoutingWord(ev.Source) + "." + algedonic.RoutingWord(ev.Name) + "." + algedonic.RoutingWord(ev.Event); d.RoutingKey != key {
		t.Errorf("routing key %q, want <source>.<name>.<event> = %q", d.RoutingKey, key)
	}
	if !slices.Contains([]string{"info", "warning", "critical"}, ev.Severity) {
		t.Errorf("event %s: severity %q", d.RoutingKey, ev.Severity)
	}
	if !(ev.Intensity >= 0 && ev.Intensity <= 1) {
		t.Errorf("event %s: intensity %v outside [0, 1]", d.RoutingKey, ev.Intensity)
	}
	if ev.Reason == "" {
		t.Errorf("event %s: empty reason", d.RoutingKey)
	}
	if ev.Instance != cfg.Instance {
		t.Errorf("event %s: instance %q, want %q", d.RoutingKey, ev.Instance, cfg.Instance)
	}
	return ev
}

// keyed returns the events with routing key key, in arrival order.
func keyed(evs []signalEvent, key string) []signalEvent {
	var out []signalEvent
	for _, ev := range evs {
		if ev.Key == key {
			out = append(out, ev)
		}
	}
	return out
}

// onlyKeys fails unless every event's routing key is one of keys.
func onlyKeys(t *testing.T, evs []signalEvent, keys ...string) {
	t.Helper()
	for _, ev := range evs {
		if !slices.Contains(keys, ev.Key) {
			hint := ""
			if ev.Key == "amqp.broker.blocked" {
				hint = " (the broker raised a resource alarm during the test: is something else setting alarms on this broker?)"
			}
			t.Errorf("unexpected event %s (%s): %s%s", ev.Key, ev.Signal, ev.Reason, hint)
		}
	}
}

// checkBreakerOpen checks the documented severity and intensity of a
// breaker's opening.
func checkBreakerOpen(t *testing.T, ev signalEvent) {
	t.Helper()
	from, _ := ev.Details["from"].(string)
	rate, _ := ev.Details["failure_rate"].(float64)
	floor := map[string]float64{"closed": 0.5, "half_open": 0.75}[from]
	if floor == 0 {
		t.Errorf("breaker open event: details.from %q, want closed or half_open", ev.Details["from"])
	}
	// Graded by what the breaker saw: from the floor of its kind of
	// opening up to 1, at least as far up as its failure rate takes it.
	least := floor + (1-floor)*rate
	if ev.Severity != "critical" || ev.Intensity < least-1e-9 || ev.Intensity > 1 {
		t.Errorf("breaker open from %s: severity %s intensity %v, want critical in [%v, 1]", from, ev.Severity, ev.Intensity, least)
	}
}

func checkBreakerClosed(t *testing.T, ev signalEvent) {
	t.Helper()
	if ev.Severity != "info" || ev.Intensity != 0.5 {
		t.Errorf("breaker closed: severity %s intensity %v, want info 0.5", ev.Severity, ev.Intensity)
	}
}

// checkHealthEvents checks health events against the rules of the health
// and algedonic packages: each is a change of status (from != to) with the
// documented severity and intensity; together they lead from healthy back
// to healthy (every status is left as often as it is entered, whatever
// order two simultaneous evaluations handed them over in), and the last
// to arrive is healthy. It returns how many led to each status.
func checkHealthEvents(t *testing.T, evs []signalEvent) map[string]int {
	t.Helper()
	var health []signalEvent
	for _, ev := range evs {
		if ev.Source == "health" {
			health = append(health, ev)
		}
	}
	to := map[string]int{}
	balance := map[string]int{}
	for _, ev := range health {
		from, _ := ev.Details["from"].(string)
		dest, _ := ev.Details["to"].(string)
		share, _ := ev.Details["unhealthy_share"].(float64)
		if ev.Name != "overall" || dest != ev.Event || from == dest || from == "" {
			t.Errorf("health event %s: name %q, details %v", ev.Key, ev.Name, ev.Details)
		}
		to[dest]++
		balance[dest]++
		balance[from]--
		var sev string
		var intensity float64
		switch dest {
		case "unhealthy":
			sev, intensity = "critical", math.Max(0.8, share)
		case "degraded":
			sev, intensity = "warning", math.Max(0.3, share)
		case "healthy":
			sev, intensity = "info", 0.4
			if from == "unhealthy" {
				intensity = 0.8
			}
		}
		if ev.Severity != sev || ev.Intensity != intensity {
			t.Errorf("health %s -> %s: severity %s intensity %v, want %s %v", from, dest, ev.Severity, ev.Intensity, sev, intensity)
		}
	}
	for s, b := range balance {
		if b != 0 {
			t.Errorf("health events do not lead from healthy back to healthy: %s entered %+d times more than left; events %v", s, b, healthTrail(health))
		}
	}
	if len(health) == 0 || health[len(health)-1].Event != "healthy" {
		t.Errorf("last health event is not healthy: %v", healthTrail(health))
	}
	return to
}

func healthTrail(evs []signalEvent) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%v->%s", ev.Details["from"], ev.Event))
	}
	return out
}

// countsBy sums event counts per (signal, source), to compare with
// relay_algedonic_signals_total.
func countsBy(evs []signalEvent) map[[2]string]int {
	out := map[[2]string]int{}
	for _, ev := range evs {
		out[[2]string{ev.Signal, ev.Source}] += ev.Count
	}
	return out
}

// checkSignalMetrics checks that relay_algedonic_signals_total holds, per
// signal and source, the sum of the counts of the events that arrived,
// and that every published event arrived.
func checkSignalMetrics(t *testing.T, m promText, evs []signalEvent) {
	t.Helper()
	got := countsBy(evs)
	for _, s := range m.all("relay_algedonic_signals_total") {
		k := [2]string{s.labels["signal"], s.labels["source"]}
		if int(s.value) != got[k] {
			t.Errorf("relay_algedonic_signals_total{signal=%q,source=%q} = %v, events arrived with counts adding up to %d", k[0], k[1], s.value, got[k])
		}
		delete(got, k)
	}
	for k, n := range got {
		t.Errorf("%d %s/%s events arrived but relay_algedonic_signals_total has no such series", n, k[0], k[1])
	}
	if p := m.get(t, "relay_algedonic_published_total"); int(p) != len(evs) {
		t.Errorf("relay_algedonic_published_total = %v, %d events arrived", p, len(evs))
	}
}

// settled waits until every event the relay published has arrived and
// none is pending, and returns the metrics of that moment.
func settled(t *testing.T, run *running, ev *replies) promText {
	t.Helper()
	var m promText
	eventually(t, 20*time.Second, "every published event arrived, none pending", func() bool {
		m = scrape(t, run)
		return m.get(t, "relay_algedonic_pending") == 0 && int(m.get(t, "relay_algedonic_published_total")) == ev.count()
	})
	return m
}

// healthBody is a /health answer or a periodic health report.
type healthBody struct {
	Overall         string `json:"overall"`
	Instance        string `json:"instance"`
	At              string `json:"at"`
	AMQP            struct{ Connected, Blocked bool }
	CircuitBreakers map[string]struct {
		State        string `json:"state"`
		FailureCount int    `json:"failure_count"`
		SuccessCount int    `json:"success_count"`
	} `json:"circuit_breakers"`
	Bulkheads map[string]struct {
		Available, Busy, Waiting, Capacity int
		Rejected                           uint64
	} `json:"bulkheads"`
	Reasons []string `json:"reasons"`
}

// parseHealth checks body against the contract's /health shape (section
// 6) and returns it decoded.
func parseHealth(t *testing.T, cfg *config.Config, since time.Time, body string) healthBody {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatalf("health is not a JSON object: %v: %s", err, body)
	}
	fields := func(where string, v any, want map[string]string) {
		obj, ok := v.(map[string]any)
		if !ok {
			t.Errorf("health %s is %T, want an object: %s", where, v, body)
			return
		}
		for k, typ := range want {
			var ok bool
			switch typ {
			case "string":
				_, ok = obj[k].(string)
			case "bool":
				_, ok = obj[k].(bool)
			case "number":
				_, ok = obj[k].(float64)
			case "object":
				_, ok = obj[k].(map[string]any)
			}
			if !ok {
				t.Errorf("health %s.%s is %T, want a %s: %s", where, k, obj[k], typ, body)
			}
		}
	}
	fields("", raw, map[string]string{"overall": "string", "instance": "string", "at": "string", "amqp": "object", "circuit_breakers": "object", "bulkheads": "object"})
	fields("amqp", raw["amqp"], map[string]string{"connected": "bool", "blocked": "bool"})
	if cbs, ok := raw["circuit_breakers"].(map[string]any); ok {
		for name, v := range cbs {
			fields("circuit_breakers."+name, v, map[string]string{"state": "string", "failure_count": "number", "success_count": "number"})
		}
	}
	if bhs, ok := raw["bulkheads"].(map[string]any); ok {
		for name, v := range bhs {
			fields("bulkheads."+name, v, map[string]string{"available": "number", "busy": "number", "waiting": "number", "capacity": "number"})
		}
	}
	var h healthBody
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("decoding health: %v", err)
	}
	if !slices.Contains([]string{"healthy", "degraded", "unhealthy"}, h.Overall) {
		t.Errorf("health overall %q", h.Overall)
	}
	if h.Instance != cfg.Instance {
		t.Errorf("health instance %q, want %q", h.Instance, cfg.Instance)
	}
	at, err := time.Parse(time.RFC3339Nano, h.At)
	if err != nil {
		t.Errorf("health at %q: %v", h.At, err)
	} else if now := time.Now(); at.Before(since.Add(-time.Second)) || at.After(now.Add(time.Second)) {
		t.Errorf("health at %s is not recent", h.At)
	}
	for name, b := range h.CircuitBreakers {
		if !slices.Contains([]string{"closed", "open", "half_open"}, b.State) {
			t.Errorf("health circuit_breakers.%s.state %q", name, b.State)
		}
	}
	for name, b := range h.Bulkheads {
		if b.Available+b.Busy != b.Capacity || b.Waiting < 0 {
			t.Errorf("health bulkheads.%s: available %d + busy %d != capacity %d (waiting %d)", name, b.Available, b.Busy, b.Capacity, b.Waiting)
		}
	}
	return h
}

// getHealth reads /health and checks its status code against overall.
func getHealth(t *testing.T, cfg *config.Config, since time.Time, run *running) (int, healthBody) {
	t.Helper()
	code, body := run.get(t, "/health")
	h := parseHealth(t, cfg, since, body)
	want := 200
	if h.Overall == "unhealthy" {
		want = 503
	}
	if code != want {
		t.Errorf("/health answered %d with overall %s, want %d", code, h.Overall, want)
	}
	return code, h
}

// healthReports is a private queue bound with "health.#" to the test's
// health exchange, and every report that arrived on it.
func healthReports(e *env, cfg *config.Config) *replies {
	e.t.Helper()
	return e.subscribe("health.#", cfg.Health.Exchange)
}

// promSample is one line of the Prometheus text format.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

type promText []promSample

// scrape reads /metrics.
func scrape(t *testing.T, run *running) promText {
	t.Helper()
	code, body := run.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics answered %d", code)
	}
	m, err := parsePromText(body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return m
}

func parsePromText(body string) (promText, error) {
	var out promText
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := promSample{labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			return nil, fmt.Errorf("line without a value: %q", line)
		}
		s.name, line = line[:i], line[i:]
		if line[0] == '{' {
			rest, err := parseLabels(line[1:], s.labels)
			if err != nil {
				return nil, fmt.Errorf("%w in %q", err, sc.Text())
			}
			line = rest
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return nil, fmt.Errorf("line without a value: %q", sc.Text())
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", sc.Text(), err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels reads `k="v",...}` into into and returns what follows.
func parseLabels(s string, into map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, ", ")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return "", fmt.Errorf("bad labels")
		}
		key := s[:eq]
		s = s[eq+2:]
		var v strings.Builder
		for {
			if s == "" {
				return "", fmt.Errorf("unterminated label value")
			}
			c := s[0]
			s = s[1:]
			if c == '"' {
				break
			}
			if c == '\\' && s != "" {
				switch s[0] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(s[0])
				}
				s = s[1:]
				continue
			}
			v.WriteByte(c)
		}
		into[key] = v.String()
	}
}

// all returns the samples of name whose labels include the given
// key, value pairs.
func (m promText) all(name string, kv ...string) []promSample {
	var out []promSample
next:
	for _, s := range m {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// get returns the one sample of name with the given labels, failing the
// test when there is none or more than one.
func (m promText) get(t *testing.T, name string, kv ...string) float64 {
	t.Helper()
	ss := m.all(name, kv...)
	if len(ss) != 1 {
		t.Fatalf("/metrics has %d samples of %s%v, want 1", len(ss), name, kv)
	}
	return ss[0].value
}

// sum adds the samples of name with the given labels.
func (m promText) sum(name string, kv ...string) float64 {
	total := 0.0
	for _, s := range m.all(name, kv...) {
		total += s.value
	}
	return total
}

// gateProxy forwards TCP connections to the broker and, while held,
// refuses new ones (it accepts and closes them at once), so a relay
// connection that is cut cannot come back until the test releases it.
// Connections are numbered in the order they were forwarded.
type gateProxy struct {
	t        *testing.T
	ln       net.Listener
	upstream string
	held     atomic.Bool

	mu    sync.Mutex
	links []*proxyLink
	wg    sync.WaitGroup
}

type proxyLink struct {
	client, server net.Conn
	once           sync.Once
}

func (l *proxyLink) close() {
	l.once.Do(func() {
		l.client.Close()
		l.server.Close()
	})
}

func newGateProxy(t *testing.T, brokerURL string) *gateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gateProxy{t: t, ln: ln, upstream: brokerAddr(t, brokerURL)}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// url is brokerURL with its host replaced by the proxy's address.
func (p *gateProxy) url(brokerURL string) string {
	return withHost(p.t, brokerURL, p.ln.Addr().String())
}

func (p *gateProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.held.Load() {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		l := &proxyLink{client: c, server: s}
		p.mu.Lock()
		p.links = append(p.links, l)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, c, s)
		go p.pipe(l, s, c)
	}
}

func (p *gateProxy) pipe(l *proxyLink, dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	l.close()
}

// hold refuses new connections until release.
func (p *gateProxy) hold()    { p.held.Store(true) }
func (p *gateProxy) release() { p.held.Store(false) }

// cut closes the i-th forwarded connection.
func (p *gateProxy) cut(i int) {
	p.mu.Lock()
	l := p.links[i]
	p.mu.Unlock()
	l.close()
}

func (p *gateProxy) forwarded() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

func (p *gateProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, l := range p.links {
		l.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
