package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// readmeOverlay finds the overlay's kustomization.yaml in README.md: the
// YAML block that starts with "# my-relay/kustomization.yaml".
var readmeOverlay = regexp.MustCompile("(?s)```yaml\n(# my-relay/kustomization.yaml\n.*?)```")

// TestReadmeOverlay builds the overlay README.md shows, laid out as it
// says (the repository in relay/, the overlay in my-relay/), and runs
// every check on the result, so that the documented way to apply the
// manifests keeps working: the replaced Secret still has the key the
// Deployment reads, and so on.
func TestReadmeOverlay(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := readmeOverlay.FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md shows no my-relay/kustomization.yaml")
	}
	root := t.TempDir()
	base := filepath.Join(root, "relay", "deploy", manifestDir)
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFiles(t, manifestDir, base)
	overlay := filepath.Join(root, "my-relay")
	if err := os.Mkdir(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	const url = "amqp://relay:s3cret@relay-rabbitmq:5672/"
	for name, data := range map[string]string{
		"kustomization.yaml": string(m[1]),
		"amqp.env":           "url=" + url + "\n",
	} {
		if err := os.WriteFile(filepath.Join(overlay, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	b, err := loadBuilt(overlay)
	if errors.Is(err, errNoKubectl) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if err := c.fn(b); err != nil {
			t.Errorf("check %q: %v", c.name, err)
		}
	}
	if v, _ := b.secretValue("relay-amqp", "url"); v != url {
		t.Errorf("Secret relay-amqp url = %q, want amqp.env's %q", v, url)
	}
	if c, err := b.container(); err != nil || c.Image != "registry.example.com/relay:1.4.0" {
		t.Errorf("image: %v %v, want the overlay's", c.Image, err)
	}
	if got := b.ScaledObject.Spec.Triggers[0].Metadata["serverAddress"]; got != "http://prometheus.monitoring.svc:9090" {
		t.Errorf("serverAddress %q, want the overlay's", got)
	}
	for _, ns := range []string{b.Deployment.Namespace, b.Secret.Namespace, b.ScaledObject.Namespace, b.RabbitmqCluster.Namespace} {
		if ns != "relay" {
			t.Errorf("namespace %q, want the overlay's relay", ns)
		}
	}
}
