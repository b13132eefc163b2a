package config

import (
	"strings"
	"time"

	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// The file* types mirror the YAML file key for key. They are the schema:
// the strict key check, the environment overrides and the decoder all walk
// them, so a key exists in exactly one place. Config stays free of tags and
// of the file's spelling (jitter as a name, durations as strings).

type fileConfig struct {
	Instance        string                  `mapstructure:"instance" yaml:"instance"`
	ShutdownTimeout duration                `mapstructure:"shutdown_timeout" yaml:"shutdown_timeout"`
	AMQP            fileAMQP                `mapstructure:"amqp" yaml:"amqp"`
	HTTP            fileHTTP                `mapstructure:"http" yaml:"http"`
	Breakers        map[string]fileBreaker  `mapstructure:"breakers" yaml:"breakers"`
	Bulkheads       map[string]fileBulkhead `mapstructure:"bulkheads" yaml:"bulkheads"`
	Backoff         map[string]fileBackoff  `mapstructure:"backoff" yaml:"backoff"`
	Targets         map[string]fileTarget   `mapstructure:"targets" yaml:"targets"`
	Work            []fileWork              `mapstructure:"work" yaml:"work"`
	Outbound        []fileOutbound          `mapstructure:"outbound" yaml:"outbound"`
	Algedonic       fileAlgedonic           `mapstructure:"algedonic" yaml:"algedonic"`
	Health          fileHealth              `mapstructure:"health" yaml:"health"`
}

type fileAMQP struct {
	URL            string        `mapstructure:"url" yaml:"url"`
	ConnectTimeout duration      `mapstructure:"connect_timeout" yaml:"connect_timeout"`
	Prefetch       int           `mapstructure:"prefetch" yaml:"prefetch"`
	Reconnect      fileReconnect `mapstructure:"reconnect" yaml:"reconnect"`
	TLS            fileTLS       `mapstructure:"tls" yaml:"tls"`
	Heartbeat      duration      `mapstructure:"heartbeat" yaml:"heartbeat"`
}

type fileReconnect struct {
	Initial duration `mapstructure:"initial" yaml:"initial"`
	Max     duration `mapstructure:"max" yaml:"max"`
}

// fileTLS is TLS with its keys. Its fields are TLS's, in the same order, so
// that the two convert into each other; a field added to one alone does
// not compile rather than being dropped on the way.
type fileTLS struct {
	CAFile             string `mapstructure:"ca_file" yaml:"ca_file"`
	CertFile           string `mapstructure:"cert_file" yaml:"cert_file"`
	KeyFile            string `mapstructure:"key_file" yaml:"key_file"`
	ServerName         string `mapstructure:"server_name" yaml:"server_name"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify" yaml:"insecure_skip_verify"`
}

type fileHTTP struct {
	Listen string `mapstructure:"listen" yaml:"listen"`
}

type fileBreaker struct {
	FailureThreshold      int      `mapstructure:"failure_threshold" yaml:"failure_threshold"`
	SuccessThreshold      int      `mapstructure:"success_threshold" yaml:"success_threshold"`
	ResetTimeout          duration `mapstructure:"reset_timeout" yaml:"reset_timeout"`
	HalfOpenTimeout       duration `mapstructure:"half_open_timeout" yaml:"half_open_timeout"`
	WindowSize            duration `mapstructure:"window_size" yaml:"window_size"`
	Timeout               duration `mapstructure:"timeout" yaml:"timeout"`
	FailureRateThreshold  float64  `mapstructure:"failure_rate_threshold" yaml:"failure_rate_threshold"`
	MinimumCalls          int      `mapstructure:"minimum_calls" yaml:"minimum_calls"`
	SlowCallDuration      duration `mapstructure:"slow_call_duration" yaml:"slow_call_duration"`
	SlowCallRateThreshold float64  `mapstructure:"slow_call_rate_threshold" yaml:"slow_call_rate_threshold"`
}

// The bulkhead extensions are omitted from the effective YAML when zero:
// zero already means "the package default" and keeps the output short.
type fileBulkhead struct {
	Size        int      `mapstructure:"size" yaml:"size"`
	Overflow    int      `mapstructure:"overflow" yaml:"overflow"`
	Timeout     duration `mapstructure:"timeout" yaml:"timeout"`
	RateLimit   float64  `mapstructure:"rate_limit" yaml:"rate_limit,omitempty"`
	MaxWaiting  int      `mapstructure:"max_waiting" yaml:"max_waiting,omitempty"`
	HoldWarning duration `mapstructure:"hold_warning" yaml:"hold_warning,omitempty"`
}

type fileBackoff struct {
	Initial    duration `mapstructure:"initial" yaml:"initial"`
	Max        duration `mapstructure:"max" yaml:"max"`
	Multiplier float64  `mapstructure:"multiplier" yaml:"multiplier"`
	Jitter     string   `mapstructure:"jitter" yaml:"jitter"`
	MaxRetries int      `mapstructure:"max_retries" yaml:"max_retries"`
}

type fileTarget struct {
	URL              string            `mapstructure:"url" yaml:"url"`
	Method           string            `mapstructure:"method" yaml:"method"`
	Timeout          duration          `mapstructure:"timeout" yaml:"timeout"`
	Headers          map[string]string `mapstructure:"headers" yaml:"headers"`
	Breaker          string            `mapstructure:"breaker" yaml:"breaker"`
	Bulkhead         string            `mapstructure:"bulkhead" yaml:"bulkhead"`
	Backoff          string            `mapstructure:"backoff" yaml:"backoff"`
	MaxRequestBytes  int64             `mapstructure:"max_request_bytes" yaml:"max_request_bytes"`
	MaxResponseBytes int64             `mapstructure:"max_response_bytes" yaml:"max_response_bytes"`
	Concurrency      int               `mapstructure:"concurrency" yaml:"concurrency"`
}

type fileWork struct {
	Queue      string     `mapstructure:"queue" yaml:"queue"`
	Target     string     `mapstructure:"target" yaml:"target"`
	Redelivery []duration `mapstructure:"redelivery" yaml:"redelivery,flow"`
	Prefetch   int        `mapstructure:"prefetch" yaml:"prefetch"`
}

type fileOutbound struct {
	Queue     string   `mapstructure:"queue" yaml:"queue"`
	URL       string   `mapstructure:"url" yaml:"url"`
	Breaker   string   `mapstructure:"breaker" yaml:"breaker"`
	Bulkhead  string   `mapstructure:"bulkhead" yaml:"bulkhead"`
	Exchanges []string `mapstructure:"exchanges" yaml:"exchanges,flow"`
	Prefetch  int      `mapstructure:"prefetch" yaml:"prefetch"`
}

type fileAlgedonic struct {
	PainExchange     string   `mapstructure:"pain_exchange" yaml:"pain_exchange"`
	PleasureExchange string   `mapstructure:"pleasure_exchange" yaml:"pleasure_exchange"`
	Coalesce         duration `mapstructure:"coalesce" yaml:"coalesce"`
	Buffer           int      `mapstructure:"buffer" yaml:"buffer"`
}

type fileHealth struct {
	Exchange            string   `mapstructure:"exchange" yaml:"exchange"`
	Interval            duration `mapstructure:"interval" yaml:"interval"`
	DegradedUtilization float64  `mapstructure:"degraded_utilization" yaml:"degraded_utilization"`
}

// entryTemplate gives the keys an entry of section leaves out. Entries of
// the default file spell every key; these serve a user's own entries, which
// replace the default ones wholesale. Breakers and backoff policies take
// theirs from the `defaults` entry instead; bulkheads need none (their zero
// values mean the bulkhead package's defaults).
func entryTemplate(section string) map[string]any {
	switch section {
	case "targets":
		return map[string]any{
			"method":             "POST",
			"timeout":            "10s",
			"headers":            map[string]any{},
			"max_request_bytes":  1 << 20,
			"max_response_bytes": 4 << 20,
			"concurrency":        0,
		}
	case "work":
		return map[string]any{"redelivery": []any{}, "prefetch": 0}
	case "outbound":
		return map[string]any{"url": "", "prefetch": 0}
	}
	return nil
}

// defaultsEntry is the entry of breakers and backoff that every named entry
// starts from.
const defaultsEntry = "defaults"

// duration is a time.Duration that the file spells as a string with a unit.
type duration time.Duration

// MarshalYAML writes the shortest spelling that reads back to the same
// value: "2m" rather than "2m0s".
func (d duration) MarshalYAML() (any, error) { return formatDuration(time.Duration(d)), nil }

func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func durations(in []duration) []time.Duration {
	out := make([]time.Duration, len(in))
	for i, d := range in {
		out[i] = time.Duration(d)
	}
	return out
}

func fileDurations(in []time.Duration) []duration {
	out := make([]duration, len(in))
	for i, d := range in {
		out[i] = duration(d)
	}
	return out
}

func (b fileBreaker) settings() breaker.Settings {
	return breaker.Settings{
		FailureThreshold:      b.FailureThreshold,
		SuccessThreshold:      b.SuccessThreshold,
		ResetTimeout:          time.Duration(b.ResetTimeout),
		HalfOpenTimeout:       time.Duration(b.HalfOpenTimeout),
		WindowSize:            time.Duration(b.WindowSize),
		Timeout:               time.Duration(b.Timeout),
		FailureRateThreshold:  b.FailureRateThreshold,
		MinimumCalls:          b.MinimumCalls,
		SlowCallDuration:      time.Duration(b.SlowCallDuration),
		SlowCallRateThreshold: b.SlowCallRateThreshold,
	}
}

func fromBreaker(s breaker.Settings) fileBreaker {
	return fileBreaker{
		FailureThreshold:      s.FailureThreshold,
		SuccessThreshold:      s.SuccessThreshold,
		ResetTimeout:          duration(s.ResetTimeout),
		HalfOpenTimeout:       duration(s.HalfOpenTimeout),
		WindowSize:            duration(s.WindowSize),
		Timeout:               duration(s.Timeout),
		FailureRateThreshold:  s.FailureRateThreshold,
		MinimumCalls:          s.MinimumCalls,
		SlowCallDuration:      duration(s.SlowCallDuration),
		SlowCallRateThreshold: s.SlowCallRateThreshold,
	}
}

func (b fileBulkhead) settings() bulkhead.Settings {
	return bulkhead.Settings{
		Size:        b.Size,
		Overflow:    b.Overflow,
		Timeout:     time.Duration(b.Timeout),
		RateLimit:   b.RateLimit,
		MaxWaiting:  b.MaxWaiting,
		HoldWarning: time.Duration(b.HoldWarning),
	}
}

func fromBulkhead(s bulkhead.Settings) fileBulkhead {
	return fileBulkhead{
		Size:        s.Size,
		Overflow:    s.Overflow,
		Timeout:     duration(s.Timeout),
		RateLimit:   s.RateLimit,
		MaxWaiting:  s.MaxWaiting,
		HoldWarning: duration(s.HoldWarning),
	}
}

// policy converts b; a jitter name ParseJitter rejects comes back as err
// for the caller to key.
func (b fileBackoff) policy() (backoff.Policy, error) {
	j, err := backoff.ParseJitter(b.Jitter)
	return backoff.Policy{
		Initial:    time.Duration(b.Initial),
		Max:        time.Duration(b.Max),
		Multiplier: b.Multiplier,
		Jitter:     j,
		MaxRetries: b.MaxRetries,
	}, err
}

func fromPolicy(p backoff.Policy) fileBackoff {
	return fileBackoff{
		Initial:    duration(p.Initial),
		Max:        duration(p.Max),
		Multiplier: p.Multiplier,
		Jitter:     p.Jitter.String(),
		MaxRetries: p.MaxRetries,
	}
}

func (t fileTarget) target(name string) Target {
	return Target{
		Name:             name,
		URL:              t.URL,
		Method:           t.Method,
		Timeout:          time.Duration(t.Timeout),
		Headers:          t.Headers,
		Breaker:          t.Breaker,
		Bulkhead:         t.Bulkhead,
		Backoff:          t.Backoff,
		MaxRequestBytes:  t.MaxRequestBytes,
		MaxResponseBytes: t.MaxResponseBytes,
		Concurrency:      t.Concurrency,
	}
}

func fromTarget(t Target) fileTarget {
	return fileTarget{
		URL:              t.URL,
		Method:           t.Method,
		Timeout:          duration(t.Timeout),
		Headers:          t.Headers,
		Breaker:          t.Breaker,
		Bulkhead:         t.Bulkhead,
		Backoff:          t.Backoff,
		MaxRequestBytes:  t.MaxRequestBytes,
		MaxResponseBytes: t.MaxResponseBytes,
		Concurrency:      t.Concurrency,
	}
}

// config converts the decoded file, recording unknown jitter names in l.
func (f *fileConfig) config(l *fielderr.List) *Config {
	c := &Config{
		Instance:        f.Instance,
		ShutdownTimeout: time.Duration(f.ShutdownTimeout),
		AMQP: AMQP{
			URL:            f.AMQP.URL,
			ConnectTimeout: time.Duration(f.AMQP.ConnectTimeout),
			Prefetch:       f.AMQP.Prefetch,
			Reconnect: Reconnect{
				Initial: time.Duration(f.AMQP.Reconnect.Initial),
				Max:     time.Duration(f.AMQP.Reconnect.Max),
			},
			TLS:       TLS(f.AMQP.TLS),
			Heartbeat: time.Duration(f.AMQP.Heartbeat),
		},
		HTTP:      HTTP{Listen: f.HTTP.Listen},
		Breakers:  make(map[string]breaker.Settings, len(f.Breakers)),
		Bulkheads: make(map[string]bulkhead.Settings, len(f.Bulkheads)),
		Backoff:   make(map[string]backoff.Policy, len(f.Backoff)),
		Targets:   make(map[string]Target, len(f.Targets)),
		Work:      make([]Work, 0, len(f.Work)),
		Outbound:  make([]Outbound, 0, len(f.Outbound)),
		Algedonic: Algedonic{
			PainExchange:     f.Algedonic.PainExchange,
			PleasureExchange: f.Algedonic.PleasureExchange,
			Coalesce:         time.Duration(f.Algedonic.Coalesce),
			Buffer:           f.Algedonic.Buffer,
		},
		Health: Health{
			Exchange:            f.Health.Exchange,
			Interval:            time.Duration(f.Health.Interval),
			DegradedUtilization: f.Health.DegradedUtilization,
		},
	}
	for name, b := range f.Breakers {
		c.Breakers[name] = b.settings()
	}
	for name, b := range f.Bulkheads {
		c.Bulkheads[name] = b.settings()
	}
	for name, b := range f.Backoff {
		p, err := b.policy()
		if err != nil {
			l.Addf("backoff."+name+".jitter", "%s", err.Error())
		}
		c.Backoff[name] = p
	}
	for name, t := range f.Targets {
		c.Targets[name] = t.target(name)
	}
	for _, w := range f.Work {
		c.Work = append(c.Work, Work{
			Queue:      w.Queue,
			Target:     w.Target,
			Redelivery: durations(w.Redelivery),
			Prefetch:   w.Prefetch,
		})
	}
	for _, o := range f.Outbound {
		c.Outbound = append(c.Outbound, Outbound{
			Queue:     o.Queue,
			URL:       o.URL,
			Breaker:   o.Breaker,
			Bulkhead:  o.Bulkhead,
			Exchanges: append([]string{}, o.Exchanges...),
			Prefetch:  o.Prefetch,
		})
	}
	return c
}

// file converts c back to the file's shape, for Redacted.
func (c *Config) file() *fileConfig {
	f := &fileConfig{
		Instance:        c.Instance,
		ShutdownTimeout: duration(c.ShutdownTimeout),
		AMQP: fileAMQP{
			URL:            c.AMQP.URL,
			ConnectTimeout: duration(c.AMQP.ConnectTimeout),
			Prefetch:       c.AMQP.Prefetch,
			Reconnect: fileReconnect{
				Initial: duration(c.AMQP.Reconnect.Initial),
				Max:     duration(c.AMQP.Reconnect.Max),
			},
			TLS:       fileTLS(c.AMQP.TLS),
			Heartbeat: duration(c.AMQP.Heartbeat),
		},
		HTTP:      fileHTTP{Listen: c.HTTP.Listen},
		Breakers:  make(map[string]fileBreaker, len(c.Breakers)),
		Bulkheads: make(map[string]fileBulkhead, len(c.Bulkheads)),
		Backoff:   make(map[string]fileBackoff, len(c.Backoff)),
		Targets:   make(map[string]fileTarget, len(c.Targets)),
		Work:      make([]fileWork, 0, len(c.Work)),
		Outbound:  make([]fileOutbound, 0, len(c.Outbound)),
		Algedonic: fileAlgedonic{
			PainExchange:     c.Algedonic.PainExchange,
			PleasureExchange: c.Algedonic.PleasureExchange,
			Coalesce:         duration(c.Algedonic.Coalesce),
			Buffer:           c.Algedonic.Buffer,
		},
		Health: fileHealth{
			Exchange:            c.Health.Exchange,
			Interval:            duration(c.Health.Interval),
			DegradedUtilization: c.Health.DegradedUtilization,
		},
	}
	for name, s := range c.Breakers {
		f.Breakers[name] = fromBreaker(s)
	}
	for name, s := range c.Bulkheads {
		f.Bulkheads[name] = fromBulkhead(s)
	}
	for name, p := range c.Backoff {
		f.Backoff[name] = fromPolicy(p)
	}
	for name, t := range c.Targets {
		f.Targets[name] = fromTarget(t)
	}
	for _, w := range c.Work {
		f.Work = append(f.Work, fileWork{
			Queue:      w.Queue,
			Target:     w.Target,
			Redelivery: fileDurations(w.Redelivery),
			Prefetch:   w.Prefetch,
		})
	}
	for _, o := range c.Outbound {
		f.Outbound = append(f.Outbound, fileOutbound{
			Queue:     o.Queue,
			URL:       o.URL,
			Breaker:   o.Breaker,
			Bulkhead:  o.Bulkhead,
			Exchanges: o.Exchanges,
			Prefetch:  o.Prefetch,
		})
	}
	return f
}
