package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	kustomize "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// manifestDir is the kustomization the tests check.
const manifestDir = "kubernetes"

// bundle is the set of resources the kustomization makes, each decoded
// into its API type. There is exactly one of each.
type bundle struct {
	Deployment      *appsv1.Deployment
	ConfigMap       *corev1.ConfigMap
	Secret          *corev1.Secret
	Service         *corev1.Service
	PDB             *policyv1.PodDisruptionBudget
	ScaledObject    *kedav1alpha1.ScaledObject
	RabbitmqCluster *rabbitmqCluster
}

// place returns a new object for the field *dst, and the function that
// stores it there once decoded: one object of each kind.
func place[T any](dst **T, what string) (any, func() error) {
	o := new(T)
	return o, func() error {
		if *dst != nil {
			return fmt.Errorf("a second %s", what)
		}
		*dst = o
		return nil
	}
}

// add decodes one YAML document strictly into its API type and puts it in b.
func (b *bundle) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	what := tm.APIVersion + " " + tm.Kind
	var (
		obj   any
		store func() error
	)
	switch what {
	case "apps/v1 Deployment":
		obj, store = place(&b.Deployment, what)
	case "v1 ConfigMap":
		obj, store = place(&b.ConfigMap, what)
	case "v1 Secret":
		obj, store = place(&b.Secret, what)
	case "v1 Service":
		obj, store = place(&b.Service, what)
	case "policy/v1 PodDisruptionBudget":
		obj, store = place(&b.PDB, what)
	case "keda.sh/v1alpha1 ScaledObject":
		obj, store = place(&b.ScaledObject, what)
	case "rabbitmq.com/v1beta1 RabbitmqCluster":
		obj, store = place(&b.RabbitmqCluster, what)
	default:
		return fmt.Errorf("apiVersion %q kind %q: not a resource of the relay's deployment", tm.APIVersion, tm.Kind)
	}
	if err := unmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return store()
}

// unmarshalStrict decodes a YAML document into obj as strictly as the API
// server's strict field validation does: a field that is unknown, given
// twice, or spelt in another case is an error. (sigs.k8s.io/yaml's own
// UnmarshalStrict matches field names regardless of case, as
// encoding/json does, and would let readOnlyRootFileSystem through.)
func unmarshalStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// complete reports the kinds b lacks.
func (b *bundle) complete() error {
	var errs []error
	for kind, missing := range map[string]bool{
		"Deployment":          b.Deployment == nil,
		"ConfigMap":           b.ConfigMap == nil,
		"Secret":              b.Secret == nil,
		"Service":             b.Service == nil,
		"PodDisruptionBudget": b.PDB == nil,
		"ScaledObject":        b.ScaledObject == nil,
		"RabbitmqCluster":     b.RabbitmqCluster == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("no %s", kind))
		}
	}
	return errors.Join(errs...)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// addStream decodes every document of a YAML stream into b; documents
// with nothing but comments are skipped.
func (b *bundle) addStream(data []byte, source string) error {
	for i, doc := range docSeparator.Split(string(data), -1) {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return fmt.Errorf("%s, document %d: %w", source, i+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		if err := b.add([]byte(doc)); err != nil {
			return fmt.Errorf("%s, document %d: %w", source, i+1, err)
		}
	}
	return nil
}

// readKustomization decodes dir/kustomization.yaml strictly into
// kustomize's own type.
func readKustomization(dir string) (*kustomize.Kustomization, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomize.Kustomization
	if err := unmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	if k.APIVersion != kustomize.KustomizationVersion || k.Kind != kustomize.KustomizationKind {
		return nil, fmt.Errorf("kustomization.yaml: apiVersion %q kind %q, want %q %q",
			k.APIVersion, k.Kind, kustomize.KustomizationVersion, kustomize.KustomizationKind)
	}
	return &k, nil
}

// loadFiles reads the resources dir/kustomization.yaml lists, as they are
// in the files. Every listed resource must be a file of dir that decodes,
// and every YAML file of dir must be listed.
func loadFiles(dir string) (*bundle, error) {
	k, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	if len(k.Resources) == 0 {
		return nil, errors.New("kustomization.yaml lists no resources")
	}
	b := new(bundle)
	listed := make(map[string]bool)
	for _, r := range k.Resources {
		if filepath.IsAbs(r) || strings.Contains(r, "..") || strings.Contains(r, "://") {
			return nil, fmt.Errorf("resource %q: not a file of %s", r, dir)
		}
		listed[filepath.Clean(r)] = true
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", r, err)
		}
		if err := b.addStream(data, r); err != nil {
			return nil, err
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		name := filepath.Base(f)
		if name != "kustomization.yaml" && !listed[name] {
			return nil, fmt.Errorf("%s is not listed in kustomization.yaml", name)
		}
	}
	return b, b.complete()
}

// loadBuilt reads the resources as `kubectl kustomize dir` makes them.
// It returns errNoKubectl when kubectl is not on the PATH.
func loadBuilt(dir string) (*bundle, error) {
	out, err := kustomizeBuild(dir)
	if err != nil {
		return nil, err
	}
	b := new(bundle)
	if err := b.addStream(out, "kubectl kustomize"); err != nil {
		return nil, err
	}
	return b, b.complete()
}

// kustomizeBuild returns the output of `kubectl kustomize dir`, or
// errNoKubectl.
func kustomizeBuild(dir string) ([]byte, error) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		return nil, errNoKubectl
	}
	// kustomize reads local files only; the bound is for a kubectl that
	// hangs, not a measure of the test.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

var errNoKubectl = errors.New("kubectl is not on the PATH")
