package client

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vsm-relay/relay/internal/testbroker"
)

// withURL is brokerURL changed by edit.
func withURL(t *testing.T, brokerURL string, edit func(*url.URL)) string {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	edit(u)
	return u.String()
}

func TestDialRefusedAtOnce(t *testing.T) {
	good := testbroker.URL(t)
	tests := []struct {
		name string
		url  string
		want string
	}{
		{"wrong password", withURL(t, good, func(u *url.URL) { u.User = url.UserPassword(u.User.Username(), "not-the-password") }),
			"refused the connection: the login was refused"},
		{"unknown vhost", withURL(t, good, func(u *url.URL) { u.Path = "/" + testbroker.Unique("no-such-vhost") }),
			"refused the connection: no access to the virtual host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			c, err := Dial(ctx, tt.url)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial = %v; want ErrRefused saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "not-the-password") {
				t.Fatalf("the password leaked: %v", err)
			}
			// Refused on the first answer, not after retrying for the
			// whole 20s.
			if took > 5*time.Second {
				t.Fatalf("Dial took %s to report a refusal", took)
			}
		})
	}
}

func TestDialMalformedURLIsAURLErrorBeforeDialling(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"no scheme", "//guest:secret@localhost:5672/", "no scheme"},
		{"host and port only", "localhost:5672", `scheme "localhost": want amqp or amqps`},
		{"wrong scheme", "http://localhost:5672/", `scheme "http": want amqp or amqps`},
		{"no host", "amqp:///vhost", "no host"},
		{"bad escape keeps the password out", "amqp://u:p%zz@h:5672/", "invalid URL escape"},
		{"bad port", "amqp://guest:secret@localhost:port/", "invalid port"},
		{"empty entry in a list", "amqp://h1:5672/,", "entry 2 of 2: empty URL"},
		{"empty", "", "empty URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // a dial would fail on the context; a URLError comes first
			_, err := Dial(ctx, tt.url)
			var ue *URLError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial(%q) = %v; want a *URLError saying %q", tt.url, err, tt.want)
			}
			for _, secret := range []string{"p%zz", "secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows the password", err)
				}
			}
		})
	}
}

func TestDialTimesOutWithTheLastReason(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, "amqp://guest:secret@127.0.0.1:1/")
	var de *DialError
	if !errors.As(err, &de) || de.Refused || errors.Is(err, ErrRefused) {
		t.Fatalf("Dial = %v; want a *DialError, not refused", err)
	}
	if de.URL != "amqp://guest:***@127.0.0.1:1/" || !strings.Contains(de.Err.Error(), "connection refused") {
		t.Fatalf("DialError URL %q Err %v", de.URL, de.Err)
	}
}

func TestDialMovesOnToTheNextNode(t *testing.T) {
	good := testbroker.URL(t)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := withURL(t, good, func(u *url.URL) { u.Host = ln.Addr().String() })
	ln.Close()
	// Whichever node it starts at, it ends on the live one.
	for range 4 {
		c := dial(t, dead+","+good)
		if got, want := c.Node(), withURLHost(t, good); got != want {
			t.Fatalf("Node = %q, want %q", got, want)
		}
		c.Close()
	}
}

func withURLHost(t *testing.T, s string) string {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/"},
		{"amqp://localhost/", "amqp://localhost/"},
		{"amqp://a:b@h1/,amqps://c:d@h2/v", "amqp://a:***@h1/,amqps://c:***@h2/v"},
		{"amqp://u:p%zz@h/", "amqp://u:***@h/"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// A node that takes the TCP connection and never answers holds Dial only
// until its context ends, and leaves no goroutine behind (TestMain's
// goleak check).
func TestDialGivesUpOnASilentNodeAtTheContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c
		}
	}()
	defer func() {
		ln.Close()
		for c := range held {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, "amqp://guest:guest@"+ln.Addr().String()+"/", WithDialTimeout(time.Minute))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Dial took %s with a 300ms context", took)
	}
	var de *DialError
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) || de.Refused {
		t.Fatalf("Dial = %v; want a DialError for the deadline", err)
	}
}

// A broker that goes silent (the link black-holed, the connection still
// open) holds Close for a bounded time, not until a heartbeat notices.
// The bound must not rest on the socket's deadline: amqp091's heartbeater
// moves the read deadline on for a frame read before Close, and may do so
// after Close set it. Here the socket ignores every deadline, the worst
// that race can do, so only a close of the socket itself can end the
// wait for a close-ok that never comes (the broker would drop the
// connection only after missing heartbeats for tens of seconds).
func TestCloseDoesNotWaitForASilentBroker(t *testing.T) {
	url := testbroker.URL(t)
	px, viaProxy := newProxy(t, url)
	c := dial(t, viaProxy, func(o *options) {
		o.socket = func(c net.Conn) net.Conn { return deadlineless{c} }
	})
	px.hush()
	start := time.Now()
	err := c.Close()
	if took := time.Since(start); took > closeWait+4*time.Second {
		t.Fatalf("Close took %s with the broker silent", took)
	}
	if err == nil || !strings.Contains(err.Error(), "no close-ok") {
		t.Fatalf("Close = %v; want it to say the broker did not answer", err)
	}
}

// deadlineless is a socket whose deadlines never expire.
type deadlineless struct{ net.Conn }

func (deadlineless) SetDeadline(time.Time) error      { return nil }
func (deadlineless) SetReadDeadline(time.Time) error  { return nil }
func (deadlineless) SetWriteDeadline(time.Time) error { return nil }
