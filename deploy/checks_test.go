package deploy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/fielderr"
)

const (
	// graceMargin is how much longer than shutdown_timeout the kubelet
	// must wait before SIGKILL: the time between its SIGTERM and the
	// relay's drain starting, and the exit after it.
	graceMargin = 10 * time.Second
	// samplePodName stands in for the pod's name, the value of a
	// metadata.name field reference.
	samplePodName = "relay-5d8f7c9b6d-x2x7q"
	// relayContainer is the name of the relay's container.
	relayContainer = "relay"
	// rabbitmqReplicas is the size of the broker's cluster: three nodes
	// keep quorum queues available through the loss of one.
	rabbitmqReplicas = 3
)

// check is one property of the bundle; it returns every violation.
type check struct {
	name string
	fn   func(*bundle) error
}

var checks = []check{
	{"config", checkConfig},
	{"grace period", checkGracePeriod},
	{"probes", checkProbes},
	{"security", checkSecurity},
	{"resources", checkResources},
	{"deployment", checkDeployment},
	{"secret", checkSecret},
	{"service", checkService},
	{"pdb", checkPDB},
	{"scaledobject", checkScaledObject},
	{"rabbitmq", checkRabbitmq},
}

// container returns the relay's container.
func (b *bundle) container() (*corev1.Container, error) {
	for i, c := range b.Deployment.Spec.Template.Spec.Containers {
		if c.Name == relayContainer {
			return &b.Deployment.Spec.Template.Spec.Containers[i], nil
		}
	}
	return nil, fmt.Errorf("deployment %s has no container %q", b.Deployment.Name, relayContainer)
}

// configPath returns the file given to `relay run --config`.
func configPath(c *corev1.Container) (string, error) {
	args := slices.Concat(c.Command, c.Args)
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v, nil
		}
		if a == "--config" && i+1 < len(args) {
			return args[i+1], nil
		}
	}
	return "", fmt.Errorf("container %s: no --config in %q", c.Name, args)
}

// configData returns the configuration file the relay reads: the ConfigMap
// key that the volume mounted at --config's directory puts at its name.
func (b *bundle) configData() (string, error) {
	c, err := b.container()
	if err != nil {
		return "", err
	}
	file, err := configPath(c)
	if err != nil {
		return "", err
	}
	dir, name := path.Split(file)
	dir = path.Clean(dir)
	var volume string
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == dir && m.SubPath == "" {
			volume = m.Name
		}
	}
	if volume == "" {
		return "", fmt.Errorf("--config %s: no volume is mounted at %s", file, dir)
	}
	for _, v := range b.Deployment.Spec.Template.Spec.Volumes {
		if v.Name != volume {
			continue
		}
		cm := v.ConfigMap
		if cm == nil || cm.Name != b.ConfigMap.Name {
			return "", fmt.Errorf("--config %s: volume %s is not the ConfigMap %s", file, volume, b.ConfigMap.Name)
		}
		key := name
		if len(cm.Items) > 0 {
			key = ""
			for _, it := range cm.Items {
				if it.Path == name {
					key = it.Key
				}
			}
		}
		data, ok := b.ConfigMap.Data[key]
		if key == "" || !ok {
			return "", fmt.Errorf("--config %s: ConfigMap %s puts no key at %s", file, b.ConfigMap.Name, name)
		}
		return data, nil
	}
	return "", fmt.Errorf("--config %s: no volume %s", file, volume)
}

// secretValue returns the value of key in b.Secret, named name.
func (b *bundle) secretValue(name, key string) (string, bool) {
	if name != b.Secret.Name {
		return "", false
	}
	if v, ok := b.Secret.StringData[key]; ok {
		return v, true
	}
	v, ok := b.Secret.Data[key]
	return string(v), ok
}

// podEnv returns the container's environment as the pod would have it.
func (b *bundle) podEnv(c *corev1.Container) (map[string]string, error) {
	if len(c.EnvFrom) > 0 {
		return nil, errors.New("envFrom is not checked; name each variable under env")
	}
	env := make(map[string]string)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := b.secretValue(ref.Name, ref.Key)
			if !ok {
				return nil, fmt.Errorf("env %s: Secret %s has no key %q", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = samplePodName
		default:
			return nil, fmt.Errorf("env %s: a source the check does not know", e.Name)
		}
	}
	return env, nil
}

// relayConfig runs the relay's own configuration check (that of `relay
// config check`) on the ConfigMap's file with the container's
// environment.
func (b *bundle) relayConfig() (*config.Config, error) {
	data, err := b.configData()
	if err != nil {
		return nil, err
	}
	c, err := b.container()
	if err != nil {
		return nil, err
	}
	env, err := b.podEnv(c)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadBytes([]byte(data), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok && v != ""
	})
	if err != nil {
		return nil, fmt.Errorf("relay config check:\n\t%s", strings.Join(fielderr.Lines(err), "\n\t"))
	}
	return cfg, nil
}

func checkConfig(b *bundle) error {
	cfg, err := b.relayConfig()
	if err != nil {
		return err
	}
	if cfg.Instance != samplePodName {
		return fmt.Errorf("instance is %q, want the pod's name (RELAY_INSTANCE from metadata.name)", cfg.Instance)
	}
	// The rest of `relay config check`: print the effective configuration.
	_, err = cfg.Redacted()
	return err
}

func checkGracePeriod(b *bundle) error {
	cfg, err := b.relayConfig()
	if err != nil {
		return err
	}
	spec := b.Deployment.Spec.Template.Spec
	grace := time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	c, err := b.container()
	if err != nil {
		return err
	}
	// A preStop hook runs before SIGTERM, inside the same grace period.
	var preStop time.Duration
	if l := c.Lifecycle; l != nil && l.PreStop != nil {
		if l.PreStop.Sleep == nil {
			return errors.New("a preStop hook other than sleep: its length cannot be checked")
		}
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	if need := preStop + cfg.ShutdownTimeout + graceMargin; grace < need {
		return fmt.Errorf("terminationGracePeriodSeconds is %v, want at least preStop (%v) + shutdown_timeout (%v) + %v = %v",
			grace, preStop, cfg.ShutdownTimeout, graceMargin, need)
	}
	return nil
}

// containerPort resolves a probe's or a Service's port against the
// container's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, error) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %s is not a port of container %s", p.String(), c.Name)
}

func checkProbes(b *bundle) error {
	cfg, err := b.relayConfig()
	if err != nil {
		return err
	}
	c, err := b.container()
	if err != nil {
		return err
	}
	host, portText, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %q: %w", cfg.HTTP.Listen, err)
	}
	var errs []error
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		errs = append(errs, fmt.Errorf("http.listen %s is out of the kubelet's reach; listen on 0.0.0.0", cfg.HTTP.Listen))
	}
	listenPort, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("http.listen %q: %w", cfg.HTTP.Listen, err)
	}
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			errs = append(errs, fmt.Errorf("no HTTP %s probe", p.kind))
			continue
		}
		get := p.probe.HTTPGet
		if get.Path != p.path {
			errs = append(errs, fmt.Errorf("%s probe: path %q, want %q", p.kind, get.Path, p.path))
		}
		if get.Scheme != "" && get.Scheme != corev1.URISchemeHTTP {
			errs = append(errs, fmt.Errorf("%s probe: scheme %s, the relay serves HTTP", p.kind, get.Scheme))
		}
		port, err := containerPort(c, get.Port)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s probe: %w", p.kind, err))
		case int(port) != listenPort:
			errs = append(errs, fmt.Errorf("%s probe: port %d, http.listen is %s", p.kind, port, cfg.HTTP.Listen))
		}
	}
	return errors.Join(errs...)
}

func checkSecurity(b *bundle) error {
	c, err := b.container()
	if err != nil {
		return err
	}
	pod := b.Deployment.Spec.Template.Spec.SecurityContext
	if pod == nil {
		pod = new(corev1.PodSecurityContext)
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = new(corev1.SecurityContext)
	}
	var errs []error
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		errs = append(errs, errors.New("runAsNonRoot is not true"))
	}
	for _, uid := range []*int64{pod.RunAsUser, sc.RunAsUser} {
		if uid != nil && *uid == 0 {
			errs = append(errs, errors.New("runAsUser is 0"))
		}
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		errs = append(errs, errors.New("readOnlyRootFilesystem is not true"))
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		errs = append(errs, errors.New("allowPrivilegeEscalation is not false"))
	}
	if sc.Privileged != nil && *sc.Privileged {
		errs = append(errs, errors.New("privileged"))
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		errs = append(errs, errors.New("capabilities: ALL is not dropped"))
	} else if len(sc.Capabilities.Add) > 0 {
		errs = append(errs, fmt.Errorf("capabilities added: %v", sc.Capabilities.Add))
	}
	return errors.Join(errs...)
}

// goMemLimit parses GOMEMLIMIT as the Go runtime does: a number of bytes
// with an optional B, KiB, MiB, GiB or TiB suffix.
func goMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	shift := uint(0)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = v, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("GOMEMLIMIT %q: not a size", s)
	}
	return n << shift, nil
}

func checkResources(b *bundle) error {
	c, err := b.container()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[name]
		lim, hasLim := c.Resources.Limits[name]
		switch {
		case !hasReq || req.Sign() <= 0:
			errs = append(errs, fmt.Errorf("no %s request", name))
		case !hasLim || lim.Sign() <= 0:
			errs = append(errs, fmt.Errorf("no %s limit", name))
		case req.Cmp(lim) > 0:
			errs = append(errs, fmt.Errorf("%s request %s above its limit %s", name, req.String(), lim.String()))
		}
	}
	env, err := b.podEnv(c)
	if err != nil {
		return err
	}
	if v, ok := env["GOMEMLIMIT"]; ok {
		n, err := goMemLimit(v)
		lim := c.Resources.Limits[corev1.ResourceMemory]
		switch {
		case err != nil:
			errs = append(errs, err)
		case lim.Sign() > 0 && resource.NewQuantity(n, resource.BinarySI).Cmp(lim) >= 0:
			errs = append(errs, fmt.Errorf("GOMEMLIMIT %s is not below the memory limit %s", v, lim.String()))
		}
	}
	return errors.Join(errs...)
}

// selects reports whether sel selects a pod with the given labels.
func selects(sel *metav1.LabelSelector, podLabels map[string]string) (bool, error) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return false, errors.New("empty selector")
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return s.Matches(labels.Set(podLabels)), nil
}

func checkDeployment(b *bundle) error {
	d := b.Deployment
	ok, err := selects(d.Spec.Selector, d.Spec.Template.Labels)
	if err != nil {
		return fmt.Errorf("deployment selector: %w", err)
	}
	if !ok {
		return errors.New("the deployment's selector does not select its own pods")
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return errors.New("strategy Recreate stops every relay at once")
	}
	for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
		ok, err := selects(tsc.LabelSelector, d.Spec.Template.Labels)
		if err != nil {
			return fmt.Errorf("topology spread on %s: %w", tsc.TopologyKey, err)
		}
		if !ok {
			return fmt.Errorf("topology spread on %s does not count the relay's pods", tsc.TopologyKey)
		}
	}
	return nil
}

func checkSecret(b *bundle) error {
	c, err := b.container()
	if err != nil {
		return err
	}
	var errs []error
	fromSecret := false
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			if e.Name == "RELAY_AMQP_URL" {
				errs = append(errs, errors.New("RELAY_AMQP_URL is written in the Deployment; take it from a Secret"))
			}
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if _, ok := b.secretValue(ref.Name, ref.Key); !ok {
			errs = append(errs, fmt.Errorf("env %s: no key %q in a Secret %s (have the Secret %s)", e.Name, ref.Key, ref.Name, b.Secret.Name))
		}
		if e.Name == "RELAY_AMQP_URL" {
			fromSecret = true
		}
	}
	if !fromSecret {
		errs = append(errs, errors.New("RELAY_AMQP_URL does not come from a Secret"))
	}
	return errors.Join(errs...)
}

func checkService(b *bundle) error {
	s := b.Service
	c, err := b.container()
	if err != nil {
		return err
	}
	cfg, err := b.relayConfig()
	if err != nil {
		return err
	}
	ok, err := selects(&metav1.LabelSelector{MatchLabels: s.Spec.Selector}, b.Deployment.Spec.Template.Labels)
	if err != nil {
		return fmt.Errorf("service %s selector: %w", s.Name, err)
	}
	if !ok {
		return fmt.Errorf("service %s does not select the relay's pods", s.Name)
	}
	_, listenPort, _ := net.SplitHostPort(cfg.HTTP.Listen)
	for _, p := range s.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		if cp, err := containerPort(c, target); err == nil && strconv.Itoa(int(cp)) == listenPort {
			return nil
		}
	}
	return fmt.Errorf("service %s has no port to http.listen's port %s", s.Name, listenPort)
}

// minReplicas is the fewest replicas the ScaledObject keeps.
func (b *bundle) minReplicas() int32 {
	if m := b.ScaledObject.Spec.MinReplicaCount; m != nil {
		return *m
	}
	return 0
}

func checkPDB(b *bundle) error {
	p := b.PDB
	ok, err := selects(p.Spec.Selector, b.Deployment.Spec.Template.Labels)
	if err != nil {
		return fmt.Errorf("pdb %s selector: %w", p.Name, err)
	}
	if !ok {
		return fmt.Errorf("pdb %s does not select the relay's pods", p.Name)
	}
	// With the fewest replicas running, one must still be evictable, or
	// no node with a relay on it could be drained.
	n := int(b.minReplicas())
	switch {
	case p.Spec.MaxUnavailable != nil && p.Spec.MinAvailable != nil:
		return errors.New("both minAvailable and maxUnavailable")
	case p.Spec.MaxUnavailable != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, n, true)
		if err != nil {
			return err
		}
		if v < 1 {
			return fmt.Errorf("maxUnavailable %s lets no relay be evicted", p.Spec.MaxUnavailable.String())
		}
	case p.Spec.MinAvailable != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, n, true)
		if err != nil {
			return err
		}
		if v >= n {
			return fmt.Errorf("minAvailable %s with %d replicas lets no relay be evicted", p.Spec.MinAvailable.String(), n)
		}
	default:
		return errors.New("neither minAvailable nor maxUnavailable")
	}
	return nil
}

// queueMatcher finds the queue label's matcher in a PromQL query.
var queueMatcher = regexp.MustCompile(`\bqueue\s*(=~|=)\s*"([^"]*)"`)

// backlogQueues returns the queues a query's relay_queue_backlog selects:
// queue="a" or queue=~"a|b" with literal names.
func backlogQueues(query string) ([]string, error) {
	if !strings.Contains(query, "relay_queue_backlog") {
		return nil, fmt.Errorf("query %q is not on relay_queue_backlog", query)
	}
	if strings.Contains(query, "rabbitmq_") {
		return nil, fmt.Errorf("query %q reads the broker's raw queue depth", query)
	}
	m := queueMatcher.FindAllStringSubmatch(query, -1)
	if len(m) != 1 {
		return nil, fmt.Errorf("query %q: want one queue matcher, queue=\"q\" or queue=~\"q1|q2\"", query)
	}
	if m[0][1] == "=" {
		return []string{m[0][2]}, nil
	}
	var qs []string
	for _, q := range strings.Split(m[0][2], "|") {
		q = strings.ReplaceAll(q, `\\.`, ".")
		if strings.ContainsAny(q, `()[]*+?{}^$\`) {
			return nil, fmt.Errorf("query %q: queue %q is not a literal name", query, q)
		}
		qs = append(qs, q)
	}
	return qs, nil
}

func checkScaledObject(b *bundle) error {
	so := b.ScaledObject
	cfg, err := b.relayConfig()
	if err != nil {
		return err
	}
	var errs []error
	ref := so.Spec.ScaleTargetRef
	if ref == nil {
		return errors.New("no scaleTargetRef")
	}
	if ref.Name != b.Deployment.Name || (ref.Kind != "" && ref.Kind != "Deployment") ||
		(ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
		errs = append(errs, fmt.Errorf("scaleTargetRef %s %s %s, want the Deployment %s", ref.APIVersion, ref.Kind, ref.Name, b.Deployment.Name))
	}
	if b.Deployment.Spec.Replicas != nil {
		errs = append(errs, errors.New("the Deployment sets replicas, which every apply would reset under the autoscaler"))
	}
	minimum := b.minReplicas()
	if minimum < 1 {
		errs = append(errs, fmt.Errorf("minReplicaCount %d: at least one relay must run", minimum))
	}
	if m := so.Spec.MaxReplicaCount; m != nil && *m < minimum {
		errs = append(errs, fmt.Errorf("maxReplicaCount %d below minReplicaCount %d", *m, minimum))
	}
	if len(so.Spec.Triggers) == 0 {
		errs = append(errs, errors.New("no triggers"))
	}
	var workQueues []string
	for _, w := range cfg.Work {
		workQueues = append(workQueues, w.Queue)
	}
	known := slices.Clone(workQueues)
	for _, o := range cfg.Outbound {
		known = append(known, o.Queue)
	}
	for i, t := range so.Spec.Triggers {
		if t.Type != "prometheus" {
			errs = append(errs, fmt.Errorf("trigger %d: type %q; scale on relay_queue_backlog through the prometheus scaler", i, t.Type))
			continue
		}
		if t.Metadata["serverAddress"] == "" {
			errs = append(errs, fmt.Errorf("trigger %d: no serverAddress", i))
		}
		if th, err := strconv.ParseFloat(t.Metadata["threshold"], 64); err != nil || th <= 0 {
			errs = append(errs, fmt.Errorf("trigger %d: threshold %q is not a positive number", i, t.Metadata["threshold"]))
		}
		qs, err := backlogQueues(t.Metadata["query"])
		if err != nil {
			errs = append(errs, fmt.Errorf("trigger %d: %w", i, err))
			continue
		}
		for _, q := range qs {
			if !slices.Contains(known, q) {
				errs = append(errs, fmt.Errorf("trigger %d: queue %q is not in the configuration", i, q))
			}
		}
		for _, q := range workQueues {
			if !slices.Contains(qs, q) {
				errs = append(errs, fmt.Errorf("trigger %d: work queue %q is left out of the query", i, q))
			}
		}
	}
	return errors.Join(errs...)
}

func checkRabbitmq(b *bundle) error {
	r := b.RabbitmqCluster
	if r.Spec.Replicas == nil || *r.Spec.Replicas != rabbitmqReplicas {
		got := "unset (1)"
		if r.Spec.Replicas != nil {
			got = strconv.Itoa(int(*r.Spec.Replicas))
		}
		return fmt.Errorf("RabbitmqCluster %s: replicas %s, want %d", r.Name, got, rabbitmqReplicas)
	}
	cfg, err := b.relayConfig()
	if err != nil {
		return err
	}
	// The operator names the cluster's client Service after the cluster.
	for _, raw := range strings.Split(cfg.AMQP.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("amqp.url: %w", err)
		}
		first, _, _ := strings.Cut(u.Hostname(), ".")
		if first != r.Name && !strings.HasPrefix(first, r.Name+"-server-") {
			return fmt.Errorf("amqp.url names host %s, not the RabbitmqCluster %s", u.Hostname(), r.Name)
		}
	}
	return nil
}
