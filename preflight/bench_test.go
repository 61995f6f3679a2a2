package preflight_test

import (
	"os"
	"strconv"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/preflight"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// BenchmarkCheck runs the whole preflight against a simulated Synapse over a world of
// PREFLIGHT_BENCH_USERS extra users (default 200) and PREFLIGHT_BENCH_ROOMS extra rooms (default
// 100), and reports the requests one run sends.
func BenchmarkCheck(b *testing.B) {
	users, rooms := envInt("PREFLIGHT_BENCH_USERS", 200), envInt("PREFLIGHT_BENCH_ROOMS", 100)
	w, err := world.Generate(world.Options{Seed: 9, Users: users, Rooms: rooms, MessagesPerRoom: 3})
	if err != nil {
		b.Fatal(err)
	}
	s := synapsesim.Start(b, synapsesim.Options{World: w})
	c, err := synapseclient.New(synapseclient.Config{BaseURL: s.URL, AdminToken: s.AdminToken(), ServerName: w.ServerName, Identity: s.Identity()})
	if err != nil {
		b.Fatal(err)
	}
	ck := &simChecker{c: c, s: s}
	b.ResetTimer()
	for range b.N {
		s.ResetStats()
		rep, err := ck.checker().Run(b.Context())
		if err != nil || rep.ExitStatus != 1 {
			b.Fatalf("exit %v, %v", rep, err)
		}
	}
	b.StopTimer()
	total := 0
	for _, n := range s.Stats() {
		total += n
	}
	b.ReportMetric(float64(total), "requests/run")
	b.ReportMetric(float64(len(w.Users)), "users")
	b.ReportMetric(float64(len(w.Rooms)), "rooms")
}

// simChecker builds a fresh checker over one client and simulated Synapse for every run.
type simChecker struct {
	c *synapseclient.Client
	s *synapsesim.Server
}

func (p *simChecker) checker() *preflight.Checker {
	return &preflight.Checker{Admin: p.c.Admin(), Federation: p.c.Federation(), Identity: p.s.Identity(), Statfs: plentyOfSpace, ExportDir: os.TempDir(), CachePath: os.TempDir()}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
