package eventcache

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
)

// TestMemoryAtScale fills a cache with EVENTCACHE_SCALE_EVENTS events (e.g.
// 1000000) and logs fill rate, Go heap, RSS and file size, then read
// latencies. Skipped unless the variable is set; run with -v -timeout 0.
func TestMemoryAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("EVENTCACHE_SCALE_EVENTS"))
	if n <= 0 || testing.Short() {
		t.Skip("set EVENTCACHE_SCALE_EVENTS to run")
	}
	const rooms, batch = 100, 1000
	dir := os.Getenv("EVENTCACHE_SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "scale.db")
	os.Remove(path)
	c, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	perRoom := n / rooms
	start := time.Now()
	var evs []Event
	for i := range perRoom {
		for r := range rooms {
			evs = append(evs, synthEvent(fmt.Sprintf("!room%03d:synapse.test", r), i))
			if len(evs) == batch {
				if err := c.Put(evs...); err != nil {
					t.Fatal(err)
				}
				evs = evs[:0]
			}
		}
		if (i+1)%(perRoom/10) == 0 {
			t.Logf("%d events in %v", (i+1)*rooms, time.Since(start).Round(time.Second))
		}
	}
	if err := c.Put(evs...); err != nil {
		t.Fatal(err)
	}
	fill := time.Since(start)
	st, _ := c.Stats()
	report := func(what string) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rss, anon, file := procStatus()
		t.Logf("%s: heap in use %.1f MiB, RSS %.1f MiB (anon %.1f, file-backed %.1f)",
			what, float64(ms.HeapInuse)/(1<<20), float64(rss)/1024, float64(anon)/1024, float64(file)/1024)
	}
	t.Logf("filled %d events in %v (%.0f events/s, batches of %d); file %.1f MiB",
		st.Events, fill.Round(time.Second), float64(st.Events)/fill.Seconds(), batch, float64(st.DiskBytes)/(1<<20))
	report("after fill")

	rng := rand.New(rand.NewPCG(1, 2))
	const gets, backfills = 20000, 2000
	t0 := time.Now()
	for range gets {
		r := rng.IntN(rooms)
		if _, err := c.Get(synthID(fmt.Sprintf("!room%03d:synapse.test", r), rng.IntN(perRoom))); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("random Get: %v each", (time.Since(t0) / gets).Round(time.Microsecond/10))
	t0 = time.Now()
	for range backfills {
		room := fmt.Sprintf("!room%03d:synapse.test", rng.IntN(rooms))
		got, _, err := c.Backfill(room, []string{synthID(room, 200+rng.IntN(perRoom-200))}, 100)
		if err != nil || len(got) != 100 {
			t.Fatal(len(got), err)
		}
	}
	t.Logf("Backfill 100: %v each", (time.Since(t0) / backfills).Round(time.Microsecond))
	report("after reads")
	if os.Getenv("EVENTCACHE_SCALE_CHECK") != "" {
		t0 = time.Now()
		if err := c.CheckIntegrity(); err != nil {
			t.Fatal(err)
		}
		t.Logf("CheckIntegrity: %v", time.Since(t0).Round(time.Second))
		report("after check")
	}
}

// TestWritesKeepMappedPagesOutOfRSS: after a scan and after writes, the cache file's mapped
// pages do not stay in the process's resident memory (Linux; /proc/self/smaps of the mapping).
func TestWritesKeepMappedPagesOutOfRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps"); err != nil {
		t.Skip("no /proc/self/smaps")
	}
	defer func(v int64) { kv.DropFileResidentAbove = v }(kv.DropFileResidentAbove)
	kv.DropFileResidentAbove = 0 // drop whenever due: the test process holds little
	path := filepath.Join(t.TempDir(), "rss.db")
	c, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 40 {
		var evs []Event
		for j := range 500 {
			evs = append(evs, synthEvent("!r:a.test", i*500+j))
		}
		if err := c.Put(evs...); err != nil {
			t.Fatal(err)
		}
	}
	// A scan reads every event; it drops what it faulted in as it goes (every 16 MiB read, 64 KiB counted per get).
	if _, err := c.StatusCounts("!r:a.test"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if rss := mappedRSS(t, path); rss*3 > fi.Size()>>10 {
		t.Fatalf("%d KiB of the %d KiB file stay resident after a scan", rss, fi.Size()>>10)
	}
	// Read every event through the index walk, then write: the write drops the pages.
	for i := 0; i < 20000; i += 100 {
		if _, _, err := c.GetMany([]string{synthID("!r:a.test", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(synthEvent("!r:a.test", 20000)); err != nil {
		t.Fatal(err)
	}
	fi, err = os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	rss := mappedRSS(t, path)
	t.Logf("file %d KiB, resident of its mapping %d KiB", fi.Size()>>10, rss)
	if rss*4 > fi.Size()>>10 {
		t.Fatalf("%d KiB of the %d KiB file stay resident after a write", rss, fi.Size()>>10)
	}
}

// mappedRSS is the resident memory (KiB) of this process's mappings of path.
func mappedRSS(t *testing.T, path string) int64 {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 6 && strings.Contains(fields[0], "-") {
			in = fields[len(fields)-1] == path
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			n, _ := strconv.ParseInt(fields[1], 10, 64)
			total += n
		}
	}
	return total
}
