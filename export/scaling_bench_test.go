package export

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
)

// scalingLatency is the simulated Synapse's answer time in BenchmarkExportScaling: a network
// round trip plus Synapse's own work, as a real deployment shows it.
const scalingLatency = 5 * time.Millisecond

// BenchmarkExportScaling exports benchWorld (1,000 users) from a simulated Synapse that takes
// scalingLatency per request, at -j 1, 4 and 8 side by side, and reports the speed-up of each
// over -j 1 (issue 18 asks -j 8 ≥ 3× -j 1).
//
//	go test -run '^$' -bench ExportScaling -benchtime 1x ./export/
func BenchmarkExportScaling(b *testing.B) {
	w := testWorld(b, benchWorld)
	sim := synapsesim.Start(b, synapsesim.Options{World: w, Latency: scalingLatency})
	jobs := []int{1, 4, 8}
	elapsed, cpu := make([]time.Duration, len(jobs)), make([]time.Duration, len(jobs))
	for i := 0; b.Loop(); i++ {
		for k, j := range jobs {
			cfg := exportConfig(sim, filepath.Join(b.TempDir(), fmt.Sprint(i, "-", j)))
			cfg.Jobs = j
			cfg.ManifestInterval = DefaultManifestInterval // as the command runs it
			start, cpu0 := time.Now(), processCPU()
			runExport(b, cfg)
			elapsed[k] += time.Since(start)
			cpu[k] += processCPU() - cpu0
		}
	}
	for k, j := range jobs {
		b.ReportMetric(elapsed[k].Seconds()/float64(b.N), fmt.Sprintf("s-j%d", j))
		b.ReportMetric(cpu[k].Seconds()/float64(b.N), fmt.Sprintf("cpu-s-j%d", j))
		if k > 0 {
			b.ReportMetric(elapsed[0].Seconds()/elapsed[k].Seconds(), fmt.Sprintf("x-j%d/j1", j))
		}
	}
}

// processCPU is the CPU time (user and system) this process has used: exporter and simulated
// Synapse together, as they share the process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
