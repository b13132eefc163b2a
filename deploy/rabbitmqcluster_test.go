package deploy

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The RabbitMQ Cluster Operator's module (github.com/rabbitmq/cluster-operator/v2)
// cannot be fetched through the module proxy, so the RabbitmqCluster
// (rabbitmq.com/v1beta1) is decoded into the types below: the fields of
// the operator's api/v1beta1 types that the manifest uses, with the same
// JSON names and Go types. A field the manifest uses that is missing here
// fails the strict decoding, so add it here, as the operator names it,
// before using it.

// rabbitmqCluster mirrors v1beta1.RabbitmqCluster.
type rabbitmqCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec rabbitmqClusterSpec `json:"spec,omitempty"`
}

// rabbitmqClusterSpec mirrors the fields of v1beta1.RabbitmqClusterSpec
// that the manifest uses.
type rabbitmqClusterSpec struct {
	Replicas                      *int32                           `json:"replicas,omitempty"`
	Image                         string                           `json:"image,omitempty"`
	Service                       rabbitmqClusterServiceSpec       `json:"service,omitempty"`
	Persistence                   rabbitmqClusterPersistenceSpec   `json:"persistence,omitempty"`
	Resources                     *corev1.ResourceRequirements     `json:"resources,omitempty"`
	Affinity                      *corev1.Affinity                 `json:"affinity,omitempty"`
	Tolerations                   []corev1.Toleration              `json:"tolerations,omitempty"`
	Rabbitmq                      rabbitmqClusterConfigurationSpec `json:"rabbitmq,omitempty"`
	TerminationGracePeriodSeconds *int64                           `json:"terminationGracePeriodSeconds,omitempty"`
}

// rabbitmqClusterServiceSpec mirrors v1beta1.RabbitmqClusterServiceSpec.
type rabbitmqClusterServiceSpec struct {
	Type        corev1.ServiceType `json:"type,omitempty"`
	Annotations map[string]string  `json:"annotations,omitempty"`
}

// rabbitmqClusterPersistenceSpec mirrors v1beta1.RabbitmqClusterPersistenceSpec.
type rabbitmqClusterPersistenceSpec struct {
	StorageClassName *string            `json:"storageClassName,omitempty"`
	Storage          *resource.Quantity `json:"storage,omitempty"`
}

// rabbitmqClusterConfigurationSpec mirrors v1beta1.RabbitmqClusterConfigurationSpec.
type rabbitmqClusterConfigurationSpec struct {
	AdditionalPlugins []string `json:"additionalPlugins,omitempty"`
	AdditionalConfig  string   `json:"additionalConfig,omitempty"`
	AdvancedConfig    string   `json:"advancedConfig,omitempty"`
	EnvConfig         string   `json:"envConfig,omitempty"`
}
