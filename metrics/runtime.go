package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// RegisterRuntime registers the Go runtime's metrics (go_*) and the
// process's (process_*: CPU, memory, open file descriptors) on reg, both or
// neither.
func RegisterRuntime(reg prometheus.Registerer) error {
	if reg == nil {
		return errors.New("metrics: nil registerer")
	}
	return registerAll(reg,
		named{"go_*", collectors.NewGoCollector()},
		named{"process_*", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
	)
}
