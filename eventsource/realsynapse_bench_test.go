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

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// seedBigRoom creates one version 10 room on s with n messages from three users (sent a few at
// a time) and returns its ID and forward extremities.
func seedBigRoom(b *testing.B, s *synapsetest.Server, n int) (string, []string) {
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
	var created struct {
		RoomID string `json:"room_id"`
	}
	if err := s.Do(ctx, "POST", "/_matrix/client/v3/createRoom", toks[0], map[string]any{"room_version": "10", "preset": "public_chat", "name": "big"}, &created); err != nil {
		b.Fatal(err)
	}
	for _, tok := range toks[1:] {
		if err := s.Do(ctx, "POST", "/_matrix/client/v3/join/"+url.PathEscape(created.RoomID), tok, map[string]any{}, nil); err != nil {
			b.Fatal(err)
		}
	}
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/b%d", url.PathEscape(created.RoomID), i)
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
	client := benchSynapseClient(b, s)
	fx, err := client.Admin().ForwardExtremities(ctx, created.RoomID)
	if err != nil {
		b.Fatal(err)
	}
	var heads []string
	for _, f := range fx {
		heads = append(heads, f.EventID)
	}
	return created.RoomID, heads
}

func benchSynapseClient(b *testing.B, s *synapsetest.Server) *synapseclient.Client {
	b.Helper()
	client, err := synapseclient.New(synapseclient.Config{BaseURL: s.BaseURL, ServerName: s.ServerName, Identity: s.Identity(),
		AdminToken: s.AdminToken, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	return client
}

// coldShim is `shim serve` over s with an empty cache at path: its URL and a stop function.
func coldShim(b *testing.B, client *synapseclient.Client, s *synapsetest.Server, path string) (string, func()) {
	b.Helper()
	id := s.Identity()
	cache, err := eventcache.Open(path, eventcache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	src, err := New(Config{Identity: id, Cache: cache, Upstream: client.Federation(), Admin: client.Admin(),
		Keys: &NotaryKeys{Client: client.Federation(), Identity: id}})
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

// BenchmarkRealSynapseColdBackfill: the Conduit-like consumer backfills one room of
// TM_BENCH_MESSAGES messages (default 2000) whole from the real Synapse directly, then through a
// shim with an empty cache, verifying every event both times; rounds alternate, so a change of
// load cannot favour one side. Reported: each side's events/s and the ratio cold/direct of the time.
//
//	TM_SYNAPSE_PYTHON=… go test -tags synapse -run '^$' -bench RealSynapseColdBackfill -benchtime 3x -timeout 60m ./eventsource/
func BenchmarkRealSynapseColdBackfill(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("TM_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	s := synapsetest.Start(b, synapsetest.Options{})
	t0 := time.Now()
	roomID, heads := seedBigRoom(b, s, n)
	b.Logf("seeded %d messages in %s", n, time.Since(t0).Round(time.Second))
	client := benchSynapseClient(b, s)
	id := s.Identity()
	keys := conduitlike.StaticKeys{}
	for _, k := range s.Keys() {
		keys.Add(s.ServerName, string(k.ID), k.PublicKey(), 0)
	}
	ctx := context.Background()
	backfill := func(base string) (*conduitlike.Result, time.Duration) {
		c := &conduitlike.Consumer{Identity: id, Destination: s.ServerName, BaseURL: base, Keys: keys, HTTP: &http.Client{Timeout: 5 * time.Minute}}
		start := time.Now()
		res, err := c.BackfillRoom(ctx, roomID, "10", heads)
		d := time.Since(start)
		if err != nil || !res.ReachedCreate {
			b.Fatalf("backfill from %s: %v (create reached: %v)", base, err, res != nil && res.ReachedCreate)
		}
		if r := res.Count(conduitlike.Rejected); r > 0 {
			b.Fatalf("backfill from %s: %d events rejected", base, r)
		}
		return res, d
	}
	var direct, cold time.Duration
	events := 0
	for i := 0; i < b.N; i++ {
		rd, dd := backfill(s.BaseURL)
		url, stop := coldShim(b, client, s, filepath.Join(b.TempDir(), fmt.Sprintf("cold-%d.db", i)))
		rc, dc := backfill(url)
		stop()
		nd, nc := len(rd.Timeline), len(rc.Timeline)
		// Messages sent concurrently fork the DAG, and the consumer, like Conduit, walks back from
		// the oldest event it has: two walks can end on different sides of a fork. Both are
		// verified whole backfills; a difference beyond a few events is a fault.
		if diff := timelineDiff(rd, rc); diff != "" {
			b.Logf("through the shim %d events, directly %d: %s", nc, nd, diff)
			if d := nc - nd; d*100 > nd || -d*100 > nd {
				b.Fatalf("the backfills differ by more than 1%%")
			}
		}
		direct += dd
		cold += dc
		events += nd
		b.Logf("round %d: %d events, direct %s, cold shim %s (%.2f×)", i, nd, dd.Round(time.Millisecond), dc.Round(time.Millisecond), dc.Seconds()/dd.Seconds())
	}
	b.ReportMetric(float64(events)/direct.Seconds(), "direct-events/s")
	b.ReportMetric(float64(events)/cold.Seconds(), "cold-events/s")
	b.ReportMetric(cold.Seconds()/direct.Seconds(), "cold/direct")
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
