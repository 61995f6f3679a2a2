package eventsource

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// Benchmarks of the shim's event source; figures and commands are in docs/performance.md ("Shim").
// Every benchmark builds its own world and cache, so none of this runs without -bench.

var (
	benchWorldsMu sync.Mutex
	benchWorlds   = map[string]*world.World{}
)

// benchWorld generates a world once per test binary (worlds are deterministic), so -count runs
// and sub-benchmarks share it.
func benchWorld(b *testing.B, o world.Options) *world.World {
	b.Helper()
	key := fmt.Sprintf("%+v", o)
	benchWorldsMu.Lock()
	defer benchWorldsMu.Unlock()
	if w, ok := benchWorlds[key]; ok {
		return w
	}
	start := time.Now()
	w, err := world.Generate(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("world of %d events generated in %v", w.EventCount(), time.Since(start).Round(time.Millisecond))
	benchWorlds[key] = w
	return w
}

// backfillWorld has one room of about 3,000 events for the backfill benchmarks.
var backfillWorld = world.Options{Seed: 31, Rooms: -1, MessagesPerRoom: 20, BigRoomActivity: 3000}

// biggestRoom is the served room with the most events.
func biggestRoom(b *testing.B, bd *bed) *world.Room {
	b.Helper()
	var room *world.Room
	for _, r := range bd.servedRooms() {
		if r.LocalJoinedNow() && (room == nil || len(r.Events) > len(room.Events)) {
			room = r
		}
	}
	if room == nil || len(room.Events) < 1000 {
		b.Fatal("the world has no served room of 1,000 events")
	}
	return room
}

// backfillSeeds are n events of room spread over its history, each with at least 200 older
// events, so every /backfill?limit=100 from one of them returns 100 events.
func backfillSeeds(room *world.Room, n int) []string {
	out := make([]string, n)
	span := len(room.Events) - 1 - 200
	for i := range out {
		out[i] = room.Events[len(room.Events)-1-i*span/n].ID
	}
	return out
}

// archiveRoom archives room into bd's cache and checks that all of it arrived.
func archiveRoom(b *testing.B, bd *bed, room *world.Room) {
	b.Helper()
	s := bd.src.ArchiveRoom(context.Background(), room.ID, room.ForwardExtremities(), nil)
	if s.Err != nil || !s.Complete || s.Events != int64(len(room.Events)) || s.Failed() != 0 {
		b.Fatalf("archive of %s: %+v, the world has %d events", room.ID, s, len(room.Events))
	}
}

// signedGet is one pre-signed federation GET (X-Matrix carries no timestamp, so a signature
// stays valid) and what its answer looked like the first time.
type signedGet struct {
	path, auth string
	bodyLen    int
	events     int
}

func newSignedGet(b *testing.B, id *signing.Identity, dest, path string) *signedGet {
	b.Helper()
	x, err := signing.SignRequest(id, "GET", dest, path, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &signedGet{path: path, auth: x.String()}
}

func backfillPath(roomID, seed string, limit int) string {
	return "/_matrix/federation/v1/backfill/" + url.PathEscape(roomID) + "?v=" + url.QueryEscape(seed) + "&limit=" + strconv.Itoa(limit)
}

// do sends the request and returns the body.
func (g *signedGet) do(b *testing.B, c *http.Client, base string) []byte {
	req, err := http.NewRequest("GET", base+g.path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", g.auth)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %s %v", g.path, resp.StatusCode, body, err)
	}
	return body
}

// prime sends each request once and records its answer's size and event count; wantEvents,
// when > 0, is the count each answer must have.
func prime(b *testing.B, gets []*signedGet, c *http.Client, base string, wantEvents int) {
	b.Helper()
	for _, g := range gets {
		body := g.do(b, c, base)
		g.bodyLen, g.events = len(body), int(gjson.GetBytes(body, "pdus.#").Int())
		if wantEvents > 0 && g.events != wantEvents {
			b.Fatalf("GET %s: %d events, want %d", g.path, g.events, wantEvents)
		}
	}
}

// latencies collects per-operation times for percentiles.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	pct := func(p float64) float64 { return float64(s[min(len(s)-1, int(p*float64(len(s))))].Nanoseconds()) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
}

// cpuTime is the CPU time the whole process has used (every goroutine: client, shim, simulated
// Synapse, GC). On a shared machine it is steadier than wall time, which includes waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBackfillWarmCache is a signed /backfill?limit=100 through the shim's federation server
// (HTTP over loopback, X-Matrix checked) with the room wholly archived: every answer comes from
// the cache, Synapse is never asked.
func BenchmarkBackfillWarmCache(b *testing.B) {
	w := benchWorld(b, backfillWorld)
	bd := newBedFor(b, w, bedOptions{}, filepath.Join(b.TempDir(), "cache.db"))
	room := biggestRoom(b, bd)
	archiveRoom(b, bd, room)
	var gets []*signedGet
	for _, seed := range backfillSeeds(room, 64) {
		gets = append(gets, newSignedGet(b, bd.sim.Identity(), w.ServerName, backfillPath(room.ID, seed, 100)))
	}
	client := bd.shim.Client()
	prime(b, gets, client, bd.shim.URL, 100)
	upstream := bd.sim.Stats()

	lat := make(latencies, 0, 4096)
	events, i := 0, 0
	cpu := cpuTime()
	for b.Loop() {
		g := gets[i%len(gets)]
		i++
		start := time.Now()
		body := g.do(b, client, bd.shim.URL)
		lat = append(lat, time.Since(start))
		if len(body) != g.bodyLen {
			b.Fatalf("GET %s: %d bytes, %d the first time", g.path, len(body), g.bodyLen)
		}
		events += g.events
	}
	cpu = cpuTime() - cpu
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	lat.report(b)
	if after := bd.sim.Stats(); !mapsEqual(after, upstream) {
		b.Fatalf("the warm cache asked Synapse: %v before, %v after", upstream, after)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// swapServer is an HTTP server whose handler can be replaced between requests, so each
// iteration can get a shim with a fresh cache behind the same address and connections.
type swapServer struct {
	*httptest.Server
	h atomic.Pointer[http.Handler]
}

func newSwapServer(b *testing.B) *swapServer {
	s := &swapServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }))
	b.Cleanup(s.Close)
	return s
}

func (s *swapServer) set(h http.Handler) { s.h.Store(&h) }

// federationClient is a synapseclient federation client for baseURL, signing as the world's
// server (what Synapse and the shim both accept).
func federationClient(b *testing.B, bd *bed, baseURL string) *synapseclient.FederationClient {
	b.Helper()
	c, err := synapseclient.New(synapseclient.Config{BaseURL: baseURL, ServerName: bd.w.ServerName, Identity: bd.sim.Identity(),
		AdminToken: bd.sim.AdminToken(), MaxAttempts: 1, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	return c.Federation()
}

// BenchmarkBackfillProxiedVsDirect asks for the same 100-event pages with the same client
// (synapseclient, which signs each request and parses each PDU) from the simulated Synapse
// directly and through the shim: warm (the room archived), miss (the cache knows the room's
// version but none of its events: fetch + verify + store + serve), cold (an empty cache, so the
// shim also finds the room's version upstream first) and paging (a whole room paged through from
// an empty cache). upstream-req/op counts Synapse's answers; cpu-ns/op is the CPU of the whole
// process (client, shim and simulated Synapse).
func BenchmarkBackfillProxiedVsDirect(b *testing.B) {
	w := benchWorld(b, backfillWorld)
	bd := newBedFor(b, w, bedOptions{}, filepath.Join(b.TempDir(), "cache.db"))
	room := biggestRoom(b, bd)
	seeds := backfillSeeds(room, 64)
	ctx := context.Background()

	run := func(b *testing.B, c *synapseclient.FederationClient, before func(i int)) {
		upstream := bd.sim.Stats()
		events, i := 0, 0
		lat := make(latencies, 0, 1024)
		var setupCPU time.Duration
		cpu := cpuTime()
		for b.Loop() {
			if before != nil {
				b.StopTimer()
				c0 := cpuTime()
				before(i)
				setupCPU += cpuTime() - c0
				b.StartTimer()
			}
			start := time.Now()
			tx, err := c.Backfill(ctx, room.ID, []string{seeds[i%len(seeds)]}, 100)
			lat = append(lat, time.Since(start))
			i++
			if err != nil {
				b.Fatal(err)
			}
			if len(tx.PDUs) != 100 {
				b.Fatalf("%d events, want 100", len(tx.PDUs))
			}
			events += len(tx.PDUs)
		}
		cpu = cpuTime() - cpu - setupCPU
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(total(diff(bd.sim.Stats(), upstream)))/float64(b.N), "upstream-req/op")
		lat.report(b)
		b.Logf("Synapse answered per %d ops: %v", b.N, diff(bd.sim.Stats(), upstream))
	}

	b.Run("direct", func(b *testing.B) { run(b, bd.client.Federation(), nil) })

	archiveRoom(b, bd, room)
	viaShim := federationClient(b, bd, bd.shim.URL)
	b.Run("shim-warm", func(b *testing.B) { run(b, viaShim, nil) })

	// Each iteration of miss and cold gets a shim with a fresh cache file.
	fresh := newSwapServer(b)
	viaFresh := federationClient(b, bd, fresh.URL)
	keys := &NotaryKeys{Client: bd.client.Federation(), Identity: bd.sim.Identity()}
	dir := b.TempDir()
	var cache *eventcache.Cache
	b.Cleanup(func() {
		if cache != nil {
			cache.Close()
		}
	})
	reset := func(knownRoom bool) func(int) {
		return func(i int) {
			if cache != nil {
				cache.Close()
				os.Remove(cache.Path())
			}
			var err error
			cache, err = eventcache.Open(filepath.Join(dir, fmt.Sprintf("c%d.db", i)), eventcache.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if knownRoom {
				if err := cache.SetRoomMeta(eventcache.RoomMeta{RoomID: room.ID, RoomVersion: room.Version}); err != nil {
					b.Fatal(err)
				}
			}
			src, err := New(Config{Identity: bd.sim.Identity(), Cache: cache, Upstream: bd.client.Federation(), Keys: keys})
			if err != nil {
				b.Fatal(err)
			}
			srv, err := federation.New(federation.Config{Identity: bd.sim.Identity(), Source: src})
			if err != nil {
				b.Fatal(err)
			}
			fresh.set(srv)
		}
	}
	b.Run("shim-miss", func(b *testing.B) { run(b, viaFresh, reset(true)) })
	b.Run("shim-cold", func(b *testing.B) { run(b, viaFresh, reset(false)) })

	// interleaved: each op asks the same page directly, through the warm shim and through a shim
	// that misses (fresh cache, room known), so the ratios are not skewed by the machine's load
	// changing between sub-benchmarks.
	b.Run("interleaved", func(b *testing.B) {
		direct := bd.client.Federation()
		var wall, cpu [3]time.Duration
		ask := func(k int, c *synapseclient.FederationClient, seed string) {
			w0, c0 := time.Now(), cpuTime()
			tx, err := c.Backfill(ctx, room.ID, []string{seed}, 100)
			cpu[k] += cpuTime() - c0
			wall[k] += time.Since(w0)
			if err != nil || len(tx.PDUs) != 100 {
				b.Fatalf("backfill %d from %s: %v", k, seed, err)
			}
		}
		i := 0
		for b.Loop() {
			b.StopTimer()
			reset(true)(i)
			b.StartTimer()
			seed := seeds[i%len(seeds)]
			i++
			ask(0, direct, seed)
			ask(1, viaShim, seed)
			ask(2, viaFresh, seed)
		}
		ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
		b.ReportMetric(ratio(wall[1], wall[0]), "warm/direct-wall")
		b.ReportMetric(ratio(cpu[1], cpu[0]), "warm/direct-cpu")
		b.ReportMetric(ratio(wall[2], wall[0]), "miss/direct-wall")
		b.ReportMetric(ratio(cpu[2], cpu[0]), "miss/direct-cpu")
	})

	// paging: a consumer pages through the room from its newest event down with an empty cache
	// at the start (a fresh one each time it reaches the bottom), 100 events a page, as Conduit
	// backfilling a room nobody archived would.
	b.Run("shim-paging", func(b *testing.B) {
		upstream := bd.sim.Stats()
		lat := make(latencies, 0, 1024)
		var setupCPU time.Duration
		events, pages, next := 0, 0, -1
		cpu := cpuTime()
		for b.Loop() {
			if next < 0 {
				b.StopTimer()
				c0 := cpuTime()
				reset(false)(pages)
				setupCPU += cpuTime() - c0
				next = len(room.Events) - 1
				b.StartTimer()
			}
			start := time.Now()
			tx, err := viaFresh.Backfill(ctx, room.ID, []string{room.Events[next].ID}, 100)
			lat = append(lat, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			if len(tx.PDUs) == 0 || len(tx.PDUs) > 100 {
				b.Fatalf("page from %s: %d events", room.Events[next].ID, len(tx.PDUs))
			}
			events += len(tx.PDUs)
			pages++
			next -= 100
		}
		cpu = cpuTime() - cpu - setupCPU
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(events)/float64(b.N), "events/op")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(total(diff(bd.sim.Stats(), upstream)))/float64(b.N), "upstream-req/op")
		lat.report(b)
		b.Logf("Synapse answered per %d pages: %v", b.N, diff(bd.sim.Stats(), upstream))
	})
}

// diff is after − before, per endpoint, without the zeros.
func diff(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func total(stats map[string]int) int {
	n := 0
	for k, v := range stats {
		if strings.HasPrefix(k, "fed.") {
			n += v
		}
	}
	return n
}

// countingKeys counts key lookups: the checker asks once per signature it verifies.
type countingKeys struct {
	next KeyFetcher
	n    atomic.Int64
}

func (c *countingKeys) PublicKey(ctx context.Context, server, keyID string) (ed25519.PublicKey, error) {
	c.n.Add(1)
	return c.next.PublicKey(ctx, server, keyID)
}

// BenchmarkVerify is the check every event fetched from Synapse goes through before it is stored
// (event ID, content hash, the signatures of every server that must sign), on the events of a
// generated world as Synapse serves them, next to the machine's raw Ed25519 rate.
func BenchmarkVerify(b *testing.B) {
	b.Run("ed25519", func(b *testing.B) {
		priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
		msg := make([]byte, 600)
		sig := ed25519.Sign(priv, msg)
		pub := priv.Public().(ed25519.PublicKey)
		b.ReportAllocs()
		cpu := cpuTime()
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("verify failed")
			}
		}
		cpu = cpuTime() - cpu
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "verifies/cpu-s")
	})

	w := benchWorld(b, world.Options{Seed: 32, MessagesPerRoom: 150, OldKeyEvents: 5})
	type sample struct {
		room, version string
		raw           []byte
	}
	var evs []sample
	var bytes int64
	for _, r := range w.Rooms {
		if r.Kind == world.KindAllLeft {
			continue
		}
		for _, e := range r.Events {
			raw := e.JSON
			if e.Redacted && e.RedactedJSON != nil {
				raw = e.RedactedJSON
			}
			evs = append(evs, sample{r.ID, r.Version, raw})
			bytes += int64(len(raw))
		}
	}
	id := &signing.Identity{ServerName: w.ServerName, Keys: []signing.Key{{ID: signing.KeyID(w.SigningKey.KeyID), Seed: w.SigningKey.Private.Seed()}}}
	for _, k := range w.OldKeys {
		id.OldKeys = append(id.OldKeys, signing.OldKey{ID: signing.KeyID(k.KeyID), Public: k.Public, ExpiredTS: k.ExpiredTS})
	}
	keys := &countingKeys{next: newWithIdentity(id, StaticKeys{w.RemoteServerName: {w.RemoteKey.KeyID: w.RemoteKey.Public}})}
	c := &checker{keys: keys}
	ctx := context.Background()
	statuses := map[eventcache.Status]int{}
	for _, s := range evs {
		ev, reason, err := c.check(ctx, s.room, s.version, s.raw, "")
		if err != nil || (ev.Status != eventcache.StatusVerified && ev.Status != eventcache.StatusRedacted) {
			b.Fatalf("event of %s: status %q (%s), %v", s.room, ev.Status, reason, err)
		}
		statuses[ev.Status]++
	}
	sigs := float64(keys.n.Load()) / float64(len(evs))
	b.Logf("%d events (%d verified, %d redacted), %.0f bytes and %.2f signatures each", len(evs),
		statuses[eventcache.StatusVerified], statuses[eventcache.StatusRedacted], float64(bytes)/float64(len(evs)), sigs)

	b.Run("check", func(b *testing.B) {
		b.SetBytes(bytes / int64(len(evs)))
		b.ReportAllocs()
		i := 0
		cpu := cpuTime()
		for b.Loop() {
			s := evs[i%len(evs)]
			i++
			if _, _, err := c.check(ctx, s.room, s.version, s.raw, ""); err != nil {
				b.Fatal(err)
			}
		}
		cpu = cpuTime() - cpu
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
		b.ReportMetric(sigs, "sigs/event")
	})
	// ratio: the acceptance figure. Batches of the full check and of raw Ed25519 alternate in one
	// loop, each timed in process CPU time (GC included), so load cannot favour either side:
	// ratio = signatures verified per CPU-second by the full check ÷ raw verifies per CPU-second.
	b.Run("ratio", func(b *testing.B) {
		priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
		msg := make([]byte, bytes/int64(len(evs)))
		sig := ed25519.Sign(priv, msg)
		pub := priv.Public().(ed25519.PublicKey)
		const batch = 50
		var checkCPU, rawCPU time.Duration
		var checked, raw int
		i := 0
		for b.Loop() {
			t0 := cpuTime()
			for range batch {
				s := evs[i%len(evs)]
				i++
				if _, _, err := c.check(ctx, s.room, s.version, s.raw, ""); err != nil {
					b.Fatal(err)
				}
			}
			t1 := cpuTime()
			for range batch {
				if !ed25519.Verify(pub, msg, sig) {
					b.Fatal("verify failed")
				}
			}
			t2 := cpuTime()
			checkCPU += t1 - t0
			rawCPU += t2 - t1
			checked += batch
			raw += batch
		}
		checkRate := float64(checked) * sigs / checkCPU.Seconds()
		rawRate := float64(raw) / rawCPU.Seconds()
		b.ReportMetric(checkRate, "checked-sigs/cpu-s")
		b.ReportMetric(rawRate, "raw-verifies/cpu-s")
		b.ReportMetric(checkRate/rawRate, "ratio")
		b.Logf("full check %.0f signatures/CPU-s (%.2f per event), raw Ed25519 %.0f verifies/CPU-s: ratio %.2f",
			checkRate, sigs, rawRate, checkRate/rawRate)
	})
	b.Run("check-parallel", func(b *testing.B) {
		b.SetBytes(bytes / int64(len(evs)))
		var next atomic.Int64
		cpu := cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s := evs[int(next.Add(1))%len(evs)]
				if _, _, err := c.check(ctx, s.room, s.version, s.raw, ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
		cpu = cpuTime() - cpu
		rate := float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(rate/float64(runtime.GOMAXPROCS(0)), "events/s/core")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
	})
}

// BenchmarkArchive is `shim archive` of a world of about 20,000 events from the simulated Synapse
// into a fresh cache (a new file each iteration), one room at a time and four at a time.
func BenchmarkArchive(b *testing.B) {
	w := benchWorld(b, world.Options{Seed: 33, Rooms: 6, TotalEvents: 20000})
	bd := newBedFor(b, w, bedOptions{}, filepath.Join(b.TempDir(), "unused.db"))
	var heads []RoomHeads
	want := 0
	for _, r := range bd.servedRooms() {
		heads = append(heads, RoomHeads{RoomID: r.ID, Heads: r.ForwardExtremities()})
		want += len(r.Events)
	}
	b.Logf("archiving %d rooms, %d events", len(heads), want)
	dir := b.TempDir()
	keys := &NotaryKeys{Client: bd.client.Federation(), Identity: bd.sim.Identity()}
	for _, parallel := range []int{1, 4} {
		b.Run(fmt.Sprintf("j%d", parallel), func(b *testing.B) {
			upstream := bd.sim.Stats()
			i := 0
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				cache, err := eventcache.Open(filepath.Join(dir, fmt.Sprintf("j%d-%d.db", parallel, i)), eventcache.Options{})
				if err != nil {
					b.Fatal(err)
				}
				i++
				src, err := New(Config{Identity: bd.sim.Identity(), Cache: cache, Upstream: bd.client.Federation(), Keys: keys})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				c0 := cpuTime()
				sums := src.Archive(context.Background(), heads, parallel, nil)
				cpu += cpuTime() - c0
				b.StopTimer()
				got := int64(0)
				for _, s := range sums {
					if s.Err != nil || !s.Complete || s.Failed() != 0 {
						b.Fatalf("archive of %s: %+v", s.RoomID, s)
					}
					got += s.Events
				}
				if got != int64(want) {
					b.Fatalf("archived %d events, the world has %d", got, want)
				}
				cache.Close()
				os.Remove(cache.Path())
				b.StartTimer()
			}
			b.ReportMetric(float64(want*b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(want*b.N)/cpu.Seconds(), "events/cpu-s")
			b.ReportMetric(float64(total(diff(bd.sim.Stats(), upstream)))/float64(b.N), "upstream-req/op")
			b.Logf("Synapse answered per %d archives: %v", b.N, diff(bd.sim.Stats(), upstream))
		})
	}
}

// BenchmarkBackfillFrom1MCache serves /backfill?limit=100 through the shim from a cache of
// EVENTSOURCE_BENCH_EVENTS synthetic events (e.g. 1000000; skipped when unset) in 100 rooms,
// at random depths, and reports latency and the process's memory after filling and after
// serving. EVENTSOURCE_BENCH_DIR keeps the filled cache there for the next run.
func BenchmarkBackfillFrom1MCache(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("EVENTSOURCE_BENCH_EVENTS"))
	if n <= 0 {
		b.Skip("set EVENTSOURCE_BENCH_EVENTS (e.g. 1000000) to run")
	}
	const rooms, batch = 100, 1000
	perRoom := n / rooms
	if perRoom < 300 {
		b.Fatal("EVENTSOURCE_BENCH_EVENTS must be at least 30000")
	}
	dir := os.Getenv("EVENTSOURCE_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("shim-%d.db", n))
	cache, err := eventcache.Open(path, eventcache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cache.Close() })
	roomID := func(r int) string { return fmt.Sprintf("!bench%03d:synapse.test", r) }
	if st, err := cache.Stats(); err != nil {
		b.Fatal(err)
	} else if st.Events != int64(perRoom*rooms) {
		if st.Events != 0 {
			b.Fatalf("%s holds %d events, not %d: remove it", path, st.Events, perRoom*rooms)
		}
		start := time.Now()
		evs := make([]eventcache.Event, 0, batch)
		for i := range perRoom {
			for r := range rooms {
				evs = append(evs, synthEvent(roomID(r), i))
				if len(evs) == batch {
					if err := cache.Put(evs...); err != nil {
						b.Fatal(err)
					}
					evs = evs[:0]
				}
			}
		}
		if err := cache.Put(evs...); err != nil {
			b.Fatal(err)
		}
		b.Logf("filled %d events in %v", perRoom*rooms, time.Since(start).Round(time.Second))
	}
	st, _ := cache.Stats()
	b.Logf("cache file %.1f MiB", float64(st.DiskBytes)/(1<<20))
	memory(b, "after fill")

	idKey := signing.Key{ID: "ed25519:bench", Seed: make([]byte, ed25519.SeedSize)}
	id := &signing.Identity{ServerName: "synapse.test", Keys: []signing.Key{idKey}}
	src, err := New(Config{Identity: id, Cache: cache}) // no Synapse: everything comes from the cache
	if err != nil {
		b.Fatal(err)
	}
	srv, err := federation.New(federation.Config{Identity: id, Source: src})
	if err != nil {
		b.Fatal(err)
	}
	shim := httptest.NewServer(srv)
	b.Cleanup(shim.Close)
	rng := rand.New(rand.NewPCG(7, 8))
	gets := make([]*signedGet, 256)
	for i := range gets {
		r := roomID(rng.IntN(rooms))
		gets[i] = newSignedGet(b, id, id.ServerName, backfillPath(r, synthID(r, 200+rng.IntN(perRoom-200)), 100))
	}
	client := shim.Client()
	lat := make(latencies, 0, 4096)
	events, i := 0, 0
	cpu := cpuTime()
	for b.Loop() {
		g := gets[i%len(gets)]
		i++
		start := time.Now()
		body := g.do(b, client, shim.URL)
		lat = append(lat, time.Since(start))
		if i <= len(gets) {
			if got := gjson.GetBytes(body, "pdus.#").Int(); got != 100 {
				b.Fatalf("GET %s: %d events", g.path, got)
			}
		}
		events += 100
	}
	cpu = cpuTime() - cpu
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	lat.report(b)
	heap, rssAnon, rssFile := memory(b, "after serving")
	b.ReportMetric(heap, "heap-MiB")
	b.ReportMetric(rssAnon, "rss-anon-MiB")
	b.ReportMetric(rssFile, "rss-file-MiB")
}

// memory logs and returns the Go heap in use and the process's anonymous and file-backed RSS, in MiB.
func memory(b *testing.B, when string) (heap, anon, file float64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, _ := os.ReadFile("/proc/self/status")
	kib := func(field string) float64 {
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
				v, _ := strconv.ParseFloat(f[1], 64)
				return v / 1024
			}
		}
		return 0
	}
	heap, anon, file = float64(ms.HeapInuse)/(1<<20), kib("RssAnon:"), kib("RssFile:")
	b.Logf("%s: Go heap in use %.1f MiB, RSS anonymous %.1f MiB, file-backed %.1f MiB", when, heap, anon, file)
	return heap, anon, file
}

// synthID is a v3-style event ID for event i of room.
func synthID(room string, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", room, i))
	return "$" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// synthEvent is event i of a linear room with a 1–2 KB body; the shim serves cached events as
// stored, so the body need not be signed for serving to be measured.
func synthEvent(room string, i int) eventcache.Event {
	id := synthID(room, i)
	var prev []string
	if i > 0 {
		prev = []string{synthID(room, i-1)}
	}
	size := 1000 + (i*397)%1000
	sum := sha256.Sum256([]byte(id))
	pad := strings.Repeat(base64.RawStdEncoding.EncodeToString(sum[:]), size/43+1)[:size-200]
	body := fmt.Appendf(nil, `{"auth_events":[%q],"content":{"body":%q,"msgtype":"m.text"},"depth":%d,"origin_server_ts":%d,"prev_events":%s,"room_id":%q,"sender":"@u:synapse.test","type":"m.room.message"}`,
		synthID(room, 0), pad, i+1, 1735689600000+int64(i), jsonList(prev), room)
	return eventcache.Event{ID: id, RoomID: room, RoomVersion: "10", Depth: int64(i + 1), Stream: int64(i),
		PrevEvents: prev, AuthEvents: []string{synthID(room, 0)}, Type: "m.room.message",
		OriginServerTS: 1735689600000 + int64(i), JSON: body, Status: eventcache.StatusVerified}
}

func jsonList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = strconv.Quote(id)
	}
	return "[" + strings.Join(q, ",") + "]"
}
