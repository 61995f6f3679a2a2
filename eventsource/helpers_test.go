package eventsource

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// bed is one test setup: a simulated Synapse over a world, the shim (cache + source + federation
// server) in front of it, and a Conduit-like consumer talking to the shim.
type bed struct {
	w        *world.World
	sim      *synapsesim.Server
	simHTTP  *httptest.Server
	client   *synapseclient.Client
	cache    *eventcache.Cache
	src      *Source
	shim     *httptest.Server
	consumer *conduitlike.Consumer
}

type bedOptions struct {
	world    world.Options
	upstream func(synapseclient.FederationAPI) synapseclient.FederationAPI // wraps the real client
	timeout  time.Duration
	admin    func(RoomStateAPI) RoomStateAPI // wraps the real admin client
}

func newBed(t testing.TB, o bedOptions) *bed {
	t.Helper()
	w, err := world.Generate(o.world)
	if err != nil {
		t.Fatal(err)
	}
	return newBedFor(t, w, o, filepath.Join(t.TempDir(), "cache.db"))
}

func newBedFor(t testing.TB, w *world.World, o bedOptions, cachePath string) *bed {
	t.Helper()
	b := &bed{w: w, sim: synapsesim.New(synapsesim.Options{World: w})}
	b.simHTTP = httptest.NewServer(b.sim.Handler())
	t.Cleanup(b.simHTTP.Close)
	b.sim.URL = b.simHTTP.URL
	id := b.sim.Identity()
	client, err := synapseclient.New(synapseclient.Config{BaseURL: b.sim.URL, ServerName: w.ServerName, Identity: id,
		AdminToken: b.sim.AdminToken(), MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxTotalWait: 10 * time.Millisecond,
		Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b.client = client
	cache, err := eventcache.Open(cachePath, eventcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	b.cache = cache
	var up synapseclient.FederationAPI = b.client.Federation()
	if o.upstream != nil {
		up = o.upstream(up)
	}
	var admin RoomStateAPI = b.client.Admin()
	if o.admin != nil {
		admin = o.admin(admin)
	}
	b.src, err = New(Config{Identity: id, Cache: cache, Upstream: up, Admin: admin,
		Keys: &NotaryKeys{Client: b.client.Federation(), Identity: id}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := federation.New(federation.Config{Identity: id, Source: b.src, RequestTimeout: o.timeout})
	if err != nil {
		t.Fatal(err)
	}
	b.shim = httptest.NewServer(srv)
	t.Cleanup(b.shim.Close)
	keys := conduitlike.WorldKeys(w)
	b.consumer = &conduitlike.Consumer{Identity: id, Destination: w.ServerName, BaseURL: b.shim.URL, Keys: keys}
	return b
}

// servedRooms are the rooms Synapse can serve over federation (a local user is joined).
func (b *bed) servedRooms() []*world.Room {
	var out []*world.Room
	for _, r := range b.w.Rooms {
		if r.Kind != world.KindAllLeft {
			out = append(out, r)
		}
	}
	return out
}

// backfillWhole has the consumer backfill a room through the shim and checks it arrived whole:
// newest to oldest, down to m.room.create, exactly the world's events, none rejected.
func (b *bed) backfillWhole(t testing.TB, r *world.Room) *conduitlike.Result {
	t.Helper()
	res, err := b.consumer.BackfillRoom(context.Background(), r.ID, r.Version, r.ForwardExtremities())
	if err != nil {
		t.Fatalf("room %s (v%s, %s): %v", r.ID, r.Version, r.Kind, err)
	}
	if !res.ReachedCreate {
		t.Fatalf("room %s (%s): m.room.create not reached", r.ID, r.Kind)
	}
	if n := res.Count(conduitlike.Rejected); n != 0 {
		for _, e := range res.Timeline {
			if e.Outcome == conduitlike.Rejected {
				t.Errorf("rejected %s: %s", e.EventID, e.Reason)
			}
		}
		t.Fatalf("room %s (%s): %d events rejected", r.ID, r.Kind, n)
	}
	var got []string
	for i, e := range res.Timeline {
		if i > 0 && e.Depth > res.Timeline[i-1].Depth {
			t.Fatalf("room %s: depth %d received after %d (not newest → oldest)", r.ID, e.Depth, res.Timeline[i-1].Depth)
		}
		got = append(got, e.EventID)
	}
	want := make([]string, 0, len(r.Events))
	for _, e := range r.Events {
		want = append(want, e.ID)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("room %s (%s): received %d events, the world has %d (or another set)", r.ID, r.Kind, len(got), len(want))
	}
	return res
}

// get sends a request to the shim signed as the server itself.
func (b *bed) get(t testing.TB, path string) *http.Response {
	t.Helper()
	x, err := signing.SignRequest(b.sim.Identity(), "GET", b.w.ServerName, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", b.shim.URL+path, nil)
	req.Header.Set("Authorization", x.String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The federation server takes a Source as its event and join source (eventsource itself does not
// import federation).
var (
	_ federation.EventSource = (*Source)(nil)
	_ federation.JoinSource  = (*Source)(nil)
)
