package integration

import (
	"net/url"
	"strings"
	"testing"

	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/config"
)

// FuzzRedactURL writes a password into broker URLs of every shape a
// person may type (well formed, escaped, without "//", without a scheme)
// and checks that neither redaction shows it: the broker's, which logs
// and connection errors print, and the configuration's, which `relay
// config check` prints. The password carries a marker that nothing else
// in the URL may hold, so any trace of it is a leak.
func FuzzRedactURL(f *testing.F) {
	for _, s := range []struct {
		user, pass, host, rest string
		shape                  uint8
	}{
		{"guest", "guest", "127.0.0.1:5672", "/", 0},
		{"relay", "p@ss:w/rd", "rabbit", "/vhost?heartbeat=10", 1},
		{"guest", "secret", "host", "", 2},
		{"guest", "secret", "host:5672", "/vh", 3},
		{"", "", "", "", 0},
		{"ü", "%zz", "[::1]:5672", "/%2f", 1},
		{"u", "x", "h", "/a@b", 2},
	} {
		f.Add(s.user, s.pass, s.host, s.rest, s.shape)
	}
	const marker = "Zq9"
	f.Fuzz(func(t *testing.T, user, pass, host, rest string, shape uint8) {
		if strings.Contains(user+host+rest, marker[:1]) {
			t.Skip("the marker's letter must be the password's alone")
		}
		if rest != "" && rest[0] != '/' {
			rest = "/" + rest
		}
		// A '/', '?' or '#' ends the authority, and an '@' or ':' moves the
		// userinfo's bounds: typed raw, such user names and hosts make
		// the password part of a path or a host, not a password.
		if strings.ContainsAny(host, "/?#@") {
			t.Skip("not a host")
		}
		pw := marker + pass
		var raw string
		switch shape % 4 {
		case 0, 2, 3:
			if strings.ContainsAny(user, "/?#@:") || strings.ContainsAny(pass, "/?#@") {
				t.Skip("not typed raw")
			}
			raw = map[uint8]string{0: "amqp://", 2: "amqp:", 3: ""}[shape%4] + user + ":" + pw + "@" + host + rest
		case 1:
			raw = "amqps://" + url.QueryEscape(user) + ":" + url.QueryEscape(pw) + "@" + host + rest
		}
		for name, redact := range map[string]func(string) string{"broker.RedactURL": broker.RedactURL, "config.RedactURL": config.RedactURL} {
			if out := redact(raw); strings.Contains(out, marker) {
				t.Errorf("%s(%q) = %q shows the password", name, raw, out)
			}
		}
	})
}
