package broker

import (
	"net/url"
	"strings"
)

// RedactURL hides the password of a broker URL: amqp://user:***@host/vh.
// Text that does not parse, or holds an "@" that did not parse as user
// information ("amqp:user:secret@host", "user:secret@host"), is replaced
// by a fixed placeholder rather than risk printing a secret.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil && strings.Contains(raw, "@") {
		return "<unparseable broker url>"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxx")
			return strings.Replace(u.String(), ":xxx@", ":***@", 1)
		}
	}
	return u.String()
}

// redactErr removes the password of rawURL from an error's text.
func redactErr(err error, rawURL string) string {
	msg := err.Error()
	u, perr := url.Parse(rawURL)
	if perr != nil || u.User == nil {
		return msg
	}
	if pw, has := u.User.Password(); has && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "***")
	}
	return msg
}
