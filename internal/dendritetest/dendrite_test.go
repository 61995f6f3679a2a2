//go:build dendrite

package dendritetest

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/eventsource"
	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// messages is how many m.room.message events the test room gets (the acceptance asks for ≥ 200).
const messages = 210

// fixture is one Dendrite with one filled room and the room's DAG as walked over federation.
type fixture struct {
	s    *Server
	room *Room
	fed  *synapseclient.FederationClient
	dag  map[string]synapseclient.PDU // every event reachable from the newest by prev_events
}

func setup(t *testing.T) *fixture {
	t.Helper()
	start := time.Now()
	s := Start(t, BinDir(t))
	t.Logf("Dendrite %s ready in %s", s.Name, time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start = time.Now()
	room, err := s.FillRoom(ctx, RoomSpec{Messages: messages, HistoryVisibility: "shared"})
	if err != nil {
		t.Fatalf("filling the room: %v", err)
	}
	t.Logf("room %s: %d events sent after creation, %d in /messages (%d answered twice), filled in %s",
		room.ID, len(room.Sent), len(room.Timeline), room.Repeats, time.Since(start).Round(time.Millisecond))
	c, err := synapseclient.New(synapseclient.Config{BaseURL: s.URL, FederationURL: s.URL, ServerName: s.Name, Identity: s.Identity, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{s: s, room: room, fed: c.Federation()}
	f.dag = walkDAG(t, ctx, f.fed, s.Identity, room)
	return f
}

// walkDAG fetches every event reachable from the room's newest event by prev_events (and checks
// auth_events stay inside that set) with /event, verifying each one's ID, content hash and
// signature: the ground truth the shim's answers are compared with.
func walkDAG(t *testing.T, ctx context.Context, fed *synapseclient.FederationClient, id *signing.Identity, room *Room) map[string]synapseclient.PDU {
	t.Helper()
	key := id.SigningKey()
	dag := map[string]synapseclient.PDU{}
	queue := []string{room.Newest}
	for len(queue) > 0 {
		want := queue[0]
		queue = queue[1:]
		if _, ok := dag[want]; ok {
			continue
		}
		tx, err := fed.Event(ctx, want)
		if err != nil {
			t.Fatalf("walking the DAG: %v", err)
		}
		p := tx.PDUs[0]
		if got, err := signing.EventID(room.Version, p.Raw); err != nil || got != want {
			t.Fatalf("/event %s answered an event whose ID is %s (%v)", want, got, err)
		}
		if hash, err := signing.ContentHash(p.Raw); err != nil || hash != gjson.GetBytes(p.Raw, "hashes.sha256").String() {
			t.Fatalf("event %s: content hash mismatch (%v)", want, err)
		}
		if err := signing.VerifyEventSignature(room.Version, id.ServerName, key.ID, key.PublicKey(), p.Raw); err != nil {
			t.Fatalf("event %s: signature: %v", want, err)
		}
		dag[want] = p
		queue = append(queue, p.PrevEvents...)
	}
	creates := 0
	for evID, p := range dag {
		if p.Type == "m.room.create" {
			creates++
		}
		for _, a := range p.AuthEvents {
			if _, ok := dag[a]; !ok {
				t.Fatalf("event %s has auth event %s outside its prev_events ancestry", evID, a)
			}
		}
	}
	if creates != 1 {
		t.Fatalf("the DAG holds %d m.room.create events, want 1", creates)
	}
	// The client API and the federation walk must agree on the room's events, exactly.
	var timeline []string
	for _, e := range room.Timeline {
		timeline = append(timeline, e.EventID)
	}
	for _, e := range timeline {
		if _, ok := dag[e]; !ok {
			t.Fatalf("/messages holds %s, which the prev_events walk from %s did not reach", e, room.Newest)
		}
	}
	if len(timeline) != len(dag) {
		t.Fatalf("/messages holds %d events, the prev_events walk %d", len(timeline), len(dag))
	}
	for _, e := range room.Sent {
		if _, ok := dag[e]; !ok {
			t.Fatalf("sent event %s is not in the DAG", e)
		}
	}
	t.Logf("DAG: %d events (%d created by /createRoom, %d sent after), all verified", len(dag), len(dag)-len(room.Sent), len(room.Sent))
	return dag
}

// authClosure returns the IDs of the events' auth events, recursively, from the walked DAG.
func authClosure(dag map[string]synapseclient.PDU, ids []string) []string {
	seen := map[string]bool{}
	stack := slices.Clone(ids)
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, a := range dag[id].AuthEvents {
			if !seen[a] {
				seen[a] = true
				stack = append(stack, a)
			}
		}
	}
	var out []string
	for id := range seen {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// stateBefore returns the room state before the newest event, computed from the walked DAG (the
// room is linear: one event per depth).
func stateBefore(dag map[string]synapseclient.PDU, newest string) []string {
	top := map[[2]string]synapseclient.PDU{}
	limit := dag[newest].Depth
	for _, p := range dag {
		if p.StateKey == nil || p.Depth >= limit {
			continue
		}
		k := [2]string{p.Type, *p.StateKey}
		if cur, ok := top[k]; !ok || p.Depth > cur.Depth {
			top[k] = p
		}
	}
	var out []string
	for _, p := range top {
		id, _ := signing.EventID("10", p.Raw)
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func sortedIDs(room *Room, pdus []synapseclient.PDU) []string {
	var out []string
	for _, p := range pdus {
		id, _ := signing.EventID(room.Version, p.Raw)
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// TestDendriteFederationAsItself records what Dendrite 0.15.2 answers on its federation API to a
// request signed as itself (origin = destination = its own name, its own key): the facts
// docs/dendrite.md states, each asserted here.
func TestDendriteFederationAsItself(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	room, dag := f.room, f.dag
	newest := dag[room.Newest]

	t.Run("version", func(t *testing.T) {
		v, err := f.fed.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.Server.Name != "Dendrite" || v.Server.Version != "0.15.2" {
			t.Fatalf("version = %+v, want Dendrite 0.15.2", v.Server)
		}
	})
	t.Run("server keys", func(t *testing.T) {
		k, err := f.fed.ServerKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		key := f.s.Identity.SigningKey()
		if k.ServerName != f.s.Name || len(k.VerifyKeys) != 1 || k.VerifyKeys[key.ID].Key != signing.EncodeBase64(key.PublicKey()) {
			t.Fatalf("key document %s does not publish exactly our key %s", k.Raw, key)
		}
		if err := signing.VerifyJSON(f.s.Name, key.ID, key.PublicKey(), k.Raw); err != nil {
			t.Fatalf("key document not signed by our key: %v", err)
		}
	})
	t.Run("event", func(t *testing.T) {
		tx, err := f.fed.Event(ctx, room.Newest)
		if err != nil {
			t.Fatal(err)
		}
		if tx.Origin != f.s.Name {
			t.Errorf("transaction origin %q, want %q", tx.Origin, f.s.Name)
		}
		if gjson.GetBytes(tx.PDUs[0].Raw, "unsigned").Exists() {
			t.Errorf("/event answer carries unsigned: %s", tx.PDUs[0].Raw)
		}
		_, err = f.fed.Event(ctx, "$unknown")
		if !errors.Is(err, synapseclient.ErrNotFound) {
			t.Fatalf("unknown event: %v, want 404", err)
		}
	})
	t.Run("backfill answers nothing", func(t *testing.T) {
		// Dendrite treats a backfill whose origin is one of its own names as its own request
		// and asks other servers instead; there are none, so the answer is empty.
		for _, limit := range []int{1, 20, 100} {
			tx, err := f.fed.Backfill(ctx, room.ID, []string{room.Newest}, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(tx.PDUs) != 0 {
				t.Fatalf("backfill limit %d: %d events, want 0", limit, len(tx.PDUs))
			}
		}
		_, err := f.fed.Backfill(ctx, "!unknown:"+f.s.Name, []string{room.Newest}, 10)
		if !errors.Is(err, synapseclient.ErrNotFound) {
			t.Fatalf("backfill of an unknown room: %v, want 404", err)
		}
	})
	t.Run("get_missing_events", func(t *testing.T) {
		// limit counts the latest events themselves, which are then left out; no cap at 20;
		// min_depth is ignored; oldest first; earliest_events are excluded.
		for _, c := range []struct {
			limit    int
			earliest []string
			minDepth int64
			want     int
		}{
			{limit: 20, want: 19},
			{limit: 100, want: 99},
			{limit: 100, minDepth: newest.Depth - 5, want: 99},
			{limit: 10_000, want: len(dag) - 1},
			{limit: 10_000, earliest: []string{room.Timeline[len(room.Timeline)-1].EventID}, want: len(dag) - 2},
		} {
			evs, err := f.fed.GetMissingEvents(ctx, room.ID, synapseclient.MissingEventsRequest{
				LatestEvents: []string{room.Newest}, EarliestEvents: c.earliest, Limit: c.limit, MinDepth: c.minDepth})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != c.want {
				t.Fatalf("limit %d earliest %v min_depth %d: %d events, want %d", c.limit, c.earliest, c.minDepth, len(evs), c.want)
			}
			for i, e := range evs {
				if want := newest.Depth - int64(len(evs)) + int64(i); e.Depth != want {
					t.Fatalf("limit %d: event %d has depth %d, want %d (oldest first, ending just before the latest)", c.limit, i, e.Depth, want)
				}
			}
		}
	})
	t.Run("state_ids, state, event_auth", func(t *testing.T) {
		wantState := stateBefore(dag, room.Newest)
		// Dendrite's auth chain is that of the state events and of the event itself (its own auth
		// events too), where Synapse's covers the state events only.
		wantChain := authClosure(dag, append(slices.Clone(wantState), room.Newest))
		ids, err := f.fed.StateIDs(ctx, room.ID, room.Newest)
		if err != nil {
			t.Fatal(err)
		}
		gotState, gotChain := slices.Sorted(slices.Values(ids.PDUIDs)), slices.Sorted(slices.Values(ids.AuthChainIDs))
		if !slices.Equal(gotState, wantState) || !slices.Equal(gotChain, wantChain) {
			t.Fatalf("state_ids: state %v auth chain %v, want %v and %v", gotState, gotChain, wantState, wantChain)
		}
		st, err := f.fed.State(ctx, room.ID, room.Newest)
		if err != nil {
			t.Fatal(err)
		}
		if got := sortedIDs(room, st.PDUs); !slices.Equal(got, wantState) {
			t.Fatalf("state: %v, want %v", got, wantState)
		}
		if got := sortedIDs(room, st.AuthChain); !slices.Equal(got, wantChain) {
			t.Fatalf("state auth chain: %v, want %v", got, wantChain)
		}
		auth, err := f.fed.EventAuth(ctx, room.ID, room.Newest)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sortedIDs(room, auth), authClosure(dag, []string{room.Newest}); !slices.Equal(got, want) {
			t.Fatalf("event_auth: %v, want the full auth chain %v", got, want)
		}
		t.Logf("state before the newest event: %d events, auth chain %d (of the state alone: %d); event_auth: %d",
			len(wantState), len(wantChain), len(authClosure(dag, wantState)), len(auth))
	})
}

// countingUpstream counts the shim's calls to Dendrite by endpoint.
type countingUpstream struct {
	synapseclient.FederationAPI
	mu    sync.Mutex
	calls map[string]int
	pdus  map[string]int
}

func (c *countingUpstream) count(endpoint string, pdus int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[endpoint]++
	c.pdus[endpoint] += pdus
}

func (c *countingUpstream) Backfill(ctx context.Context, roomID string, ids []string, limit int) (*synapseclient.Transaction, error) {
	tx, err := c.FederationAPI.Backfill(ctx, roomID, ids, limit)
	n := 0
	if tx != nil {
		n = len(tx.PDUs)
	}
	c.count("backfill", n)
	return tx, err
}

func (c *countingUpstream) Event(ctx context.Context, id string) (*synapseclient.Transaction, error) {
	tx, err := c.FederationAPI.Event(ctx, id)
	n := 0
	if tx != nil {
		n = len(tx.PDUs)
	}
	c.count("event", n)
	return tx, err
}

func (c *countingUpstream) GetMissingEvents(ctx context.Context, roomID string, req synapseclient.MissingEventsRequest) ([]synapseclient.PDU, error) {
	pdus, err := c.FederationAPI.GetMissingEvents(ctx, roomID, req)
	c.count("get_missing_events", len(pdus))
	return pdus, err
}

// TestDendriteRoomBackfilledWholeThroughTheShim has the Conduit-like consumer backfill a room
// created on Dendrite through the shim with Dendrite as the upstream (cold cache), then again with
// Dendrite stopped (from the cache alone): both times from the newest event to m.room.create,
// every event verified, newest → oldest, each once, exactly the room's DAG.
func TestDendriteRoomBackfilledWholeThroughTheShim(t *testing.T) {
	f := setup(t)
	room, id := f.room, f.s.Identity
	cache, err := eventcache.Open(filepath.Join(t.TempDir(), "cache.db"), eventcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	up := &countingUpstream{FederationAPI: f.fed, calls: map[string]int{}, pdus: map[string]int{}}
	src, err := eventsource.New(eventsource.Config{Identity: id, Cache: cache, Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := federation.New(federation.Config{Identity: id, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	shim := httptest.NewServer(srv)
	t.Cleanup(shim.Close)
	keys := conduitlike.StaticKeys{}
	keys.Add(id.ServerName, string(id.SigningKey().ID), id.SigningKey().PublicKey(), 0)

	backfill := func(t *testing.T) {
		c := &conduitlike.Consumer{Identity: id, Destination: id.ServerName, BaseURL: shim.URL, Keys: keys}
		start := time.Now()
		res, err := c.BackfillRoom(context.Background(), room.ID, room.Version, []string{room.Newest})
		if err != nil {
			t.Fatalf("backfill through the shim: %v", err)
		}
		took := time.Since(start)
		if !res.ReachedCreate {
			t.Errorf("m.room.create not reached after %d events", len(res.Timeline))
		}
		if v, r, x := res.Count(conduitlike.Verified), res.Count(conduitlike.Redacted), res.Count(conduitlike.Rejected); v != len(f.dag) || r != 0 || x != 0 {
			t.Errorf("verified %d, redacted %d, rejected %d; want all %d verified", v, r, x, len(f.dag))
		}
		seen := map[string]bool{}
		for i, e := range res.Timeline {
			if seen[e.EventID] {
				t.Fatalf("event %s received twice", e.EventID)
			}
			seen[e.EventID] = true
			if _, ok := f.dag[e.EventID]; !ok {
				t.Fatalf("event %s is not in the room's DAG", e.EventID)
			}
			if i > 0 && e.Depth > res.Timeline[i-1].Depth {
				t.Fatalf("not newest → oldest: depth %d after %d", e.Depth, res.Timeline[i-1].Depth)
			}
		}
		if len(res.Timeline) != len(f.dag) {
			t.Fatalf("received %d events, the room's DAG holds %d", len(res.Timeline), len(f.dag))
		}
		if res.Timeline[0].EventID != room.Newest || res.Timeline[len(res.Timeline)-1].Type != "m.room.create" {
			t.Fatalf("timeline runs from %s to a %s, want from the newest event to m.room.create", res.Timeline[0].EventID, res.Timeline[len(res.Timeline)-1].Type)
		}
		t.Logf("%d events, all verified, in %d requests to the shim, %s", len(res.Timeline), res.Requests, took.Round(time.Millisecond))
	}

	t.Run("Dendrite up, cold cache", func(t *testing.T) {
		backfill(t)
		up.mu.Lock()
		defer up.mu.Unlock()
		t.Logf("calls to Dendrite: %v; PDUs received: %v", up.calls, up.pdus)
		// Dendrite answers its own name nothing on /backfill, so the shim must have walked the
		// room with /event and /get_missing_events.
		if up.pdus["backfill"] != 0 {
			t.Errorf("Dendrite's /backfill answered %d events to its own name; the facts say 0", up.pdus["backfill"])
		}
		if up.pdus["get_missing_events"]+up.pdus["event"] < len(f.dag) {
			t.Errorf("the shim got %d events from Dendrite's /event and /get_missing_events, fewer than the room's %d",
				up.pdus["get_missing_events"]+up.pdus["event"], len(f.dag))
		}
	})
	t.Run("Dendrite stopped, warm cache", func(t *testing.T) {
		if err := f.s.Stop(); err != nil {
			t.Fatal(err)
		}
		up.mu.Lock()
		before := up.calls["event"] + up.calls["get_missing_events"] + up.calls["backfill"]
		up.mu.Unlock()
		backfill(t)
		up.mu.Lock()
		defer up.mu.Unlock()
		if after := up.calls["event"] + up.calls["get_missing_events"] + up.calls["backfill"]; after != before {
			t.Errorf("the shim asked the stopped Dendrite %d times although its cache holds the whole room", after-before)
		}
	})
}
