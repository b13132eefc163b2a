// Package promreg registers a component's metrics all or none, so that a
// component whose registration clashes leaves the registry as it found
// it and its caller may resolve the clash and try again.
package promreg

import "github.com/prometheus/client_golang/prometheus"

// RegisterAll registers cs on reg in order. On the first failure it
// unregisters those it had registered and returns the failing index and
// the registry's error (an AlreadyRegisteredError, say); otherwise -1, nil.
func RegisterAll(reg prometheus.Registerer, cs ...prometheus.Collector) (int, error) {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return i, err
		}
	}
	return -1, nil
}
