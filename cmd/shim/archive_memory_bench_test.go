package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// archiveMemChildEnv names the configuration TestArchiveMemoryChild archives with; the benchmark
// sets it in the child process it starts.
const archiveMemChildEnv = "SHIM_ARCHIVE_MEM_CONFIG"

// TestArchiveMemoryChild is the `shim archive` process of BenchmarkArchiveMemory; without
// SHIM_ARCHIVE_MEM_CONFIG (every ordinary run) it does nothing.
func TestArchiveMemoryChild(t *testing.T) {
	cfg := os.Getenv(archiveMemChildEnv)
	if cfg == "" {
		t.Skip("the child process of BenchmarkArchiveMemory")
	}
	code := Run(context.Background(), []string{"archive", "-config", cfg, "-j", "4"}, &Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	if code != 0 {
		t.Fatalf("archive: exit %d", code)
	}
}

// BenchmarkArchiveMemory runs `shim archive -j 4` as its own process against the simulated
// Synapse (this process) for worlds whose lobby room holds most of the events, and reports the
// archive process's peak resident memory (ru_maxrss, the kernel's VmHWM). Sizes come from
// SHIM_ARCHIVE_MEM_EVENTS (comma-separated, default 10000,100000); not run in CI.
//
//	SHIM_ARCHIVE_MEM_EVENTS=10000,100000,1000000 go test -run '^$' -bench ArchiveMemory -benchtime 1x -timeout 0 ./cmd/shim/
func BenchmarkArchiveMemory(b *testing.B) {
	sizes := os.Getenv("SHIM_ARCHIVE_MEM_EVENTS")
	if sizes == "" {
		sizes = "10000,100000"
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatalf("SHIM_ARCHIVE_MEM_EVENTS: %q is not a number", s)
		}
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			start := time.Now()
			w, err := world.Generate(world.Options{Seed: 77, BigRoomActivity: n, NoV1Room: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("world of %d events generated in %s", w.EventCount(), time.Since(start).Round(time.Second))
			sim := synapsesim.New(synapsesim.Options{World: w})
			srv := httptest.NewServer(sim.Handler())
			defer srv.Close()
			sim.URL = srv.URL
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				cfg, _, err := writeDemoConfig(dir, w, srv.URL, sim.AdminToken())
				if err != nil {
					b.Fatal(err)
				}
				cmd := exec.Command(os.Args[0], "-test.run", "^TestArchiveMemoryChild$", "-test.count", "1")
				cmd.Env = append(os.Environ(), archiveMemChildEnv+"="+cfg)
				t0 := time.Now()
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("archive process: %v\n%s", err, out)
				}
				wall := time.Since(t0)
				ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
				cache, _ := os.Stat(filepath.Join(dir, "cache.db"))
				b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
				b.ReportMetric(float64(w.EventCount())/wall.Seconds(), "events/s")
				if cache != nil {
					b.ReportMetric(float64(cache.Size())/(1<<20), "cache-MiB")
				}
				b.Logf("%d events: peak RSS %.1f MiB, %s, CPU %s user + %s sys", w.EventCount(), float64(ru.Maxrss)/1024,
					wall.Round(time.Millisecond), time.Duration(ru.Utime.Nano()).Round(time.Millisecond), time.Duration(ru.Stime.Nano()).Round(time.Millisecond))
			}
		})
	}
}
