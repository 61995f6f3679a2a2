//go:build synapse

package export_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/export"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// realBenchUsers are the accounts BenchmarkExportRealSynapseJobs adds to the seeded world, so
// that -j has items to spread (created without a password: no bcrypt on Synapse's one core).
const realBenchUsers = 300

// BenchmarkExportRealSynapseJobs exports a seeded real Synapse (TM_SYNAPSE_PYTHON) with
// realBenchUsers more accounts at -j 1, 4 and 8, side by side, and reports each time and the
// speed-up over -j 1.
//
//	TM_SYNAPSE_PYTHON=... go test -tags synapse -run '^$' -bench ExportRealSynapseJobs -benchtime 1x ./export/
func BenchmarkExportRealSynapseJobs(b *testing.B) {
	s := synapsetest.Start(b, synapsetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if _, err := synapsetest.Seed(ctx, s, synapsetest.SeedOptions{Messages: 5}); err != nil {
		b.Fatal(err)
	}
	for i := range realBenchUsers {
		uid := fmt.Sprintf("@bench-%03d:%s", i, s.ServerName)
		body := map[string]any{"displayname": fmt.Sprintf("Bench %d", i)}
		if err := s.Do(ctx, "PUT", "/_synapse/admin/v2/users/"+synapsetest.PathEscape(uid), s.AdminToken, body, nil); err != nil {
			b.Fatal(err)
		}
	}
	// One untimed export first, so that -j 1 does not pay for Synapse's cold caches alone.
	cfg := synapseclient.Config{BaseURL: s.BaseURL, AdminToken: s.AdminToken, ServerName: s.ServerName, Identity: s.Identity()}
	if _, err := export.Run(ctx, export.Config{Dir: b.TempDir(), Jobs: 4, Synapse: cfg}); err != nil {
		b.Fatalf("warm-up export: %v", err)
	}
	jobs := []int{1, 4, 8}
	elapsed := make([]time.Duration, len(jobs))
	for i := 0; b.Loop(); i++ {
		for k, j := range jobs {
			start := time.Now()
			sum, err := export.Run(ctx, export.Config{Dir: b.TempDir(), Jobs: j, Synapse: cfg})
			if err != nil {
				b.Fatalf("-j %d: %v", j, err)
			}
			elapsed[k] += time.Since(start)
			if i == 0 {
				b.Logf("-j %d: %d users, %d rooms, %d requests in %s", j, sum.Users, sum.Rooms, sum.Requests, time.Since(start).Round(time.Millisecond))
			}
		}
	}
	for k, j := range jobs {
		b.ReportMetric(elapsed[k].Seconds()/float64(b.N), fmt.Sprintf("s-j%d", j))
		if k > 0 {
			b.ReportMetric(elapsed[0].Seconds()/elapsed[k].Seconds(), fmt.Sprintf("x-j%d/j1", j))
		}
	}
}
