package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the metrics g gathers, for GET /metrics. It speaks the
// Prometheus text format, and OpenMetrics to scrapers that ask for it; the
// relay records no exemplars, so neither carries any.
//
// A collector that fails does not fail the scrape: the handler serves every
// metric it could gather (answering 500 only when none could be), because a
// dashboard missing one breaker is better than a dashboard missing the
// relay. A nil g serves an empty exposition.
func Handler(g prometheus.Gatherer) http.Handler {
	if g == nil {
		g = prometheus.Gatherers{}
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}
