package broker

import (
	"context"
	"crypto/tls"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
	"github.com/vsm-relay/relay/internal/testtls"
)

func TestDialOverTLS(t *testing.T) {
	url := testbroker.URL(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	files := testtls.Write(t)
	addr := testtls.Proxy(t, files, u.Host)
	q := testbroker.Unique("relay.test.tls")
	testbroker.CleanupQueues(t, url, q)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var c *Conn
	shared := &tls.Config{RootCAs: files.Pool, MinVersion: tls.VersionTLS12}
	c, err = Dial(ctx, Options{Name: "tls", URL: "amqps://guest:guest@" + addr + "/", TLS: shared, Topology: declareQueues(q)})
	if err != nil {
		t.Fatalf("Dial over TLS: %v", err)
	}
	// The relay hands one config to every connection, each maybe to
	// another host: a dial must not write its host into it.
	if shared.ServerName != "" {
		t.Fatalf("Dial wrote ServerName %q into the caller's TLS config", shared.ServerName)
	}
	defer c.Close()
	pub := c.NewPublisher()
	defer pub.Close()
	if err := pub.PublishAndWait(ctx, "", q, true, amqp.Publishing{Body: []byte("over tls")}); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}

	// An untrusted server certificate is refused.
	_, err = Dial(ctx, Options{Name: "tls", URL: "amqps://guest:guest@" + addr + "/", ConnectTimeout: 500 * time.Millisecond,
		TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want a certificate error, got %v", err)
	}
}
