package export

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// benchWorld has 1,000 local users (993 plus the 7 fixed ones) and 300 rooms (293 plus 7).
var benchWorld = world.Options{Seed: 1000, Users: 993, Rooms: 293, MessagesPerRoom: 10}

// BenchmarkExport exports benchWorld at -j 1 and at the default -j; each iteration writes a fresh
// directory. It reports requests/s, the export's size and the peak heap above the world's own.
// Generating the world takes a while; it is built once for every sub-benchmark.
//
//	go test -run '^$' -bench Export -benchtime 1x ./export/
func BenchmarkExport(b *testing.B) {
	w := testWorld(b, benchWorld)
	for _, jobs := range []int{1, DefaultJobs} {
		b.Run(fmt.Sprintf("j%d", jobs), func(b *testing.B) {
			sim := synapsesim.Start(b, synapsesim.Options{World: w})
			var requests int64
			var elapsed time.Duration
			var peak uint64
			for i := 0; b.Loop(); i++ {
				cfg := exportConfig(sim, filepath.Join(b.TempDir(), fmt.Sprint(i)))
				cfg.Jobs = jobs
				base, stop := heapPeak()
				start := time.Now()
				s := runExport(b, cfg)
				elapsed += time.Since(start)
				peak = max(peak, stop()-base)
				requests += s.Requests
				b.SetBytes(s.Bytes)
			}
			b.ReportMetric(float64(requests)/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

// heapPeak samples the heap in use until stop is called; it returns the heap before sampling and
// a stop function giving the highest sample.
func heapPeak() (base uint64, stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base = ms.HeapInuse
	var mu sync.Mutex
	peak := base
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				mu.Lock()
				peak = max(peak, m.HeapInuse)
				mu.Unlock()
			}
		}
	}()
	return base, func() uint64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
