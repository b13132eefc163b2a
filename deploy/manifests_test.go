package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// TestManifests runs every check on the resources as the files hold them
// and, when kubectl is there, as `kubectl kustomize` builds them.
func TestManifests(t *testing.T) {
	sources := []struct {
		name string
		load func(string) (*bundle, error)
	}{
		{"files", loadFiles},
		{"kustomize", loadBuilt},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			b, err := src.load(manifestDir)
			if errors.Is(err, errNoKubectl) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range checks {
				t.Run(c.name, func(t *testing.T) {
					if err := c.fn(b); err != nil {
						t.Error(err)
					}
				})
			}
		})
	}
}

// TestChecksFail breaks the manifests one way at a time and expects the
// check that guards against it to fail.
func TestChecksFail(t *testing.T) {
	setConfig := func(old, new string) func(*bundle) {
		return func(b *bundle) {
			b.ConfigMap.Data["relay.yaml"] = strings.Replace(b.ConfigMap.Data["relay.yaml"], old, new, 1)
		}
	}
	container := func(b *bundle) *corev1.Container {
		c, err := b.container()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	env := func(b *bundle, name string) *corev1.EnvVar {
		c := container(b)
		for i := range c.Env {
			if c.Env[i].Name == name {
				return &c.Env[i]
			}
		}
		t.Fatalf("no env %s", name)
		return nil
	}
	cases := []struct {
		name   string
		check  string
		mutate func(*bundle)
	}{
		{"unknown configuration key", "config", setConfig("prefetch: 64", "prefech: 64")},
		{"invalid configuration value", "config", setConfig("shutdown_timeout: 30s", "shutdown_timeout: 30")},
		{"instance not from the pod", "config", func(b *bundle) {
			c := container(b)
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "RELAY_INSTANCE" })
		}},
		{"environment from an unknown source", "config", func(b *bundle) {
			env(b, "RELAY_INSTANCE").ValueFrom.FieldRef.FieldPath = "spec.nodeName"
		}},
		{"config mounted elsewhere", "config", func(b *bundle) {
			container(b).VolumeMounts[0].MountPath = "/etc/other"
		}},
		{"config key missing", "config", func(b *bundle) {
			b.ConfigMap.Data = map[string]string{"other.yaml": ""}
		}},
		{"grace period equal to shutdown_timeout", "grace period", func(b *bundle) {
			b.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		}},
		{"grace period default", "grace period", func(b *bundle) {
			b.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = nil
		}},
		{"shutdown_timeout raised", "grace period", setConfig("shutdown_timeout: 30s", "shutdown_timeout: 40s")},
		{"preStop sleep eats the grace period", "grace period", func(b *bundle) {
			container(b).Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 10}}}
		}},
		{"liveness on /health", "probes", func(b *bundle) { container(b).LivenessProbe.HTTPGet.Path = "/health" }},
		{"readiness on /healthz", "probes", func(b *bundle) { container(b).ReadinessProbe.HTTPGet.Path = "/healthz" }},
		{"no readiness probe", "probes", func(b *bundle) { container(b).ReadinessProbe = nil }},
		{"probe on an unknown port name", "probes", func(b *bundle) {
			container(b).LivenessProbe.HTTPGet.Port = intstr.FromString("metrics")
		}},
		{"listen port differs", "probes", setConfig("listen: 0.0.0.0:9090", "listen: 0.0.0.0:9091")},
		{"listen on loopback", "probes", setConfig("listen: 0.0.0.0:9090", "listen: 127.0.0.1:9090")},
		{"root allowed", "security", func(b *bundle) {
			b.Deployment.Spec.Template.Spec.SecurityContext.RunAsNonRoot = ptr.To(false)
		}},
		{"uid 0", "security", func(b *bundle) { b.Deployment.Spec.Template.Spec.SecurityContext.RunAsUser = ptr.To[int64](0) }},
		{"writable root file system", "security", func(b *bundle) {
			container(b).SecurityContext.ReadOnlyRootFilesystem = ptr.To(false)
		}},
		{"privilege escalation", "security", func(b *bundle) {
			container(b).SecurityContext.AllowPrivilegeEscalation = nil
		}},
		{"capabilities kept", "security", func(b *bundle) { container(b).SecurityContext.Capabilities = nil }},
		{"capability added", "security", func(b *bundle) {
			container(b).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}},
		{"no memory limit", "resources", func(b *bundle) { delete(container(b).Resources.Limits, corev1.ResourceMemory) }},
		{"no cpu request", "resources", func(b *bundle) { delete(container(b).Resources.Requests, corev1.ResourceCPU) }},
		{"request above limit", "resources", func(b *bundle) {
			container(b).Resources.Requests[corev1.ResourceMemory] = resource.MustParse("1Gi")
		}},
		{"GOMEMLIMIT at the limit", "resources", func(b *bundle) { env(b, "GOMEMLIMIT").Value = "256MiB" }},
		{"deployment selects other pods", "deployment", func(b *bundle) {
			b.Deployment.Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "other"
		}},
		{"spread over other pods", "deployment", func(b *bundle) {
			b.Deployment.Spec.Template.Spec.TopologySpreadConstraints[0].LabelSelector.MatchLabels = map[string]string{"app": "relay"}
		}},
		{"recreate strategy", "deployment", func(b *bundle) {
			b.Deployment.Spec.Strategy.Type = "Recreate"
			b.Deployment.Spec.Strategy.RollingUpdate = nil
		}},
		{"secret key renamed", "secret", func(b *bundle) {
			b.Secret.StringData = map[string]string{"uri": b.Secret.StringData["url"]}
		}},
		{"secret renamed", "secret", func(b *bundle) { b.Secret.Name = "other" }},
		{"broker URL written in the Deployment", "secret", func(b *bundle) {
			e := env(b, "RELAY_AMQP_URL")
			e.ValueFrom, e.Value = nil, "amqp://relay:relay@relay-rabbitmq:5672/"
		}},
		{"service selects other pods", "service", func(b *bundle) { b.Service.Spec.Selector["app.kubernetes.io/instance"] = "other" }},
		{"service without selector", "service", func(b *bundle) { b.Service.Spec.Selector = nil }},
		{"service to another port", "service", func(b *bundle) { b.Service.Spec.Ports[0].TargetPort = intstr.FromInt32(8080) }},
		{"pdb selects other pods", "pdb", func(b *bundle) { b.PDB.Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "other" }},
		{"pdb blocks every eviction", "pdb", func(b *bundle) { b.PDB.Spec.MaxUnavailable = ptr.To(intstr.FromInt32(0)) }},
		{"pdb minAvailable of every replica", "pdb", func(b *bundle) {
			b.PDB.Spec.MaxUnavailable, b.PDB.Spec.MinAvailable = nil, ptr.To(intstr.FromString("100%"))
		}},
		{"scales another deployment", "scaledobject", func(b *bundle) { b.ScaledObject.Spec.ScaleTargetRef.Name = "other" }},
		{"scales a statefulset", "scaledobject", func(b *bundle) { b.ScaledObject.Spec.ScaleTargetRef.Kind = "StatefulSet" }},
		{"scales to zero", "scaledobject", func(b *bundle) { b.ScaledObject.Spec.MinReplicaCount = ptr.To[int32](0) }},
		{"min replicas unset", "scaledobject", func(b *bundle) { b.ScaledObject.Spec.MinReplicaCount = nil }},
		{"deployment sets replicas", "scaledobject", func(b *bundle) { b.Deployment.Spec.Replicas = ptr.To[int32](3) }},
		{"rabbitmq scaler", "scaledobject", func(b *bundle) { b.ScaledObject.Spec.Triggers[0].Type = "rabbitmq" }},
		{"raw queue depth", "scaledobject", func(b *bundle) {
			b.ScaledObject.Spec.Triggers[0].Metadata["query"] = `sum(rabbitmq_queue_messages_ready{queue="vsm.tasks.echo"})`
		}},
		{"work queue left out", "scaledobject", func(b *bundle) {
			b.ScaledObject.Spec.Triggers[0].Metadata["query"] = `sum(max by (queue) (relay_queue_backlog{queue="vsm.outbound"}))`
		}},
		{"unknown queue", "scaledobject", func(b *bundle) {
			b.ScaledObject.Spec.Triggers[0].Metadata["query"] = `sum(max by (queue) (relay_queue_backlog{queue=~"vsm.tasks.echo|vsm.tasks.other"}))`
		}},
		{"no threshold", "scaledobject", func(b *bundle) { delete(b.ScaledObject.Spec.Triggers[0].Metadata, "threshold") }},
		{"no triggers", "scaledobject", func(b *bundle) { b.ScaledObject.Spec.Triggers = nil }},
		{"one broker node", "rabbitmq", func(b *bundle) { b.RabbitmqCluster.Spec.Replicas = ptr.To[int32](1) }},
		{"broker replicas unset", "rabbitmq", func(b *bundle) { b.RabbitmqCluster.Spec.Replicas = nil }},
		{"relay on another broker", "rabbitmq", func(b *bundle) {
			b.Secret.StringData["url"] = "amqp://relay:change-me@elsewhere:5672/"
		}},
	}
	byName := make(map[string]check)
	for _, c := range checks {
		byName[c.name] = c
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := byName[tc.check]
			if !ok {
				t.Fatalf("no check %q", tc.check)
			}
			b, err := loadFiles(manifestDir)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.fn(b); err != nil {
				t.Fatalf("before the change: %v", err)
			}
			tc.mutate(b)
			err = c.fn(b)
			if err == nil {
				t.Fatalf("check %q passed", tc.check)
			}
			t.Logf("check %q: %v", tc.check, err)
		})
	}
}

// TestLoadFilesFails breaks the files themselves: strict decoding and the
// kustomization's list of resources must catch each change.
func TestLoadFilesFails(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		mutate  func(string) string
		wantErr string
	}{
		{"misspelt field", "deployment.yaml", func(s string) string {
			return strings.Replace(s, "readOnlyRootFilesystem:", "readOnlyRootFileSystem:", 1)
		}, "unknown field"},
		{"field at the wrong level", "poddisruptionbudget.yaml", func(s string) string {
			return strings.Replace(s, "  unhealthyPodEvictionPolicy:", "unhealthyPodEvictionPolicy:", 1)
		}, "unknown field"},
		{"duplicate field", "service.yaml", func(s string) string {
			return strings.Replace(s, "  type: ClusterIP\n", "  type: ClusterIP\n  type: NodePort\n", 1)
		}, "already set"},
		{"unknown ScaledObject field", "scaledobject.yaml", func(s string) string {
			return strings.Replace(s, "minReplicaCount:", "minReplicas:", 1)
		}, "unknown field"},
		{"unknown RabbitmqCluster field", "rabbitmqcluster.yaml", func(s string) string {
			return strings.Replace(s, "replicas: 3", "nodes: 3", 1)
		}, "unknown field"},
		{"unknown kind", "secret.yaml", func(s string) string {
			return strings.Replace(s, "kind: Secret", "kind: SealedSecret", 1)
		}, "not a resource"},
		{"second ConfigMap", "secret.yaml", func(s string) string {
			return s + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
		}, "a second"},
		{"missing resource", "kustomization.yaml", func(s string) string {
			return strings.Replace(s, "- service.yaml", "- services.yaml", 1)
		}, "services.yaml"},
		{"resource not listed", "kustomization.yaml", func(s string) string {
			return strings.Replace(s, "  - service.yaml", "", 1)
		}, "not listed"},
		{"unknown kustomization field", "kustomization.yaml", func(s string) string {
			return strings.Replace(s, "resources:", "resource:", 1)
		}, "unknown field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, manifestDir)
			p := filepath.Join(dir, tc.file)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			changed := tc.mutate(string(data))
			if changed == string(data) {
				t.Fatal("the change did not apply")
			}
			if err := os.WriteFile(p, []byte(changed), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = loadFiles(dir)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("loadFiles: %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// copyDir copies the YAML files of dir into a temporary directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	copyFiles(t, dir, out)
	return out
}

// copyFiles copies the YAML files of dir into out.
func copyFiles(t *testing.T, dir, out string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
