//go:build synapse

package eventsource

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// seedRooms creates rooms version 10 rooms on s with n messages each from three users (sent
// a few at a time, so the DAG forks now and then) and returns their IDs and forward extremities.
func seedRooms(b *testing.B, s *synapsetest.Server, rooms, n int) []RoomHeads {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var toks []string
	for _, lp := range []string{"alice", "bob", "carol"} {
		r, err := s.Register(ctx, lp, "pw-"+lp, false)
		if err != nil {
			b.Fatal(err)
		}
		toks = append(toks, r.AccessToken)
	}
	var ids []string
	for r := range rooms {
		var created struct {
			RoomID string `json:"room_id"`
		}
		if err := s.Do(ctx, "POST", "/_matrix/client/v3/createRoom", toks[0], map[string]any{"room_version": "10", "preset": "public_chat", "name": fmt.Sprintf("big %d", r)}, &created); err != nil {
			b.Fatal(err)
		}
		for _, tok := range toks[1:] {
			if err := s.Do(ctx, "POST", "/_matrix/client/v3/join/"+url.PathEscape(created.RoomID), tok, map[string]any{}, nil); err != nil {
				b.Fatal(err)
			}
		}
		ids = append(ids, created.RoomID)
	}
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n * rooms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/b%d", url.PathEscape(ids[i%rooms]), i)
			body := map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d: the quick brown fox jumps over the lazy dog", i)}
			if err := s.Do(ctx, "PUT", path, toks[i%3], body, nil); err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	// As `shim archive` lists them: forward extremities and the room version from the admin API.
	out, _, err := RoomsToArchive(ctx, benchSynapseClient(b, s).Admin(), ids)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func benchSynapseClient(b *testing.B, s *synapsetest.Server) *synapseclient.Client {
	b.Helper()
	client, err := synapseclient.New(synapseclient.Config{BaseURL: s.BaseURL, ServerName: s.ServerName, Identity: s.Identity(),
		AdminToken: s.AdminToken, Timeout: time.Minute, HTTPClient: &http.Client{Transport: benchRequests}})
	if err != nil {
		b.Fatal(err)
	}
	return client
}

// benchRequests counts the requests of every benchmark client by endpoint.
var benchRequests = &requestCounter{base: http.DefaultTransport, n: map[string]int{}}

// requestCounter is a RoundTripper that counts requests by endpoint (the path's first four
// segments, e.g. /_matrix/federation/v1/backfill).
type requestCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	parts := strings.SplitN(r.URL.Path, "/", 6)
	c.mu.Lock()
	c.n[strings.Join(parts[:min(len(parts), 5)], "/")]++
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

// take returns the counts so far and starts again from zero.
func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

// coldShim is `shim serve` over s with an empty cache at path: its URL and a stop function.
func coldShim(b *testing.B, client *synapseclient.Client, s *synapsetest.Server, path string, noPrefetch bool) (string, func()) {
	b.Helper()
	id := s.Identity()
	cache, err := eventcache.Open(path, eventcache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	src, err := New(Config{Identity: id, Cache: cache, Upstream: client.Federation(), Admin: client.Admin(),
		Keys: &NotaryKeys{Client: client.Federation(), Identity: id}, NoPrefetch: noPrefetch})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := federation.New(federation.Config{Identity: id, Source: src})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	return hs.URL, func() { hs.Close(); cache.Close() }
}

// BenchmarkRealSynapseColdPath seeds TM_BENCH_ROOMS rooms (default 4) of TM_BENCH_MESSAGES
// messages each (default 500) on one real Synapse, then measures side by side:
//
//   - cold-backfill: the Conduit-like consumer backfills every room whole from Synapse directly,
//     then through a shim with an empty cache, verifying every event both times (rounds
//     alternate, so a change of load cannot favour one side); ratio cold/direct of the time, and
//     the same through a cold shim with the next-page prefetch off.
//
//   - archive-j4: Source.Archive (what `shim archive -j 4` runs) of every room into an empty
//     cache, next to a plain client paging every room through Synapse's /backfill, 4 rooms at a
//     time (signed requests, PDUs parsed, nothing verified or stored); ratio of the events/s.
//
//     TM_SYNAPSE_PYTHON=… go test -tags synapse -run '^$' -bench RealSynapseColdPath -benchtime 2x -timeout 60m ./eventsource/
func BenchmarkRealSynapseColdPath(b *testing.B) {
	rooms, n := 4, 500
	if v, err := strconv.Atoi(os.Getenv("TM_BENCH_ROOMS")); err == nil && v > 0 {
		rooms = v
	}
	if v, err := strconv.Atoi(os.Getenv("TM_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	s := synapsetest.Start(b, synapsetest.Options{})
	t0 := time.Now()
	heads := seedRooms(b, s, rooms, n)
	b.Logf("seeded %d rooms of %d messages in %s", rooms, n, time.Since(t0).Round(time.Second))
	client := benchSynapseClient(b, s)
	id := s.Identity()
	keys := conduitlike.StaticKeys{}
	for _, k := range s.Keys() {
		keys.Add(s.ServerName, string(k.ID), k.PublicKey(), 0)
	}
	ctx := context.Background()
	backfill := func(b *testing.B, base string, r RoomHeads) (*conduitlike.Result, time.Duration) {
		c := &conduitlike.Consumer{Identity: id, Destination: s.ServerName, BaseURL: base, Keys: keys, HTTP: &http.Client{Timeout: 5 * time.Minute}}
		start := time.Now()
		res, err := c.BackfillRoom(ctx, r.RoomID, "10", r.Heads)
		d := time.Since(start)
		if err != nil || !res.ReachedCreate {
			b.Fatalf("backfill from %s: %v (create reached: %v)", base, err, res != nil && res.ReachedCreate)
		}
		if r := res.Count(conduitlike.Rejected); r > 0 {
			b.Fatalf("backfill from %s: %d events rejected", base, r)
		}
		return res, d
	}
	b.Run("cold-backfill", func(b *testing.B) {
		var direct, cold, coldNoPrefetch time.Duration
		events := 0
		for i := 0; i < b.N; i++ {
			url, stop := coldShim(b, client, s, filepath.Join(b.TempDir(), fmt.Sprintf("cold-%d.db", i)), false)
			urlNP, stopNP := coldShim(b, client, s, filepath.Join(b.TempDir(), fmt.Sprintf("cold-np-%d.db", i)), true)
			for _, r := range heads {
				rd, dd := backfill(b, s.BaseURL, r)
				rc, dc := backfill(b, url, r)
				_, dn := backfill(b, urlNP, r)
				coldNoPrefetch += dn
				nd, nc := len(rd.Timeline), len(rc.Timeline)
				// Messages sent concurrently fork the DAG, and the consumer, like Conduit, walks back
				// from the oldest event it has: two walks can end on different sides of a fork. Both
				// are verified whole backfills; a difference beyond a few events is a fault.
				if diff := timelineDiff(rd, rc); diff != "" {
					b.Logf("room %s: through the shim %d events, directly %d: %s", r.RoomID, nc, nd, diff)
					if d := nc - nd; d*50 > nd || -d*50 > nd {
						b.Fatalf("the backfills differ by more than 2%%")
					}
				}
				direct += dd
				cold += dc
				events += nd
				b.Logf("round %d, room %s: %d events, direct %s, cold shim %s (%.2f×), without prefetch %s (%.2f×)", i, r.RoomID, nd,
					dd.Round(time.Millisecond), dc.Round(time.Millisecond), dc.Seconds()/dd.Seconds(), dn.Round(time.Millisecond), dn.Seconds()/dd.Seconds())
			}
			stop()
			stopNP()
		}
		b.ReportMetric(coldNoPrefetch.Seconds()/direct.Seconds(), "no-prefetch/direct")
		b.ReportMetric(float64(events)/direct.Seconds(), "direct-events/s")
		b.ReportMetric(float64(events)/cold.Seconds(), "cold-events/s")
		b.ReportMetric(cold.Seconds()/direct.Seconds(), "cold/direct")
	})
	b.Run("archive-j4", func(b *testing.B) {
		var archive, plain time.Duration
		archived, paged := 0, 0
		// One untimed pass first, so that neither side meets Synapse's caches cold; then the two
		// take turns going first.
		plainBackfill(b, client.Federation(), heads, 4)
		for i := 0; i < b.N; i++ {
			if i%2 == 1 {
				start := time.Now()
				paged += plainBackfill(b, client.Federation(), heads, 4)
				plain += time.Since(start)
			}
			cache, err := eventcache.Open(filepath.Join(b.TempDir(), fmt.Sprintf("archive-%d.db", i)), eventcache.Options{})
			if err != nil {
				b.Fatal(err)
			}
			src, err := New(Config{Identity: id, Cache: cache, Upstream: client.Federation(), Admin: client.Admin(),
				Keys: &NotaryKeys{Client: client.Federation(), Identity: id}})
			if err != nil {
				b.Fatal(err)
			}
			benchRequests.take()
			start := time.Now()
			sums := src.Archive(ctx, heads, 4, nil)
			archive += time.Since(start)
			if i == 0 {
				b.Logf("archive requests: %v", benchRequests.take())
			}
			for _, sum := range sums {
				if sum.Err != nil || !sum.Complete || sum.Failed() > 0 {
					b.Fatalf("archive of %s: %+v", sum.RoomID, sum)
				}
				archived += int(sum.Events)
			}
			cache.Close()
			if i%2 == 0 {
				start = time.Now()
				paged += plainBackfill(b, client.Federation(), heads, 4)
				plain += time.Since(start)
				if i == 0 {
					b.Logf("plain client requests: %v", benchRequests.take())
				}
			}
		}
		ar, pr := float64(archived)/archive.Seconds(), float64(paged)/plain.Seconds()
		b.ReportMetric(ar, "archive-events/s")
		b.ReportMetric(pr, "plain-backfill-events/s")
		b.ReportMetric(ar/pr, "archive/plain")
		b.Logf("archive -j 4: %d events in %s; plain /backfill client, 4 rooms at a time: %d events in %s", archived,
			archive.Round(time.Millisecond), paged, plain.Round(time.Millisecond))
	})
}

// plainBackfill pages every room back from its heads to m.room.create through Synapse's
// /backfill (limit 100), j rooms at a time, always from the oldest event of the last page, and
// returns the distinct events received: signed requests, PDUs parsed, nothing verified or stored
// (only the oldest event's ID is computed, to ask from it next).
func plainBackfill(b *testing.B, fed synapseclient.FederationAPI, rooms []RoomHeads, j int) int {
	var mu sync.Mutex
	total := 0
	sem := make(chan struct{}, j)
	var wg sync.WaitGroup
	for _, r := range rooms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			seen := map[string]bool{}
			seeds := r.Heads
			for range 10000 {
				tx, err := fed.Backfill(context.Background(), r.RoomID, seeds, 100)
				if err != nil {
					b.Errorf("backfill %s: %v", r.RoomID, err)
					return
				}
				var oldest *synapseclient.PDU
				fresh, create := 0, false
				for i := range tx.PDUs {
					p := &tx.PDUs[i]
					key := gjson.GetBytes(p.Raw, "hashes.sha256").Str // distinct per event, cheaper than its ID
					if !seen[key] {
						seen[key] = true
						fresh++
					}
					if p.Type == "m.room.create" {
						create = true
					}
					if oldest == nil || p.Depth < oldest.Depth {
						oldest = p
					}
				}
				if create || fresh == 0 || oldest == nil {
					break
				}
				id, _ := signing.EventID("10", oldest.Raw)
				seeds = []string{id}
			}
			mu.Lock()
			total += len(seen)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total
}

// timelineDiff names the events one backfill received and the other did not.
func timelineDiff(direct, shim *conduitlike.Result) string {
	in := func(r *conduitlike.Result) map[string]conduitlike.Received {
		m := map[string]conduitlike.Received{}
		for _, e := range r.Timeline {
			m[e.EventID] = e
		}
		return m
	}
	d, sh := in(direct), in(shim)
	var out []string
	for id, e := range d {
		if _, ok := sh[id]; !ok {
			out = append(out, fmt.Sprintf("only direct: %s %s depth %d", id, e.Type, e.Depth))
		}
	}
	for id, e := range sh {
		if _, ok := d[id]; !ok {
			out = append(out, fmt.Sprintf("only through the shim: %s %s depth %d", id, e.Type, e.Depth))
		}
	}
	if len(out) > 20 {
		out = append(out[:20], "…")
	}
	return strings.Join(out, "; ")
}
