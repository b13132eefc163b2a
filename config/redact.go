package config

import (
	"bytes"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Secret is what Redacted and RedactURL show in place of a secret.
const Secret = "***"

// Redacted returns the effective configuration as YAML with the file's key
// names, every URL password (amqp.url, outbound[].url, targets' URLs) and
// every target header value shown as "***". Put the secrets back and it
// loads to a Config equal to c.
func (c *Config) Redacted() ([]byte, error) {
	f := c.file()
	f.AMQP.URL = RedactURL(f.AMQP.URL)
	for i := range f.Outbound {
		f.Outbound[i].URL = RedactURL(f.Outbound[i].URL)
	}
	for name, t := range f.Targets {
		t.URL = RedactURL(t.URL)
		h := make(map[string]string, len(t.Headers))
		for k := range t.Headers {
			h[k] = Secret
		}
		t.Headers = h
		f.Targets[name] = t
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
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
