package config

import (
	"strings"
	"testing"

	"github.com/vsm-relay/relay/internal/testtls"
)

func TestTLSClientConfigFromFiles(t *testing.T) {
	f := testtls.Write(t)
	conf, err := TLS{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key, ServerName: "localhost"}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if conf.RootCAs == nil || len(conf.Certificates) != 1 || conf.ServerName != "localhost" || conf.InsecureSkipVerify {
		t.Fatalf("tls config not built from the files: %+v", conf)
	}
	if _, err := (TLS{CAFile: f.Key}).ClientConfig(); err == nil || !strings.HasPrefix(err.Error(), "amqp.tls.ca_file: no certificate found") {
		t.Fatalf("want an error naming amqp.tls.ca_file, got %v", err)
	}
	if _, err := (TLS{CertFile: f.CA, KeyFile: f.Cert}).ClientConfig(); err == nil || !strings.HasPrefix(err.Error(), "amqp.tls.cert_file:") {
		t.Fatalf("want an error naming amqp.tls.cert_file, got %v", err)
	}
	conf, err = TLS{}.ClientConfig()
	if err != nil || conf.RootCAs != nil || conf.MinVersion == 0 {
		t.Fatalf("zero TLS: %+v, %v", conf, err)
	}
}
