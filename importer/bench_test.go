package importer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/conduit/rocksdbkv"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/signing"
)

// BenchmarkImport imports 1,000 users with 5 devices each (every device with keys, a token and
// two one-time keys) and 10,000 backed-up sessions (10 per user) into a fresh Conduit database,
// on each backend side by side: SQLite, and RocksDB when the shim-rocksdb helper is found
// ($SHIM_ROCKSDB). The export is written directly from synthetic users (no simulated Synapse:
// building it through one would measure the export). It reports the wall time per import, the
// peak Go heap above the starting point, the CPU time (user + system, the helper's included) per
// import, the process's peak RSS (VmHWM, the whole test binary) and the RocksDB helper's peak RSS.
//
//	SHIM_ROCKSDB=/path/to/shim-rocksdb go test -run '^$' -bench Import -benchtime 3x ./importer/
func BenchmarkImport(b *testing.B) {
	const users, devices, sessions = 1000, 5, 10
	id := testIdentity()
	dir := b.TempDir()
	var files []*exportfmt.UserFile
	devs := map[string][]string{}
	for i := range users {
		u := synthUser(testServer, i, devices, sessions)
		files = append(files, u)
		for d := range devices {
			devs[u.UID] = append(devs[u.UID], fmt.Sprintf("DEV%05d%02d", i, d))
		}
	}
	writeExport(b, dir, testServer, publishedKeys(id), files, nil, nil)
	files = nil
	for _, backend := range []string{conduit.BackendSQLite, conduit.BackendRocksDB} {
		for _, jobs := range []int{1, DefaultJobs} {
			b.Run(fmt.Sprintf("%s/j%d", backend, jobs), func(b *testing.B) {
				benchImport(b, backend, jobs, dir, id, devs)
			})
		}
	}
}

func benchImport(b *testing.B, backend string, jobs int, dir string, id *signing.Identity, devs map[string][]string) {
	const users, devices, sessions = 1000, 5, 10
	helper := ""
	if backend == conduit.BackendRocksDB {
		h, err := rocksdbkv.FindHelper()
		if err != nil {
			b.Skip(err)
		}
		helper = h
	}
	var elapsed, cpu time.Duration
	var peak uint64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		db := filepath.Join(b.TempDir(), fmt.Sprint(i))
		var err error
		if backend == conduit.BackendRocksDB {
			err = conduittest.NewFreshRocksDB(db, testServer, conduit.Version010, helper)
		} else {
			err = conduittest.NewFreshDB(db, testServer, conduit.Version010)
		}
		if err != nil {
			b.Fatal(err)
		}
		opts := conduit.Options{ServerName: testServer, Backend: backend, RocksDBHelper: helper}
		cfg := Config{ExportDir: dir, Identity: id, OpenTarget: ConduitTargetOn(opts, db), Sessions: &fakeSessions{devs}, Jobs: jobs}
		base, stop := heapPeak()
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		r, err := Run(context.Background(), cfg)
		elapsed += time.Since(start)
		cpu += cpuTime() - cpu0
		b.StopTimer()
		peak = max(peak, stop()-base)
		if err != nil {
			b.Fatal(err)
		}
		if r.Imported != users || r.Planned.BackupSessions != users*sessions || r.Planned.AccessTokens != users*devices {
			b.Fatalf("imported %d, %+v", r.Imported, r.Planned)
		}
		b.StartTimer()
	}
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/import")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/import")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(vmHWM())/(1<<10), "peak-RSS-MiB")
	if backend == conduit.BackendRocksDB {
		b.ReportMetric(float64(childMaxRSS())/(1<<10), "helper-peak-RSS-MiB")
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
	done, finished := make(chan struct{}), make(chan struct{})
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

// cpuTime is the user and system CPU time the process and its finished children used so far.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// childMaxRSS is the peak RSS in KiB of the largest finished child process (the RocksDB helper).
func childMaxRSS() uint64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return uint64(ru.Maxrss)
}

// vmHWM is the process's peak resident set size in KiB (Linux), 0 when unknown.
func vmHWM() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
