package config

import (
	"bytes"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/bulkhead"
)

// Secret is what Redacted and RedactURL show in place of a secret.
const Secret = "***"

// Redacted returns the effective configuration as YAML with the file's key
// names, every URL password (amqp.url, outbound[].url, targets' URLs),
// every target header value and http.admin_token shown as "***". Put the
// secrets back and it loads to a Config equal to c.
func (c *Config) Redacted() ([]byte, error) {
	r := *c
	r.AMQP.URL = redactURLs(r.AMQP.URL)
	if r.HTTP.AdminToken != "" {
		r.HTTP.AdminToken = Secret
	}
	r.Outbound = slices.Clone(r.Outbound)
	for i := range r.Outbound {
		r.Outbound[i].URL = redactURLs(r.Outbound[i].URL)
	}
	r.Targets = make(map[string]Target, len(c.Targets))
	for name, t := range c.Targets {
		t.URL = RedactURL(t.URL)
		h := make(map[string]string, len(t.Headers))
		for k := range t.Headers {
			h[k] = Secret
		}
		t.Headers = h
		r.Targets[name] = t
	}
	doc, err := encode(reflect.ValueOf(r))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// encode renders v as the file spells it, walking the same keys as the
// decoder (keyOf): structs as mappings in field order, named entries
// sorted by name, durations with their unit, jitter by name, and lists of
// values in flow style.
func encode(v reflect.Value) (*yaml.Node, error) {
	switch x := v.Interface().(type) {
	case time.Duration:
		return scalar(formatDuration(x))
	case backoff.Jitter:
		return scalar(x.String())
	case []time.Duration:
		s := make([]string, len(x))
		for i, d := range x {
			s[i] = formatDuration(d)
		}
		return flow(s)
	case []string:
		return flow(x)
	}
	switch v.Kind() {
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for i := range v.NumField() {
			key := keyOf(v.Type().Field(i))
			if key == "" || omitWhenZero(v.Type(), key) && v.Field(i).IsZero() {
				continue
			}
			val, err := encode(v.Field(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, val)
		}
		return n, nil
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			val, err := encode(v.MapIndex(k))
			if err != nil {
				return nil, err
			}
			key, err := scalar(k.String())
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, key, val)
		}
		return n, nil
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			val, err := encode(v.Index(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, val)
		}
		return n, nil
	}
	return scalar(v.Interface())
}

// omitWhenZero tells the keys Redacted leaves out when zero, as
// configs/relay.yaml does: the bulkhead extensions, whose zero means the
// bulkhead package's default and would read as something else
// (hold_warning: 0s is 4 x timeout, not off).
func omitWhenZero(t reflect.Type, key string) bool {
	if t != reflect.TypeFor[bulkhead.Settings]() {
		return false
	}
	return key == "rate_limit" || key == "max_waiting" || key == "hold_warning"
}

func scalar(v any) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return &n, nil
}

func flow(items []string) (*yaml.Node, error) {
	n, err := scalar(items)
	if err != nil {
		return nil, err
	}
	n.Style = yaml.FlowStyle
	return n, nil
}

// formatDuration writes the shortest spelling that reads back to the same
// value: "2m" rather than "2m0s".
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

// redactURLs redacts every URL of a comma-separated list.
func redactURLs(s string) string {
	urls := splitURLs(s)
	if len(urls) <= 1 {
		return RedactURL(s)
	}
	for i, u := range urls {
		urls[i] = RedactURL(u)
	}
	return strings.Join(urls, ",")
}

// RedactURL returns u with its password, if any, shown as "***":
// amqp://user:***@host:5672/vhost. Every log line and error that mentions
// a broker URL passes it through here. A string that does not parse as a
// URL with a host loses everything between "://" (or its start) and its
// last "@".
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil && p.Host == "" && strings.Contains(u, "@") {
		// Not a URL with an authority, yet it may hold "user:password@".
		at := strings.LastIndexByte(u, '@')
		if at < 0 {
			return u
		}
		if i := strings.Index(u, "://"); i >= 0 && i+3 <= at {
			return u[:i+3] + Secret + u[at:]
		}
		return Secret + u[at:]
	}
	if p.User == nil {
		return u
	}
	if _, has := p.User.Password(); !has {
		return u
	}
	user := url.User(p.User.Username()).String()
	p.User = nil
	s := p.String()
	if i := strings.Index(s, "://"); i >= 0 {
		return s[:i+3] + user + ":" + Secret + "@" + s[i+3:]
	}
	return p.Scheme + "://" + user + ":" + Secret + "@" + p.Host + p.EscapedPath()
}
