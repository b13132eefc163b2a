package relay

import (
	"strings"
	"testing"

	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/testtls"
)

func TestTLSConfigFromFiles(t *testing.T) {
	f := testtls.Write(t)
	r := &Relay{cfg: &config.Config{AMQP: config.AMQP{TLS: config.TLS{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key, ServerName: "localhost"}}}}
	conf, err := r.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	if conf.RootCAs == nil || len(conf.Certificates) != 1 || conf.ServerName != "localhost" || conf.InsecureSkipVerify {
		t.Fatalf("tls config not built from the files: %+v", conf)
	}

	r.cfg.AMQP.TLS = config.TLS{CAFile: f.Key} // a key is no certificate
	if _, err := r.tlsConfig(); err == nil || !strings.HasPrefix(err.Error(), "amqp.tls.ca_file: no certificate found") {
		t.Fatalf("want an error naming amqp.tls.ca_file, got %v", err)
	}
	r.cfg.AMQP.TLS = config.TLS{CertFile: f.CA, KeyFile: f.Cert}
	if _, err := r.tlsConfig(); err == nil || !strings.HasPrefix(err.Error(), "amqp.tls.cert_file:") {
		t.Fatalf("want an error naming amqp.tls.cert_file, got %v", err)
	}
}
