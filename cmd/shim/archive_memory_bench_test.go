package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
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
	if path := os.Getenv("SHIM_ARCHIVE_MEM_HEAPPROFILE"); path != "" {
		stop := make(chan struct{})
		defer close(stop)
		go peakHeapProfile(path, stop)
	}
	code := Run(context.Background(), []string{"archive", "-config", cfg, "-j", "4"}, &Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	if code != 0 {
		t.Fatalf("archive: exit %d", code)
	}
}

// peakHeapProfile writes a heap profile to path each time the heap in use reaches a new peak.
func peakHeapProfile(path string, stop <-chan struct{}) {
	var peak uint64
	for {
		select {
		case <-stop:
			return
		case <-time.After(300 * time.Millisecond):
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak+peak/10 {
			peak = ms.HeapInuse
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	}
}

// BenchmarkArchiveMemory runs `shim archive -j 4` as its own process against the simulated
// Synapse (this process) for worlds whose lobby room holds most of the events, and reports the
// archive process's peak resident memory (VmHWM, sampled from /proc every 100 ms, with the
// peaks of its anonymous and file-backed parts). Sizes come from
// SHIM_ARCHIVE_MEM_EVENTS (comma-separated, default 10000,100000); not run in CI. With
// SHIM_ARCHIVE_MEM_HEAPPROFILE=file the archive process writes a heap profile at its peak.
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
				var out strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &out
				t0 := time.Now()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				var hwm, anon, file int64 // VmHWM (the kernel's peak), peaks of RssAnon and RssFile: kB, sampled
			wait:
				for {
					select {
					case err := <-done:
						if err != nil {
							b.Fatalf("archive process: %v\n%s", err, out.String())
						}
						break wait
					case <-time.After(100 * time.Millisecond):
						h, a, f := procRSS(cmd.Process.Pid)
						hwm, anon, file = max(hwm, h), max(anon, a), max(file, f)
					}
				}
				wall := time.Since(t0)
				ru := cmd.ProcessState.SysUsage().(*syscall.Rusage) // CPU only: ru_maxrss counts the parent's pages from before exec
				cache, _ := os.Stat(filepath.Join(dir, "cache.db"))
				b.ReportMetric(float64(hwm)/1024, "VmHWM-MiB")
				b.ReportMetric(float64(anon)/1024, "peak-anon-MiB")
				b.ReportMetric(float64(file)/1024, "peak-file-MiB")
				b.ReportMetric(float64(w.EventCount())/wall.Seconds(), "events/s")
				if cache != nil {
					b.ReportMetric(float64(cache.Size())/(1<<20), "cache-MiB")
				}
				b.Logf("%d events: VmHWM %.1f MiB (RssAnon peak %.1f, RssFile peak %.1f), %s, CPU %s user + %s sys", w.EventCount(),
					float64(hwm)/1024, float64(anon)/1024, float64(file)/1024,
					wall.Round(time.Millisecond), time.Duration(ru.Utime.Nano()).Round(time.Millisecond), time.Duration(ru.Stime.Nano()).Round(time.Millisecond))
			}
		})
	}
}

// procRSS reads a process's peak resident memory (VmHWM) and its resident anonymous and
// file-backed memory (kB) from /proc.
func procRSS(pid int) (hwm, anon, file int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		switch name {
		case "VmHWM":
			hwm = n
		case "RssAnon":
			anon = n
		case "RssFile":
			file = n
		}
	}
	return hwm, anon, file
}
