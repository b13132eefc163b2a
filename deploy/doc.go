// Package deploy holds the tests of the relay's deployment files. It is a
// module of its own, so that the Kubernetes, KEDA and kustomize API types
// the tests decode into stay out of the relay's go.mod.
//
// The manifests are in kubernetes/ (a kustomization; see README.md). The
// tests decode every resource the kustomization lists strictly into its
// API type (an unknown or misspelt field is an error), run the relay's own
// configuration check on the ConfigMap with the environment the pod would
// have, and check that the resources agree with each other: the grace
// period outlasts shutdown_timeout, the probes reach /healthz and /readyz
// on the port http.listen names, the selectors select the relay's pods,
// the autoscaler scales the Deployment on relay_queue_backlog, and so on.
// When kubectl is on the PATH, the same checks run on the output of
// `kubectl kustomize` too.
package deploy
