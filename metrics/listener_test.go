package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestListenerServesMetricsAndStops(t *testing.T) {
	m := New()
	m.ObserveRequest("backfill", 200, 5*time.Millisecond)
	core, logs := observer.New(zap.InfoLevel)
	l, err := Listen("127.0.0.1:0", m, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	base := "http://" + l.Addr().String()

	// The socket is bound before Serve starts, so the first request needs no waiting.
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	fams := parse(t, body)
	if got := series(t, fams, "transition_matrix_federation_requests_total", "endpoint=backfill", "status=200").GetCounter().GetValue(); got != 1 {
		t.Fatalf("scraped %v requests", got)
	}
	if code, _ := get(t, base+"/"); code != 404 {
		t.Fatalf("/: %d, want 404: only /metrics is served", code)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 404 {
		t.Fatalf("/debug/pprof/: %d, want 404", code)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Fatal("still accepting after shutdown")
	}
	if logs.FilterMessage("metrics listening").FilterField(zap.String("addr", l.Addr().String())).Len() != 1 ||
		logs.FilterMessage("metrics listener stopped").Len() != 1 {
		t.Fatalf("log lines: %v", logs.AllUntimed())
	}
}

// blockingCollector holds a scrape until released, to catch one in flight.
type blockingCollector struct {
	entered chan struct{}
	release chan struct{}
	desc    *prometheus.Desc
}

func (c *blockingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *blockingCollector) Collect(ch chan<- prometheus.Metric) {
	close(c.entered)
	<-c.release
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 7)
}

func TestListenerFinishesScrapeInFlightOnShutdown(t *testing.T) {
	m := New()
	c := &blockingCollector{entered: make(chan struct{}), release: make(chan struct{}),
		desc: prometheus.NewDesc("test_slow_gauge", "A gauge that takes its time.", nil, nil)}
	m.Registry().MustRegister(c)
	l, err := Listen("127.0.0.1:0", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()

	type answer struct {
		code int
		body string
		err  error
	}
	scraped := make(chan answer, 1)
	go func() {
		resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
		if err != nil {
			scraped <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		scraped <- answer{resp.StatusCode, string(body), err}
	}()
	<-c.entered // the scrape is inside the handler
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) with a scrape in flight", err)
	case <-scraped:
		t.Fatal("scrape finished before it was released")
	default:
	}
	close(c.release)
	a := <-scraped
	if a.err != nil || a.code != 200 || !strings.Contains(a.body, "test_slow_gauge 7") {
		t.Fatalf("scrape in flight: %v %d %s", a.err, a.code, a.body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestListenErrors(t *testing.T) {
	if _, err := Listen("127.0.0.1:0", nil, nil); err == nil || !strings.Contains(err.Error(), "no metrics") {
		t.Fatalf("nil metrics: %v", err)
	}
	if _, err := Listen("not an address", New(), nil); err == nil || !strings.Contains(err.Error(), `listen on not an address`) {
		t.Fatalf("bad address: %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = Serve(context.Background(), busy.Addr().String(), New(), nil)
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("port in use: %v", err)
	}
}

// TestServeWithoutAddressWaitsForContext: with no address, Serve blocks until the context ends.
// synctest.Wait returns once the goroutine is blocked or gone, so a Serve that returned at once is
// seen every time.
func TestServeWithoutAddressWaitsForContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Serve(ctx, "", New(), nil) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("returned before the context ended: %v", err)
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
