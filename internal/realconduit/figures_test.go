//go:build conduit

package realconduit

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
)

// envFigures turns on TestWarmFigures and sets the large room's message count.
const envFigures = "TM_CONDUIT_FIGURES"

// TestWarmFigures measures shim warm on real Conduit for a large room: events per second, the
// share of that time the shim spent answering Conduit, and Conduit's CPU and peak memory meanwhile.
// It reports figures and asserts only that the room arrived whole.
func TestWarmFigures(t *testing.T) {
	bin := Bin(t)
	n, _ := strconv.Atoi(os.Getenv(envFigures))
	if n <= 0 {
		t.Skipf("set %s to the large room's message count (e.g. 2000) to measure warm", envFigures)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	syn := synapsetest.Start(t, synapsetest.Options{})
	seeded, err := Seed(ctx, syn, SeedOptions{LargeRoomMessages: n})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMigration(t, SourceOf(syn), Options{Bin: bin})
	for _, step := range []func(context.Context) error{m.FirstStart, m.Export, m.Archive, m.Import, m.Serve, m.StartTarget, m.Rejoin} {
		if err := step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before, err := m.ShimMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sampler, err := StartSampler(m.Conduit.Pid())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, werr := m.RunShim(ctx, "warm", "-j", "1")
	wall := time.Since(start)
	usage := sampler.Stop()
	if werr != nil {
		t.Fatal(werr)
	}
	after, err := m.ShimMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const served = "transition_matrix_federation_request_duration_seconds_sum"
	const upstream = "transition_matrix_upstream_request_duration_seconds_sum"
	shimBusy := MetricSum(after, served) - MetricSum(before, served)
	upBusy := MetricSum(after, upstream) - MetricSum(before, upstream)

	c := NewClient(m.Conduit.URL)
	alice := seeded.Users[0]
	hist, err := History(ctx, c, alice.AccessToken, seeded.LargeRoom)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) < n {
		t.Fatalf("the large room has %d events on Conduit after warm, want ≥ %d", len(hist), n)
	}
	t.Logf("warm of %d rooms (largest: %d events) on real Conduit: %s, %.0f events/s of the largest room",
		len(seeded.Rooms), len(hist), wall.Round(time.Millisecond), float64(len(hist))/wall.Seconds())
	t.Logf("shim serve busy %.2fs = %.0f%% of warm's time (of which Synapse upstream %.2fs)", shimBusy, 100*shimBusy/wall.Seconds(), upBusy)
	t.Logf("Conduit meanwhile: CPU %.2fs = %.0f%% of one core, peak RSS %.1f MiB", usage.CPU.Seconds(), 100*usage.CPU.Seconds()/wall.Seconds(), float64(usage.PeakRSS)/(1<<20))
}
