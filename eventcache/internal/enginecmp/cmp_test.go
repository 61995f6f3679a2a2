package enginecmp

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/eventcache"
)

const rooms = 50

func synthID(room string, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", room, i))
	return "$" + base64.RawURLEncoding.EncodeToString(sum[:])
}

func roomName(r int) string { return fmt.Sprintf("!room%03d:synapse.test", r) }

// synthEvent is event i of a room: a chain with a fork/merge every 10 events, 1-2 KB of JSON.
func synthEvent(room string, i int) eventcache.Event {
	id := synthID(room, i)
	var prev []string
	switch p := i % 10; {
	case i == 0:
	case p == 6:
		prev = []string{synthID(room, i-2)}
	case p == 7:
		prev = []string{synthID(room, i-2), synthID(room, i-1)}
	default:
		prev = []string{synthID(room, i-1)}
	}
	d := i % 10
	if d >= 6 {
		d--
	}
	sum := sha256.Sum256([]byte(id))
	size := 1000 + (i*397)%1000
	pad := strings.Repeat(hex.EncodeToString(sum[:]), size/64+1)[:size-120]
	return eventcache.Event{
		ID: id, RoomID: room, RoomVersion: "10", Depth: int64(i/10*9 + d + 1), Stream: int64(i),
		PrevEvents: prev, AuthEvents: []string{synthID(room, 0)}, Type: "m.room.message",
		OriginServerTS: 1735689600000 + int64(i), Status: eventcache.StatusVerified,
		JSON: fmt.Appendf(nil, `{"event_id":%q,"room_id":%q,"type":"m.room.message","content":{"body":%q}}`, id, room, pad),
	}
}

func scaleN() int {
	if n, _ := strconv.Atoi(os.Getenv("ECMP_EVENTS")); n > 0 {
		return n
	}
	return 100000
}

// fill writes n events (n/rooms per room, rooms interleaved) in batches of 100.
func fill(c *eventcache.Cache, n int) error {
	var evs []eventcache.Event
	for i := range n / rooms {
		for r := range rooms {
			evs = append(evs, synthEvent(roomName(r), i))
			if len(evs) == 100 {
				if err := c.Put(evs...); err != nil {
					return err
				}
				evs = evs[:0]
			}
		}
	}
	return c.Put(evs...)
}

var (
	fixtureMu sync.Mutex
	fixtures  = map[string]*eventcache.Cache{}
	tmpRoot   string
)

func TestMain(m *testing.M) {
	tmpRoot, _ = os.MkdirTemp("", "enginecmp")
	code := m.Run()
	for _, c := range fixtures {
		c.Close()
	}
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

func open(tb testing.TB, name string) *eventcache.Cache {
	dir, _ := os.MkdirTemp(tmpRoot, name)
	eng, path, err := Engines[name](dir)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := eventcache.OpenEngine(eng, path, eventcache.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// fixture is a cache per engine filled with scaleN() events, built once.
func fixture(b *testing.B, name string) *eventcache.Cache {
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if c := fixtures[name]; c != nil {
		return c
	}
	c := open(b, name)
	if err := fill(c, scaleN()); err != nil {
		b.Fatal(err)
	}
	fixtures[name] = c
	return c
}

func engineNames() []string {
	if e := os.Getenv("ECMP_ENGINE"); e != "" {
		return strings.Split(e, ",")
	}
	var out []string
	for n := range Engines {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// BenchmarkInsert stores batches of 100 events into a cache already holding scaleN() events.
func BenchmarkInsert(b *testing.B) {
	for _, name := range engineNames() {
		b.Run(name, func(b *testing.B) {
			c := fixture(b, name)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				evs := make([]eventcache.Event, 100)
				for j := range evs {
					evs[j] = synthEvent(fmt.Sprintf("!ins%d:synapse.test", j%5), i*20+j/5)
				}
				if err := c.Put(evs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkGet reads random events from a warm cache of scaleN() events.
func BenchmarkGet(b *testing.B) {
	for _, name := range engineNames() {
		b.Run(name, func(b *testing.B) {
			c := fixture(b, name)
			rng := rand.New(rand.NewPCG(1, 1))
			per := scaleN() / rooms
			for b.Loop() {
				if _, err := c.Get(synthID(roomName(rng.IntN(rooms)), rng.IntN(per))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBackfill100 walks 100 events back from a random event of a random room.
func BenchmarkBackfill100(b *testing.B) {
	for _, name := range engineNames() {
		b.Run(name, func(b *testing.B) {
			c := fixture(b, name)
			rng := rand.New(rand.NewPCG(2, 2))
			per := scaleN() / rooms
			for b.Loop() {
				room := roomName(rng.IntN(rooms))
				got, _, err := c.Backfill(room, []string{synthID(room, 200+rng.IntN(per-200))}, 100)
				if err != nil || len(got) != 100 {
					b.Fatal(len(got), err)
				}
			}
		})
	}
}

func procStatus() (rss, anon, file int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			rss = v
		case "RssAnon:":
			anon = v
		case "RssFile:":
			file = v
		}
	}
	return
}

// TestReport fills one engine (ECMP_ENGINE, run once per engine so RSS is
// its own) with ECMP_EVENTS events and logs fill rate, disk, heap and RSS.
func TestReport(t *testing.T) {
	names := engineNames()
	if os.Getenv("ECMP_REPORT") == "" || len(names) != 1 {
		t.Skip("set ECMP_REPORT=1 and ECMP_ENGINE=<one engine>")
	}
	c := open(t, names[0])
	defer c.Close()
	n := scaleN()
	t0 := time.Now()
	if err := fill(c, n); err != nil {
		t.Fatal(err)
	}
	el := time.Since(t0)
	st, _ := c.Stats()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, anon, file := procStatus()
	t.Logf("REPORT %s: %d events in %v = %.0f events/s (batches of 100); disk %.1f MiB; heap in use %.1f MiB; RSS %.1f MiB (anon %.1f, file %.1f)",
		names[0], st.Events, el.Round(time.Millisecond), float64(st.Events)/el.Seconds(), float64(st.DiskBytes)/(1<<20),
		float64(ms.HeapInuse)/(1<<20), float64(rss)/1024, float64(anon)/1024, float64(file)/1024)
}
