package configs_test

// These tests stand in for `docker compose up` where no Docker engine
// runs: they read docker-compose.yml and the files it mounts, and check
// that everything it refers to exists and fits together.

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/health"
	"github.com/vsm-relay/relay/metrics"
	"go.yaml.in/yaml/v3"
)

// root is the repository root, where docker-compose.yml lives.
const root = ".."

type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       build             `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   dependsOn         `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// build is the short ("build: .") or long form.
type build struct {
	Context    string
	Dockerfile string
}

func (b *build) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	var long struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	b.Context, b.Dockerfile = long.Context, long.Dockerfile
	return nil
}

// dependsOn is the list or the map form, as service -> condition.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	if n.Kind == yaml.SequenceNode {
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, s := range names {
			(*d)[s] = "service_started"
		}
		return nil
	}
	var long map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	for s, c := range long {
		(*d)[s] = c.Condition
	}
	return nil
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml has no services")
	}
	return c
}

// mount is one bind mount or named volume of a service.
type mount struct {
	source, target string
	bind           bool
}

func mounts(t *testing.T, name string, s service) []mount {
	t.Helper()
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 {
			t.Errorf("service %s: volume %q is not SOURCE:TARGET[:MODE]", name, v)
			continue
		}
		src := parts[0]
		out = append(out, mount{source: src, target: parts[1], bind: strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/")})
	}
	return out
}

// hostPath maps a path inside a service's container back to the file of
// this repository mounted there, or "".
func hostPath(t *testing.T, name string, s service, inContainer string) string {
	t.Helper()
	for _, m := range mounts(t, name, s) {
		if !m.bind {
			continue
		}
		if inContainer == m.target {
			return filepath.Join(root, m.source)
		}
		if rel, ok := strings.CutPrefix(inContainer, m.target+"/"); ok {
			return filepath.Join(root, m.source, rel)
		}
	}
	return ""
}

func TestComposeReferencesExist(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		if s.Image == "" && s.Build.Context == "" {
			t.Errorf("service %s has neither image nor build", name)
		}
		if s.Build.Context != "" {
			ctx := filepath.Join(root, s.Build.Context)
			if st, err := os.Stat(ctx); err != nil || !st.IsDir() {
				t.Errorf("service %s: build context %s is not a directory", name, s.Build.Context)
			}
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if _, err := os.Stat(filepath.Join(ctx, df)); err != nil {
				t.Errorf("service %s: dockerfile: %v", name, err)
			}
		}
		for _, m := range mounts(t, name, s) {
			if m.bind {
				if _, err := os.Stat(filepath.Join(root, m.source)); err != nil {
					t.Errorf("service %s: bind mount source: %v", name, err)
				}
			} else if _, ok := c.Volumes[m.source]; !ok {
				t.Errorf("service %s: volume %q is not declared under volumes", name, m.source)
			}
			if !path.IsAbs(m.target) {
				t.Errorf("service %s: mount target %q is not absolute", name, m.target)
			}
		}
		for dep, cond := range s.DependsOn {
			target, ok := c.Services[dep]
			if !ok {
				t.Errorf("service %s depends on %s, which is not a service", name, dep)
				continue
			}
			switch cond {
			case "service_started", "service_completed_successfully":
			case "service_healthy":
				if target.Healthcheck == nil || len(target.Healthcheck.Test) == 0 {
					t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
				}
			default:
				t.Errorf("service %s: depends_on %s: unknown condition %q", name, dep, cond)
			}
		}
	}
}

func TestComposeStackShape(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"rabbitmq", "relay", "demo-downstream", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("no %s service", name)
		}
	}
	rmq := c.Services["rabbitmq"]
	if !strings.HasPrefix(rmq.Image, "rabbitmq:") || !strings.Contains(rmq.Image, "management") {
		t.Errorf("rabbitmq image %q: want the management image", rmq.Image)
	}
	if rmq.Healthcheck == nil || !slices.Equal(rmq.Healthcheck.Test, []string{"CMD", "rabbitmq-diagnostics", "-q", "ping"}) {
		t.Errorf("rabbitmq healthcheck = %+v", rmq.Healthcheck)
	}
	if got := c.Services["relay"].DependsOn["rabbitmq"]; got != "service_healthy" {
		t.Errorf("relay depends on rabbitmq with %q, want service_healthy", got)
	}
	// The demo downstream runs the binary the Dockerfile installs.
	dockerfile := readFile(t, filepath.Join(root, "Dockerfile"))
	for _, want := range []string{"FROM golang:1.26 AS build", "./cmd/relay", "./cmd/demo-downstream", "COPY --from=build /out/relay /out/demo-downstream /usr/local/bin/", "USER nonroot"} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, dir := range []string{"cmd/relay", "cmd/demo-downstream"} {
		if _, err := os.Stat(filepath.Join(root, dir, "main.go")); err != nil {
			t.Errorf("the Dockerfile builds %s: %v", dir, err)
		}
	}
	if ep := c.Services["demo-downstream"].Entrypoint; len(ep) == 0 || ep[0] != "/usr/local/bin/demo-downstream" {
		t.Errorf("demo-downstream entrypoint = %q", ep)
	}
}

func TestDockerignoreKeepsWhatTheBuildNeeds(t *testing.T) {
	var patterns []string
	for _, line := range strings.Split(readFile(t, filepath.Join(root, ".dockerignore")), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimSuffix(line, "/"))
		}
	}
	// configs is embedded in the binary; the rest are what go build reads.
	for _, need := range []string{"go.mod", "go.sum", "cmd", "configs", "relay", "config", "broker", "internal"} {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, need); ok {
				t.Errorf(".dockerignore pattern %q leaves %s out of the build", p, need)
			}
		}
	}
}

// relayConfig finds the relay's --config file through its mounts and
// loads it with the service's environment, as `relay config check` in
// the container would.
func relayConfig(t *testing.T, c composeFile) *config.Config {
	t.Helper()
	relay := c.Services["relay"]
	i := slices.Index(relay.Command, "--config")
	if i < 0 || i+1 >= len(relay.Command) {
		t.Fatalf("relay command %q has no --config FILE", relay.Command)
	}
	file := hostPath(t, "relay", relay, relay.Command[i+1])
	if file == "" {
		t.Fatalf("relay --config %s is not mounted from this repository", relay.Command[i+1])
	}
	// Source, not LoadBytes: it lists the environment, so a RELAY_
	// variable of the service that names no key fails here as it would
	// in the container.
	src := config.Source{Path: file, Environ: func() []string {
		var env []string
		for k, v := range relay.Environment {
			env = append(env, k+"="+v)
		}
		return env
	}}
	cfg, err := src.Load()
	if err != nil {
		t.Fatalf("%s with the compose environment fails `relay config check`:\n%v", file, err)
	}
	return cfg
}

func TestComposeRelayConfigIsValidAndWired(t *testing.T) {
	c := loadCompose(t)
	cfg := relayConfig(t, c)

	u, err := url.Parse(cfg.AMQP.URL)
	if err != nil || u.Hostname() != "rabbitmq" {
		t.Errorf("amqp.url %s: want the rabbitmq service", config.RedactURL(cfg.AMQP.URL))
	}
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil || host != "0.0.0.0" {
		t.Errorf("http.listen %q: want 0.0.0.0:PORT, reachable from other containers", cfg.HTTP.Listen)
	}
	if !slices.Contains(c.Services["relay"].Ports, port+":"+port) {
		t.Errorf("relay ports %q do not publish http.listen's port %s", c.Services["relay"].Ports, port)
	}

	demo := c.Services["demo-downstream"]
	demoHost, demoPort, err := net.SplitHostPort(demo.Environment["DEMO_LISTEN"])
	if err != nil {
		t.Fatalf("demo-downstream DEMO_LISTEN %q: %v", demo.Environment["DEMO_LISTEN"], err)
	}
	// demo-downstream listens on 127.0.0.1 by default, out of the relay
	// container's reach.
	if demoHost != "" && demoHost != "0.0.0.0" {
		t.Errorf("demo-downstream DEMO_LISTEN %q: want every interface (:PORT), reachable from the relay's container", demo.Environment["DEMO_LISTEN"])
	}
	if len(cfg.Targets) == 0 {
		t.Fatal("no targets")
	}
	for name, tg := range cfg.Targets {
		tu, err := url.Parse(tg.URL)
		if err != nil || tu.Hostname() != "demo-downstream" || tu.Port() != demoPort {
			t.Errorf("targets.%s.url %s: want the demo-downstream service on port %s", name, tg.URL, demoPort)
		}
	}
	if len(cfg.Work) == 0 || cfg.Work[0].Queue != "vsm.tasks.echo" {
		t.Errorf("work = %+v: the README's walk-through publishes to vsm.tasks.echo", cfg.Work)
	}

	// Prometheus scrapes the relay where it listens.
	var prom struct {
		ScrapeConfigs []struct {
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	promFile := hostPath(t, "prometheus", c.Services["prometheus"], "/etc/prometheus/prometheus.yml")
	if promFile == "" {
		t.Fatal("prometheus.yml is not mounted at /etc/prometheus/prometheus.yml")
	}
	if err := yaml.Unmarshal([]byte(readFile(t, promFile)), &prom); err != nil {
		t.Fatalf("%s: %v", promFile, err)
	}
	found := false
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, "relay:"+port) && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics") {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("%s does not scrape relay:%s/metrics", promFile, port)
	}
}

func TestGrafanaProvisioning(t *testing.T) {
	c := loadCompose(t)
	g := c.Services["grafana"]
	prov := hostPath(t, "grafana", g, "/etc/grafana/provisioning")
	if prov == "" {
		t.Fatal("grafana provisioning is not mounted at /etc/grafana/provisioning")
	}
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(prov, "datasources", "prometheus.yml"))), &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("datasources = %+v: want the prometheus service", ds.Datasources)
	}
	uid := ds.Datasources[0].UID

	var providers struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(prov, "dashboards", "relay.yml"))), &providers); err != nil {
		t.Fatal(err)
	}
	if len(providers.Providers) != 1 {
		t.Fatalf("providers = %+v", providers.Providers)
	}
	dashDir := hostPath(t, "grafana", g, providers.Providers[0].Options.Path)
	if dashDir == "" {
		t.Fatalf("dashboard path %s is not mounted", providers.Providers[0].Options.Path)
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" && hostPath(t, "grafana", g, home) == "" {
		t.Errorf("home dashboard %s is not mounted", home)
	}

	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dashDir, "relay.json"))), &dash); err != nil {
		t.Fatalf("relay.json: %v", err)
	}
	known := relayMetricNames(t)
	used := map[string]bool{}
	metric := regexp.MustCompile(`\brelay_[a-z0-9_]+\b`)
	for _, p := range dash.Panels {
		if p.Datasource.UID != uid {
			t.Errorf("panel %q uses data source %q, want %q", p.Title, p.Datasource.UID, uid)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != uid {
				t.Errorf("panel %q: query data source %q, want %q", p.Title, tg.Datasource.UID, uid)
			}
			names := metric.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no relay metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				used[n] = true
				if !known[n] {
					t.Errorf("panel %q: %s is not a metric the relay exposes", p.Title, n)
				}
			}
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{
		"relay_breaker_state", "relay_bulkhead_busy", "relay_bulkhead_waiting", "relay_bulkhead_rejected_total",
		"relay_tasks_total", "relay_algedonic_signals_total", "relay_downstream_request_duration_seconds_bucket",
	} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// relayMetricNames collects the names of every metric the relay's
// components register, with the _bucket, _sum and _count series.
func relayMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{names: map[string]bool{}}
	if _, err := metrics.New(rec); err != nil {
		t.Fatal(err)
	}
	rec.MustRegister(metrics.NewBreakerCollector(nil), metrics.NewBulkheadCollector(nil))
	if _, err := algedonic.NewEmitter(algedonic.Config{PainExchange: "p", PleasureExchange: "q"}, nopPublisher{}, algedonic.WithRegisterer(rec)); err != nil {
		t.Fatal(err)
	}
	if _, err := health.NewMonitor(health.Config{Instance: "i"}, health.Sources{AMQP: func() health.AMQPStatus { return health.AMQPStatus{} }}, nil, nil, health.WithRegisterer(rec)); err != nil {
		t.Fatal(err)
	}
	if len(rec.names) < 20 {
		t.Fatalf("only %d metric names found: %v", len(rec.names), rec.names)
	}
	return rec.names
}

// recorder is a prometheus.Registerer that keeps the names of what is
// registered on it.
type recorder struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
				r.names[m[1]+suffix] = true
			}
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return true }

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, string, []byte) error { return nil }

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
