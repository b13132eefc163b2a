package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vsm-relay/relay/internal/fielderr"
)

// Limits that keep the broker and the relay's tables happy.
const (
	maxPrefetch      = 65535                          // basic.qos prefetch-count is 16 bits
	maxNameBytes     = 255                            // AMQP short strings
	maxInstanceBytes = 200                            // leaves room in "health.<instance>"
	maxConcurrency   = 1 << 16                        // as many as a bulkhead can hold
	maxBuffer        = 1_000_000                      // events kept in memory
	maxTTL           = (1<<32 - 1) * time.Millisecond // RabbitMQ's x-message-ttl
	maxDeliveryLimit = 1_000_000                      // deliveries of one task
	dlqSuffix        = ".dlq"
)

// Validate reports every problem of c, each as a *fielderr.Error keyed by
// its path in the file ("targets.echo.breaker", "work[0].redelivery[1]"),
// sorted by key. Messages never hold a password or a header value.
func (c *Config) Validate() error {
	var l fielderr.List
	if c.Instance != "" {
		if msg := checkWord(c.Instance); msg != "" {
			l.Addf("instance", "%s", msg)
		}
	}
	positive(&l, "shutdown_timeout", c.ShutdownTimeout)
	c.validateAMQP(&l)
	if msg := checkListen(c.HTTP.Listen); msg != "" {
		l.Addf("http.listen", "%s", msg)
	}
	if msg := checkToken(c.HTTP.AdminToken); msg != "" {
		l.Addf("http.admin_token", "%s", msg)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Breakers)) {
		validateName(&l, "breakers", name)
		l.Merge("breakers."+name, c.Breakers[name].Validate())
	}
	for _, name := range slices.Sorted(maps.Keys(c.Bulkheads)) {
		validateName(&l, "bulkheads", name)
		l.Merge("bulkheads."+name, c.Bulkheads[name].Validate())
	}
	for _, name := range slices.Sorted(maps.Keys(c.Backoff)) {
		validateName(&l, "backoff", name)
		l.Merge("backoff."+name, c.Backoff[name].Validate())
	}
	for _, name := range slices.Sorted(maps.Keys(c.Targets)) {
		validateName(&l, "targets", name)
		c.validateTarget(&l, "targets."+name, c.Targets[name])
	}
	c.validateQueues(&l)
	c.validateEvents(&l)
	return l.Err()
}

func validateName(l *fielderr.List, section, name string) {
	if name == defaultsEntry && (section == "breakers" || section == "backoff") {
		l.Addf(section+"."+name, "%q is the base of the other entries, not an entry itself", name)
		return
	}
	if msg := checkName(name); msg != "" {
		l.Addf(section+"."+name, "%s", msg)
	}
}

func positive(l *fielderr.List, key string, d time.Duration) {
	if d <= 0 {
		l.Addf(key, "must be above zero, got %s", formatDuration(d))
	}
}

func (c *Config) validateAMQP(l *fielderr.List) {
	a := c.AMQP
	if msg := checkBrokerURLs(a.URL); msg != "" {
		l.Addf("amqp.url", "%s", msg)
	}
	positive(l, "amqp.connect_timeout", a.ConnectTimeout)
	checkPrefetch(l, "amqp.prefetch", a.Prefetch, false)
	positive(l, "amqp.reconnect.initial", a.Reconnect.Initial)
	positive(l, "amqp.reconnect.max", a.Reconnect.Max)
	if a.Reconnect.Initial > 0 && a.Reconnect.Max > 0 && a.Reconnect.Max < a.Reconnect.Initial {
		l.Addf("amqp.reconnect.max", "must not be less than initial (%s), got %s",
			formatDuration(a.Reconnect.Initial), formatDuration(a.Reconnect.Max))
	}
	if msg := checkQueueType(a.QueueType); msg != "" {
		l.Addf("amqp.queue_type", "%s", msg)
	}
	checkDeliveryLimit(l, "amqp.delivery_limit", a.DeliveryLimit, false)
	if a.Heartbeat < 0 {
		l.Addf("amqp.heartbeat", "must not be negative, got %s", formatDuration(a.Heartbeat))
	}
	for _, f := range []struct{ key, path string }{
		{"amqp.tls.ca_file", a.TLS.CAFile},
		{"amqp.tls.cert_file", a.TLS.CertFile},
		{"amqp.tls.key_file", a.TLS.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		switch info, err := os.Stat(f.path); {
		case errors.Is(err, fs.ErrNotExist):
			l.Addf(f.key, "file %q does not exist", f.path)
		case err != nil:
			l.Addf(f.key, "cannot read file %q: %v", f.path, errors.Unwrap(err))
		case info.IsDir():
			l.Addf(f.key, "%q is a directory, not a file", f.path)
		}
	}
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		if a.TLS.CertFile == "" {
			l.Addf("amqp.tls.cert_file", "is needed with key_file: give both or neither")
		} else {
			l.Addf("amqp.tls.key_file", "is needed with cert_file: give both or neither")
		}
	}
}

// checkQueueType checks a queue type; an entry's may be "" (amqp's).
func checkQueueType(t string) string {
	switch t {
	case QueueClassic, QueueQuorum:
		return ""
	case "":
		return fmt.Sprintf("is required: %s or %s", QueueClassic, QueueQuorum)
	}
	return fmt.Sprintf("must be %s or %s, got %q", QueueClassic, QueueQuorum, clip(t))
}

func checkDeliveryLimit(l *fielderr.List, key string, n int, zeroOK bool) {
	low := 1
	if zeroOK {
		low = 0
	}
	if n < low || n > maxDeliveryLimit {
		l.Addf(key, "must be from %d to %d, got %d", low, maxDeliveryLimit, n)
	}
}

func checkPrefetch(l *fielderr.List, key string, n int, zeroOK bool) {
	low := 1
	if zeroOK {
		low = 0
	}
	if n < low || n > maxPrefetch {
		l.Addf(key, "must be from %d to %d, got %d", low, maxPrefetch, n)
	}
}

func (c *Config) validateTarget(l *fielderr.List, key string, t Target) {
	if msg := checkURL(t.URL, "http", "https"); msg != "" {
		l.Addf(key+".url", "%s", msg)
	}
	if !isToken(t.Method) {
		l.Addf(key+".method", "must be an HTTP method, like POST, got %q", clip(t.Method))
	}
	positive(l, key+".timeout", t.Timeout)
	for _, name := range slices.Sorted(maps.Keys(t.Headers)) {
		hk := key + ".headers." + name
		if !isToken(name) {
			l.Addf(hk, "a header name is an HTTP token (letters, digits and !#$%%&'*+-^_`|~)")
		}
		if msg := checkHeaderValue(t.Headers[name]); msg != "" {
			l.Addf(hk, "%s", msg)
		} else if _, _, msg := expand(t.Headers[name], func(string) (string, bool) { return "", true }); msg != "" {
			l.Addf(hk, "%s", msg)
		}
	}
	checkRef(l, key+".breaker", "breaker", t.Breaker, slices.Sorted(maps.Keys(c.Breakers)))
	checkRef(l, key+".bulkhead", "bulkhead", t.Bulkhead, slices.Sorted(maps.Keys(c.Bulkheads)))
	checkRef(l, key+".backoff", "backoff policy", t.Backoff, slices.Sorted(maps.Keys(c.Backoff)))
	if t.MaxRequestBytes < 1 {
		l.Addf(key+".max_request_bytes", "must be at least 1, got %d", t.MaxRequestBytes)
	}
	if t.MaxResponseBytes < 1 {
		l.Addf(key+".max_response_bytes", "must be at least 1, got %d", t.MaxResponseBytes)
	}
	if t.Concurrency < 0 || t.Concurrency > maxConcurrency {
		l.Addf(key+".concurrency", "must be from 0 (the bulkhead's capacity) to %d, got %d", maxConcurrency, t.Concurrency)
	}
	l.Merge(key+".retry_budget", t.RetryBudget.Validate())
}

// checkRef reports a missing or unknown reference, listing what exists.
func checkRef(l *fielderr.List, key, what, name string, have []string) {
	if name != "" {
		i := sort.SearchStrings(have, name)
		if i < len(have) && have[i] == name {
			return
		}
	}
	list := "none"
	if len(have) > 0 {
		shown := have
		if len(shown) > 12 {
			shown = shown[:12]
		}
		list = strings.Join(shown, ", ")
		if len(have) > len(shown) {
			list += ", ..."
		}
	}
	if name == "" {
		l.Addf(key, "is required: name a %s (have: %s)", what, list)
		return
	}
	l.Addf(key, "unknown %s %q (have: %s)", what, clip(name), list)
}

func (c *Config) validateQueues(l *fielderr.List) {
	owner := make(map[string]string) // queue name -> key that declares it
	declare := func(key, q string) {
		if msg := checkQueue(q); msg != "" {
			l.Addf(key, "%s", msg)
			return
		}
		if first, dup := owner[q]; dup {
			l.Addf(key, "queue %q is already used by %s", q, first)
			return
		}
		owner[q] = key
	}
	for i, w := range c.Work {
		key := fmt.Sprintf("work[%d]", i)
		declare(key+".queue", w.Queue)
		checkRef(l, key+".target", "target", w.Target, slices.Sorted(maps.Keys(c.Targets)))
		for j, d := range w.Redelivery {
			dk := fmt.Sprintf("%s.redelivery[%d]", key, j)
			switch {
			case d < time.Millisecond:
				l.Addf(dk, "must be at least 1ms (message TTLs count milliseconds), got %s", formatDuration(d))
			case d > maxTTL:
				l.Addf(dk, "must be at most %s (the broker's largest message TTL), got %s", formatDuration(maxTTL), formatDuration(d))
			}
		}
		checkPrefetch(l, key+".prefetch", w.Prefetch, true)
		checkEntryQueue(l, key, w.QueueType, w.DeliveryLimit)
	}
	for i, o := range c.Outbound {
		key := fmt.Sprintf("outbound[%d]", i)
		declare(key+".queue", o.Queue)
		if o.URL != "" {
			if msg := checkBrokerURLs(o.URL); msg != "" {
				l.Addf(key+".url", "%s", msg)
			}
		}
		checkRef(l, key+".breaker", "breaker", o.Breaker, slices.Sorted(maps.Keys(c.Breakers)))
		checkRef(l, key+".bulkhead", "bulkhead", o.Bulkhead, slices.Sorted(maps.Keys(c.Bulkheads)))
		if len(o.Exchanges) == 0 {
			l.Addf(key+".exchanges", "must list at least one exchange")
		}
		for j, x := range o.Exchanges {
			if msg := checkExchange(x, false); msg != "" {
				l.Addf(fmt.Sprintf("%s.exchanges[%d]", key, j), "%s", msg)
			}
		}
		checkPrefetch(l, key+".prefetch", o.Prefetch, true)
		checkEntryQueue(l, key, o.QueueType, o.DeliveryLimit)
	}
	// The relay declares <queue>.dlq for every queue; another queue of
	// that name would receive dead letters as work.
	for q, key := range owner {
		if base, ok := strings.CutSuffix(q, dlqSuffix); ok {
			if _, clash := owner[base]; clash {
				l.Addf(key, "queue %q is the dead-letter queue of %s", q, owner[base])
			}
		}
	}
}

// checkEntryQueue checks a work or outbound entry's own queue type and
// delivery limit, where "" and 0 stand for amqp's.
func checkEntryQueue(l *fielderr.List, key, queueType string, limit int) {
	if queueType != "" {
		if msg := checkQueueType(queueType); msg != "" {
			l.Addf(key+".queue_type", "%s", msg)
		}
	}
	checkDeliveryLimit(l, key+".delivery_limit", limit, true)
}

func (c *Config) validateEvents(l *fielderr.List) {
	a := c.Algedonic
	if msg := checkExchange(a.PainExchange, true); msg != "" {
		l.Addf("algedonic.pain_exchange", "%s", msg)
	}
	if msg := checkExchange(a.PleasureExchange, true); msg != "" {
		l.Addf("algedonic.pleasure_exchange", "%s", msg)
	}
	if a.Coalesce < 0 {
		l.Addf("algedonic.coalesce", "must not be negative, got %s", formatDuration(a.Coalesce))
	}
	if a.Buffer < 1 || a.Buffer > maxBuffer {
		l.Addf("algedonic.buffer", "must be from 1 to %d, got %d", maxBuffer, a.Buffer)
	}
	h := c.Health
	if msg := checkExchange(h.Exchange, true); msg != "" {
		l.Addf("health.exchange", "%s", msg)
	}
	positive(l, "health.interval", h.Interval)
	if u := h.DegradedUtilization; !(u > 0 && u <= 1) {
		l.Addf("health.degraded_utilization", "must be above 0 and at most 1, got %s", strconv.FormatFloat(u, 'g', -1, 64))
	}
}

// checkBrokerURLs checks one amqp:// or amqps:// URL, or a comma-separated
// list of them (a cluster's nodes), naming the position of a bad one.
func checkBrokerURLs(s string) string {
	urls := splitURLs(s)
	if len(urls) <= 1 {
		return checkURL(strings.TrimSpace(s), "amqp", "amqps")
	}
	for i, u := range urls {
		if msg := checkURL(u, "amqp", "amqps"); msg != "" {
			return fmt.Sprintf("URL %d of the list %s", i+1, msg)
		}
	}
	return ""
}

// checkURL checks an absolute URL with one of schemes and a host. The
// message never quotes the URL: it may hold a password.
func checkURL(s string, schemes ...string) string {
	if s == "" {
		return "is required"
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		var ee url.EscapeError
		switch {
		case errors.As(err, &ee):
			return "is not a valid URL: it has a bad %-escape"
		case errors.As(err, &ue):
			return "is not a valid URL: " + ue.Err.Error()
		}
		return "is not a valid URL"
	}
	ok := false
	for _, sc := range schemes {
		ok = ok || u.Scheme == sc
	}
	if !ok {
		return fmt.Sprintf("must be an %s:// URL, got scheme %q", strings.Join(schemes, ":// or "), clip(u.Scheme))
	}
	if u.Host == "" || u.Hostname() == "" {
		return "has no host"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("has a bad port %q", clip(p))
		}
	}
	return ""
}

func checkListen(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("must be host:port, like 127.0.0.1:9090, got %q", clip(s))
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Sprintf("has a bad host %q", clip(host))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("has a bad port %q (0 to 65535)", clip(port))
	}
	return ""
}

// checkToken checks a bearer token: printable, no white space, so that it
// fits an Authorization header. The message does not quote it.
func checkToken(s string) string {
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || r > unicode.MaxASCII {
			return "must be printable ASCII without white space (it is sent as a bearer token)"
		}
	}
	return ""
}

// checkWord checks one word of a routing key.
func checkWord(s string) string {
	if len(s) > maxInstanceBytes {
		return fmt.Sprintf("must be at most %d bytes", maxInstanceBytes)
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if r == '.' || r == '#' || r == '*' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Sprintf("must be one routing-key word: no \".\", \"#\", \"*\" or white space, got %q", clip(s))
		}
	}
	return ""
}

// checkQueue checks a queue name the relay declares (and its ".dlq").
func checkQueue(q string) string {
	switch {
	case q == "":
		return "is required"
	case len(q)+len(dlqSuffix) > maxNameBytes:
		return fmt.Sprintf("must be at most %d bytes (with %q added it must fit in %d)", maxNameBytes-len(dlqSuffix), dlqSuffix, maxNameBytes)
	case strings.HasPrefix(q, "amq."):
		return fmt.Sprintf("must not start with \"amq.\" (reserved by the broker), got %q", clip(q))
	case !utf8.ValidString(q):
		return "must be valid UTF-8"
	}
	for _, r := range q {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Sprintf("must not hold white space or control characters, got %q", clip(q))
		}
	}
	return ""
}

// checkExchange checks an exchange name. The relay declares the exchanges
// it publishes events to, and the broker keeps "amq." for itself; an
// outbound entry may still name a predeclared amq.* exchange.
func checkExchange(x string, declared bool) string {
	if x == "" {
		return "is required"
	}
	if len(x) > maxNameBytes {
		return fmt.Sprintf("must be at most %d bytes", maxNameBytes)
	}
	for i := 0; i < len(x); i++ {
		c := x[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return fmt.Sprintf("an exchange name is letters, digits, \"-\", \"_\", \".\" and \":\", got %q", clip(x))
		}
	}
	if declared && strings.HasPrefix(x, "amq.") {
		return fmt.Sprintf("must not start with \"amq.\" (reserved by the broker), got %q", x)
	}
	return ""
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// checkHeaderValue refuses what would split or end a header line. The
// message does not quote the value: it may be a secret.
func checkHeaderValue(v string) string {
	if strings.ContainsAny(v, "\r\n\x00") {
		return "the value holds a line break or NUL"
	}
	return ""
}
