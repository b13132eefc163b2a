package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
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

// A broker that refuses the login or the virtual host is reported at
// once, with the reason, and exit 1: retrying for --connect-timeout
// cannot help.
func TestRefusedLoginOrVhostExits1AtOnce(t *testing.T) {
	good := testbroker.URL(t)
	badPassword := withURL(t, good, func(u *url.URL) { u.User = url.UserPassword(u.User.Username(), "wrong-secret") })
	vhost := testbroker.Unique("no-such-vhost")
	badVhost := withURL(t, good, func(u *url.URL) { u.Path = "/" + vhost })
	redacted := func(s string) string {
		return withURL(t, s, func(u *url.URL) {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "PASSWORD")
			}
		})
	}
	loginRefused := "relay: broker " + strings.Replace(redacted(badPassword), "PASSWORD", "***", 1) +
		" refused the connection: the login was refused: wrong user name or password\n"
	vhostRefused := "relay: broker " + strings.Replace(redacted(badVhost), "PASSWORD", "***", 1) +
		" refused the connection: no access to the virtual host: NOT_ALLOWED - vhost " + vhost + " not found\n"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"publish, wrong password", []string{"publish", "--url", badPassword, "--queue", "q", "x"}, loginRefused},
		{"watch, wrong password", []string{"watch", "--url", badPassword}, loginRefused},
		{"queues, wrong password", []string{"queues", "--url", badPassword}, loginRefused},
		{"publish, unknown vhost", []string{"publish", "--url", badVhost, "--queue", "q", "x"}, vhostRefused},
		{"watch, unknown vhost", []string{"watch", "--url", badVhost}, vhostRefused},
		{"queues, unknown vhost", []string{"queues", "--url", badVhost}, vhostRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, out, errOut := runExe(t, nil, append(tt.args, "--connect-timeout", "30s")...)
			took := time.Since(start)
			if code != 1 || out != "" || errOut != tt.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1, \"\", %q", code, out, errOut, tt.want)
			}
			// RabbitMQ answers a failed login after about 3s; a retry loop
			// would run for the whole 30s.
			if took > 10*time.Second {
				t.Fatalf("took %s to report the refusal", took)
			}
		})
	}
}

// A malformed broker URL is a usage error found before dialling, and the
// message names where it came from.
func TestMalformedBrokerURLExits2BeforeDialling(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"publish --url without scheme", nil, []string{"publish", "--url", "localhost:5672", "--queue", "q", "x"},
			"relay: --url: not a broker URL: \"localhost:5672\": scheme \"localhost\": want amqp or amqps\n"},
		{"watch --url with a bad escape, password hidden", nil, []string{"watch", "--url", "amqp://u:p%zz@h/"},
			"relay: --url: not a broker URL: \"amqp://u:***@h/\": invalid URL escape \"%zz\"\n"},
		{"queues --url list with an empty entry", nil, []string{"queues", "--url", "amqp://h1/,"},
			"relay: --url: not a broker URL: entry 2 of 2: empty URL\n"},
		{"publish with a malformed RELAY_AMQP_URL", []string{"RELAY_AMQP_URL=http://h/"}, []string{"publish", "--queue", "q", "x"},
			"amqp.url: must be an amqp:// or amqps:// URL, got scheme \"http\"\nrelay: 1 configuration problem(s)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, out, errOut := runExe(t, tt.env, append(tt.args, "--connect-timeout", "30s")...)
			if code != 2 || out != "" || errOut != tt.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, \"\", %q", code, out, errOut, tt.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("took %s: it dialled", took)
			}
		})
	}
}

// slowProxy forwards to the broker and holds every chunk from the broker
// back for delay, so that confirms come late.
func slowProxy(t *testing.T, brokerURL string, delay time.Duration) string {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream = net.JoinHostPort(u.Hostname(), "5672")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(up, down)
				up.Close()
			}()
			go func() {
				defer wg.Done()
				defer down.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						time.Sleep(delay)
						if _, werr := down.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	u.Host = ln.Addr().String()
	return u.String()
}

// A confirm that does not come within --timeout leaves the message's fate
// unknown: the command exits 3 and says it may have been published, with
// the id to publish it again under. Here it was: the broker has it.
func TestUnconfirmedPublishSaysItMayHaveBeenPublished(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.unconfirmed")
	declareQueue(t, url, q)
	slow := slowProxy(t, url, 300*time.Millisecond)
	code, out, errOut := runExe(t, nil, "publish", "--url", slow, "--queue", q, "--timeout", "50ms", "--message-id", "job-7", "x")
	want := fmt.Sprintf("relay: the broker did not confirm within 50ms; the message may have been published all the same: "+
		"check %s before you publish it again, or publish it again with --message-id job-7 so that the downstream can drop a duplicate\n", q)
	if code != 3 || out != "" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 3, \"\", %q", code, out, errOut, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := getAll(t, url, q)
		if len(got) == 1 && got[0].MessageId == "job-7" {
			return
		}
		if len(got) > 1 || time.Now().After(deadline) {
			t.Fatalf("queue holds %d messages, want the one published", len(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With --reply a task no queue takes fails at once, not after --timeout.
func TestPublishReplyToAMissingQueueExits1AtOnce(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("cli.nowhere")
	start := time.Now()
	code, out, errOut := runExe(t, nil, "publish", "--url", url, "--queue", q, "--reply", "--timeout", "30s", "x")
	want := fmt.Sprintf("relay: queue %q does not exist (the message came back unroutable)\n", q)
	if code != 1 || out != "" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1, \"\", %q", code, out, errOut, want)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s", took)
	}
}

// A broker that takes the TCP connection and never answers costs
// --connect-timeout, not more: the message's "within" is kept.
func TestSilentBrokerExits1WithinTheConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	addr := ln.Addr().String()
	for _, cmd := range [][]string{{"publish", "--queue", "q", "x"}, {"watch"}, {"queues"}} {
		t.Run(cmd[0], func(t *testing.T) {
			start := time.Now()
			code, _, errOut := runExe(t, nil, append(cmd, "--url", "amqp://guest:secret@"+addr+"/", "--connect-timeout", "700ms")...)
			took := time.Since(start)
			want := "relay: could not connect to broker amqp://guest:***@" + addr + "/ within 700ms: no answer from " + addr + ": context deadline exceeded\n"
			if code != 1 || errOut != want {
				t.Fatalf("exit %d, stderr %q; want 1, %q", code, errOut, want)
			}
			if took > 3*time.Second {
				t.Fatalf("took %s with a 700ms connect timeout", took)
			}
		})
	}
}
