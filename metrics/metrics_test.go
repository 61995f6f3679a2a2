package metrics

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches h's text exposition and parses it.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return parse(t, rec.Body.String())
}

func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, text)
	}
	return fams
}

// series finds the metric of family name whose labels are exactly labels ("k=v" pairs).
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
	want := strings.Join(labels, ",")
	var seen []string
	for _, m := range f.Metric {
		var got []string
		for _, l := range m.Label {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(got, ",") == want {
			return m
		}
		seen = append(seen, strings.Join(got, ","))
	}
	t.Fatalf("%s{%s} not found; have %v", name, want, seen)
	return nil
}

func TestObserveRequestCountsByEndpointAndStatus(t *testing.T) {
	m := New()
	m.ObserveRequest("backfill", 200, 3*time.Millisecond)
	m.ObserveRequest("backfill", 200, 2*time.Second)
	m.ObserveRequest("backfill", 401, 100*time.Microsecond)
	m.ObserveRequest("event", 404, time.Millisecond)

	fams := scrape(t, m.Handler())
	const reqs = "transition_matrix_federation_requests_total"
	for _, c := range []struct {
		endpoint, status string
		want             float64
	}{{"backfill", "200", 2}, {"backfill", "401", 1}, {"event", "404", 1}} {
		if got := series(t, fams, reqs, "endpoint="+c.endpoint, "status="+c.status).GetCounter().GetValue(); got != c.want {
			t.Errorf("%s{%s,%s} = %v, want %v", reqs, c.endpoint, c.status, got, c.want)
		}
	}
	if n := len(fams[reqs].Metric); n != 3 {
		t.Errorf("%d request series, want 3", n)
	}
	h := series(t, fams, "transition_matrix_federation_request_duration_seconds", "endpoint=backfill").GetHistogram()
	if h.GetSampleCount() != 3 || math.Abs(h.GetSampleSum()-2.0031) > 1e-9 {
		t.Fatalf("backfill duration: count %d sum %v, want 3 and 2.0031", h.GetSampleCount(), h.GetSampleSum())
	}
	buckets := map[float64]uint64{}
	for _, b := range h.Bucket {
		buckets[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if buckets[0.0005] != 1 || buckets[0.005] != 2 || buckets[1] != 2 || buckets[2.5] != 3 {
		t.Fatalf("backfill buckets: %v", buckets)
	}
	if got := series(t, fams, "transition_matrix_federation_request_duration_seconds", "endpoint=event").GetHistogram().GetSampleCount(); got != 1 {
		t.Fatalf("event duration count %d", got)
	}
}

func TestCacheUpstreamAndVerification(t *testing.T) {
	m := New()
	m.CacheLookup("event", true)
	m.CacheLookup("event", true)
	m.CacheLookup("event", false)
	m.CacheLookup("backfill", false)
	m.ObserveUpstream("backfill", "ok", 40*time.Millisecond)
	m.ObserveUpstream("backfill", "ok", 60*time.Millisecond)
	m.ObserveUpstream("event", "timeout", 60*time.Second)
	m.EventsVerified("verified", 100)
	m.EventsVerified("verified", 5)
	m.EventsVerified("rejected", 1)
	m.EventsVerified("rejected", 0)  // nothing to count
	m.EventsVerified("rejected", -3) // never decreases a counter (which would panic)

	if got := testutil.ToFloat64(m.cacheLookups.WithLabelValues("event", "hit")); got != 2 {
		t.Errorf("event hits %v", got)
	}
	if got := testutil.ToFloat64(m.cacheLookups.WithLabelValues("event", "miss")); got != 1 {
		t.Errorf("event misses %v", got)
	}
	if got := testutil.ToFloat64(m.verified.WithLabelValues("verified")); got != 105 {
		t.Errorf("verified %v", got)
	}
	if got := testutil.ToFloat64(m.verified.WithLabelValues("rejected")); got != 1 {
		t.Errorf("rejected %v", got)
	}

	fams := scrape(t, m.Handler())
	if got := series(t, fams, "transition_matrix_cache_lookups_total", "endpoint=backfill", "result=miss").GetCounter().GetValue(); got != 1 {
		t.Errorf("backfill misses %v", got)
	}
	up := series(t, fams, "transition_matrix_upstream_request_duration_seconds", "endpoint=backfill", "outcome=ok").GetHistogram()
	if up.GetSampleCount() != 2 || math.Abs(up.GetSampleSum()-0.1) > 1e-9 {
		t.Errorf("upstream backfill ok: count %d sum %v", up.GetSampleCount(), up.GetSampleSum())
	}
	if got := series(t, fams, "transition_matrix_upstream_request_duration_seconds", "endpoint=event", "outcome=timeout").GetHistogram().GetSampleCount(); got != 1 {
		t.Errorf("upstream event timeout count %d", got)
	}
	if got := series(t, fams, "transition_matrix_events_verified_total", "outcome=rejected").GetCounter().GetValue(); got != 1 {
		t.Errorf("scraped rejected %v", got)
	}
}

func TestHandlerServesRuntimeAndProcessMetrics(t *testing.T) {
	fams := scrape(t, New().Handler())
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("no %s in the exposition", name)
		}
	}
	m := New()
	m.ObserveRequest("event", 200, time.Millisecond)
	m.CacheLookup("event", true)
	m.ObserveUpstream("event", "ok", time.Millisecond)
	m.EventsVerified("verified", 1)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "transition_matrix_federation_requests_total",
		"transition_matrix_federation_request_duration_seconds", "transition_matrix_cache_lookups_total",
		"transition_matrix_upstream_request_duration_seconds", "transition_matrix_events_verified_total"); err != nil || n != 5 {
		t.Fatalf("linted %d of our 5 series (%v)", n, err)
	}
}

func TestRegistriesAreOwnAndIndependent(t *testing.T) {
	a, b := New(), New() // a second New must not panic on duplicate registration
	a.ObserveRequest("event", 200, 0)
	if n := testutil.CollectAndCount(b.requests); n != 0 {
		t.Fatalf("b sees %d series recorded in a", n)
	}
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), Namespace) {
			t.Fatalf("%s is in the global registry", f.GetName())
		}
	}
}

func TestNilMetricsDoesNothing(t *testing.T) {
	var m *Metrics
	m.ObserveRequest("event", 200, time.Second)
	m.CacheLookup("event", true)
	m.ObserveUpstream("event", "ok", time.Second)
	m.EventsVerified("verified", 3)
	if m.Registry() != nil {
		t.Fatal("nil metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("nil handler answered %d", rec.Code)
	}
}

func TestLabelValuesAreBounded(t *testing.T) {
	m := New()
	for i := range 3 * maxLabelValues {
		m.ObserveRequest(fmt.Sprintf("/_matrix/federation/v1/event/$%d", i), 200, 0)
	}
	m.ObserveRequest("", 200, 0)
	m.ObserveRequest("event", 0, 0)    // status never written
	m.ObserveRequest("event", 1000, 0) // not an HTTP status
	m.ObserveUpstream("event", "", 0)

	fams := scrape(t, m.Handler())
	reqs := fams["transition_matrix_federation_requests_total"].Metric
	// maxLabelValues distinct endpoints with status 200, then other/200 for the rest and the
	// empty one, and other/other for "event" (which came after the set was full) with bad statuses.
	if len(reqs) != maxLabelValues+2 {
		t.Fatalf("%d request series, want %d", len(reqs), maxLabelValues+2)
	}
	other := series(t, fams, "transition_matrix_federation_requests_total", "endpoint="+OverflowLabel, "status="+OverflowLabel)
	if other.GetCounter().GetValue() != 2 {
		t.Fatalf("other/other = %v, want 2", other.GetCounter().GetValue())
	}
	if got := series(t, fams, "transition_matrix_federation_requests_total", "endpoint="+OverflowLabel, "status=200").GetCounter().GetValue(); got != 2*maxLabelValues+1 {
		t.Fatalf("other/200 = %v, want %d", got, 2*maxLabelValues+1)
	}
	series(t, fams, "transition_matrix_upstream_request_duration_seconds", "endpoint="+OverflowLabel, "outcome="+OverflowLabel)

	// Statuses are the numeric code across the whole valid range.
	for _, s := range []int{100, 200, 429, 599} {
		if got := statusLabel(s); got != fmt.Sprint(s) {
			t.Errorf("statusLabel(%d) = %q", s, got)
		}
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := New()
	endpoints := []string{"backfill", "event", "get_missing_events", "state_ids"}
	statuses := []int{200, 200, 200, 404}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.ObserveRequest(endpoints[i&3], statuses[i&3], 1500*time.Microsecond)
		i++
	}
}

func BenchmarkObserveRequestParallel(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveRequest("backfill", 200, 1500*time.Microsecond)
		}
	})
}

func BenchmarkObserveRequestNil(b *testing.B) {
	var m *Metrics
	for b.Loop() {
		m.ObserveRequest("backfill", 200, time.Millisecond)
	}
}

func TestConcurrentUseCountsEverything(t *testing.T) {
	m := New()
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m.ObserveRequest(fmt.Sprintf("endpoint%d", (w+i)%4), 200, time.Millisecond)
				m.CacheLookup("event", i%2 == 0)
				m.ObserveUpstream("event", "ok", time.Millisecond)
				m.EventsVerified("verified", 2)
			}
		}()
	}
	wg.Wait()
	var total float64
	for e := range 4 {
		total += testutil.ToFloat64(m.requests.WithLabelValues(fmt.Sprintf("endpoint%d", e), "200"))
	}
	if total != workers*each || testutil.ToFloat64(m.verified.WithLabelValues("verified")) != 2*workers*each ||
		testutil.ToFloat64(m.cacheLookups.WithLabelValues("event", "hit")) != workers*each/2 {
		t.Fatalf("requests %v, verified %v, hits %v", total, testutil.ToFloat64(m.verified.WithLabelValues("verified")),
			testutil.ToFloat64(m.cacheLookups.WithLabelValues("event", "hit")))
	}
}
