//go:build synapse

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
)

// BenchmarkRealSynapse measures, against one seeded real Synapse and side by side in one run:
// seeding; export at -j 1/4/8 (users/s); archive at -j 1/4 next to a plain client backfilling
// every room from Synapse's own /backfill at the same concurrency (events/s); and the shim's
// warm-cache backfill next to Synapse's /backfill for the same rooms and pages.
func BenchmarkRealSynapse(b *testing.B) {
	start := time.Now()
	bed := newRealBed(b, synapsetest.Options{}, synapsetest.SeedOptions{})
	b.ReportMetric(time.Since(start).Seconds(), "seed-s")
	b.Logf("seeding (start included): %s", time.Since(start).Round(time.Millisecond))
	users := float64(len(bed.rec.Users))
	for _, j := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("export/j=%d", j), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				out := filepath.Join(b.TempDir(), "export")
				if code, stdout, stderr := runShim(b, nil, "export", "-config", bed.cfg, "-out", out, "-j", fmt.Sprint(j)); code != 0 {
					b.Fatalf("export: exit %d\n%s\n%s", code, stdout, stderr)
				}
			}
			b.ReportMetric(users*float64(b.N)/b.Elapsed().Seconds(), "users/s")
		})
	}
	id := bed.s.Identity()
	keys := staticKeys(id)
	rooms := bed.hostable()
	heads := map[string][]string{}
	ctx := context.Background()
	held := 0 // events of the hostable rooms in Synapse's database
	for _, r := range rooms {
		ids, err := bed.s.EventIDs(ctx, r.RoomID)
		if err != nil {
			b.Fatal(err)
		}
		held += len(ids)
		var resp struct {
			Results []struct {
				EventID string `json:"event_id"`
			} `json:"results"`
		}
		if err := bed.s.Do(ctx, "GET", "/_synapse/admin/v1/rooms/"+synapsetest.PathEscape(r.RoomID)+"/forward_extremities", bed.s.AdminToken, nil, &resp); err != nil {
			b.Fatal(err)
		}
		for _, e := range resp.Results {
			heads[r.RoomID] = append(heads[r.RoomID], e.EventID)
		}
	}
	// backfillAll backfills every room from baseURL with j rooms at once and returns the events.
	backfillAll := func(b *testing.B, baseURL string, j int) int {
		var mu sync.Mutex
		total := 0
		sem := make(chan struct{}, j)
		var wg sync.WaitGroup
		for _, r := range rooms {
			wg.Add(1)
			sem <- struct{}{}
			go func(r *synapsetest.Room) {
				defer wg.Done()
				defer func() { <-sem }()
				c := &conduitlike.Consumer{Identity: id, Destination: id.ServerName, BaseURL: baseURL, Keys: keys, HTTP: &http.Client{Timeout: time.Minute}}
				res, err := c.BackfillRoom(ctx, r.RoomID, r.Version, heads[r.RoomID])
				if err != nil || !res.ReachedCreate {
					b.Errorf("room %s from %s: %v (create reached: %v)", r.RoomID, baseURL, err, res != nil && res.ReachedCreate)
					return
				}
				mu.Lock()
				total += len(res.Timeline)
				mu.Unlock()
			}(r)
		}
		wg.Wait()
		return total
	}
	for _, j := range []int{1, 4} {
		b.Run(fmt.Sprintf("archive/j=%d", j), func(b *testing.B) {
			events := 0
			for i := 0; i < b.N; i++ {
				cfg := bed.cfg + fmt.Sprintf(".archive%d-%d.yaml", j, i)
				data, _ := os.ReadFile(bed.cfg)
				data = bytes.Replace(data, []byte("path: cache.db"), []byte(fmt.Sprintf("path: cache-bench-%d-%d.db", j, i)), 1)
				if err := os.WriteFile(cfg, data, 0o600); err != nil {
					b.Fatal(err)
				}
				if code, stdout, stderr := runShim(b, nil, "archive", "-config", cfg, "-j", fmt.Sprint(j)); code != 0 {
					b.Fatalf("archive: exit %d\n%s\n%s", code, stdout, stderr)
				}
				events += held
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
		b.Run(fmt.Sprintf("synapse-backfill/j=%d", j), func(b *testing.B) {
			events := 0
			for i := 0; i < b.N; i++ {
				events += backfillAll(b, bed.s.BaseURL, j)
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
	// The shim with a warm cache (archived above) next to Synapse for the same rooms and pages.
	if code, stdout, stderr := runShim(b, nil, "archive", "-config", bed.cfg, "-j", "4"); code != 0 {
		b.Fatalf("archive: exit %d\n%s\n%s", code, stdout, stderr)
	}
	shimURL := startServe(b, bed.cfg)
	for _, j := range []int{1, 4} {
		b.Run(fmt.Sprintf("shim-warm-backfill/j=%d", j), func(b *testing.B) {
			events := 0
			for i := 0; i < b.N; i++ {
				events += backfillAll(b, shimURL, j)
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
