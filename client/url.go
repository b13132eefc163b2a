package client

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// URLError is a broker URL that cannot be used. It names the entry of a
// cluster list by position and never holds the password.
type URLError struct {
	Index int    // position in the comma-separated list, from 0
	Count int    // entries in the list
	Err   error  // what is wrong
	Entry string // the entry, with its password as ***, when it parses far enough
}

func (e *URLError) Error() string {
	where := ""
	if e.Count > 1 {
		where = fmt.Sprintf("entry %d of %d: ", e.Index+1, e.Count)
	}
	if e.Entry != "" {
		return fmt.Sprintf("%s%q: %v", where, e.Entry, e.Err)
	}
	return where + e.Err.Error()
}

func (e *URLError) Unwrap() error { return e.Err }

// ParseURLs splits a broker URL or a comma-separated list of a cluster's
// node URLs and checks each, without dialling. An error is a *URLError.
func ParseURLs(list string) ([]string, error) {
	parts := strings.Split(list, ",")
	nodes := make([]string, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if err := checkURL(p); err != nil {
			return nil, &URLError{Index: i, Count: len(parts), Err: err, Entry: redactLoose(p)}
		}
		nodes = append(nodes, p)
	}
	return nodes, nil
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("empty URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the whole URL, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return errors.New("not a URL")
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		if u.Scheme == "" {
			return errors.New("no scheme: want amqp:// or amqps://")
		}
		return fmt.Errorf("scheme %q: want amqp or amqps", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("no host")
	}
	if _, err := amqp.ParseURI(s); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	return nil
}

// RedactURL returns a URL list with every password replaced by ***, for
// logs and messages.
func RedactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = redactLoose(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactLoose hides the password of s even when s does not parse as a
// URL, by cutting between the scheme and the last '@' before the host.
func redactLoose(s string) string {
	if u, err := url.Parse(s); err == nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "***")
			return strings.Replace(u.String(), "%2A%2A%2A", "***", 1)
		}
		return s
	}
	rest, scheme := s, ""
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i+3], s[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user := rest[:at]
	if c := strings.Index(user, ":"); c >= 0 {
		user = user[:c] + ":***"
	}
	return scheme + user + rest[at:]
}

// node is a URL without its credentials, for errors and logs.
func node(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	return p.Host
}
