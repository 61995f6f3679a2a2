// Package metrics holds the shim's Prometheus metrics (federation requests, cache lookups,
// upstream latency, verified events) in a registry of its own, served on a separate listener.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name of the shim.
const Namespace = "transition_matrix"

// durationBuckets span answers from the cache (sub-millisecond) to the 60 s request deadline.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// maxLabelValues bounds how many distinct values one label takes; later newcomers count as
// OverflowLabel, so a caller that passes something unbounded (a path, an error text) cannot blow
// up the number of series.
const maxLabelValues = 32

// OverflowLabel replaces a label value once maxLabelValues distinct values were seen, and an
// empty value.
const OverflowLabel = "other"

// Metrics records what the shim does. A nil *Metrics is valid: every method does nothing.
type Metrics struct {
	registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	cacheLookups    *prometheus.CounterVec
	upstream        *prometheus.HistogramVec
	verified        *prometheus.CounterVec

	endpoints, outcomes, verifyOutcomes labelSet
}

// New returns metrics registered in a registry of their own, with the Go runtime and process
// collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "federation", Name: "requests_total",
			Help: "Federation requests answered, by endpoint (route name) and HTTP status.",
		}, []string{"endpoint", "status"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "federation", Name: "request_duration_seconds",
			Help: "Time to answer a federation request, by endpoint.", Buckets: durationBuckets,
		}, []string{"endpoint"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "cache", Name: "lookups_total",
			Help: "Event cache lookups, by endpoint and result (hit or miss).",
		}, []string{"endpoint", "result"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "upstream", Name: "request_duration_seconds",
			Help: "Time of requests to Synapse, by endpoint and outcome (ok, not_found, error, timeout, ...).", Buckets: durationBuckets,
		}, []string{"endpoint", "outcome"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "events", Name: "verified_total",
			Help: "Events checked before caching, by outcome (verified or rejected).",
		}, []string{"outcome"}),
	}
	m.registry.MustRegister(m.requests, m.requestDuration, m.cacheLookups, m.upstream, m.verified,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRequest counts one answered federation request and its duration.
func (m *Metrics) ObserveRequest(endpoint string, status int, took time.Duration) {
	if m == nil {
		return
	}
	endpoint = m.endpoints.bound(endpoint)
	m.requests.WithLabelValues(endpoint, statusLabel(status)).Inc()
	m.requestDuration.WithLabelValues(endpoint).Observe(took.Seconds())
}

// CacheLookup counts one lookup in the event cache for endpoint, a hit or a miss.
func (m *Metrics) CacheLookup(endpoint string, hit bool) {
	if m == nil {
		return
	}
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheLookups.WithLabelValues(m.endpoints.bound(endpoint), result).Inc()
}

// ObserveUpstream records the duration of one request to Synapse and its outcome, a short word
// such as ok, not_found, error or timeout.
func (m *Metrics) ObserveUpstream(endpoint, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.upstream.WithLabelValues(m.endpoints.bound(endpoint), m.outcomes.bound(outcome)).Observe(took.Seconds())
}

// EventsVerified counts n events checked with the given outcome (verified or rejected).
func (m *Metrics) EventsVerified(outcome string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.verified.WithLabelValues(m.verifyOutcomes.bound(outcome)).Add(float64(n))
}

// Handler serves the registry in the Prometheus exposition formats; for nil metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// Registry is the registry the metrics live in, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.registry
}

// statusLabels holds the label of every valid HTTP status code, so requests allocate nothing.
var statusLabels = func() (s [500]string) {
	for i := range s {
		s[i] = strconv.Itoa(100 + i)
	}
	return s
}()

// statusLabel is the numeric code; anything outside 100–599 counts as OverflowLabel.
func statusLabel(status int) string {
	if status < 100 || status > 599 {
		return OverflowLabel
	}
	return statusLabels[status-100]
}

// labelSet admits at most maxLabelValues distinct values for one label.
type labelSet struct {
	seen sync.Map // string → struct{}
	mu   sync.Mutex
	n    int
}

// bound returns v when it is known or there is room for it, OverflowLabel otherwise.
func (s *labelSet) bound(v string) string {
	if v == "" {
		return OverflowLabel
	}
	if _, ok := s.seen.Load(v); ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen.Load(v); ok {
		return v
	}
	if s.n >= maxLabelValues {
		return OverflowLabel
	}
	s.seen.Store(v, struct{}{})
	s.n++
	return v
}
