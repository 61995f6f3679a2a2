package eventsource

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// TestPartialCacheWithSynapseDownNeverEndsAWalkShort is issue 15's defect 3: a room's history is
// only partly in the cache when Synapse goes down. A Conduit-like walk from the room's heads gets
// every page the cache can fill (200), and then a 502 it retries later, never a short page that
// looks like the beginning of the room; the same for get_missing_events, state_ids, state and
// event_auth. Answers the cache holds whole stay 200.
func TestPartialCacheWithSynapseDownNeverEndsAWalkShort(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 151, Rooms: -1, MessagesPerRoom: 500}})
	var room *world.Room
	for _, r := range b.w.RoomsOfKind(world.KindOrdinary) {
		if room == nil || len(r.Events) > len(room.Events) {
			room = r
		}
	}
	// A few requests with Synapse up fill the cache with the newest part of the room.
	part := *b.consumer
	part.MaxRequests = 12
	warm, err := part.BackfillRoom(context.Background(), room.ID, room.Version, room.ForwardExtremities())
	if err == nil || warm.ReachedCreate {
		t.Fatalf("twelve requests backfilled the whole room of %d events: make it bigger", len(room.Events))
	}
	cached, err := b.cache.Count(room.ID)
	if err != nil || cached < 100 || cached >= int64(len(room.Events)) {
		t.Fatalf("cache holds %d of %d events (%v): want a part", cached, len(room.Events), err)
	}
	b.simHTTP.Close()

	res, err := b.consumer.BackfillRoom(context.Background(), room.ID, room.Version, room.ForwardExtremities())
	var se *conduitlike.StatusError
	if !errors.As(err, &se) || (se.Status != http.StatusBadGateway && se.Status != http.StatusGatewayTimeout) ||
		gjson.Get(se.Body, "errcode").String() != "M_UNKNOWN" {
		t.Fatalf("walk over a partial cache with Synapse down ended with %v after %d events: want a 502/504 Matrix error to retry", err, len(res.Timeline))
	}
	if res.ReachedCreate || len(res.Timeline) < 100 {
		t.Fatalf("the walk took %d events (create reached: %v) before the error: want every full page the cache holds", len(res.Timeline), res.ReachedCreate)
	}
	t.Logf("room of %d events, %d cached: the walk took %d events, then %d %s", len(room.Events), cached, len(res.Timeline), se.Status, se.Body)

	oldest := res.Timeline[len(res.Timeline)-1].EventID
	esc := url.PathEscape
	// A page the cache fills whole is still answered: 10 events back from the heads.
	if code, body := b.signed(t, "GET", "/_matrix/federation/v1/backfill/"+esc(room.ID)+"?v="+url.QueryEscape(room.Latest().ID)+"&limit=10", nil); code != 200 ||
		len(gjson.Get(body, "pdus").Array()) != 10 {
		t.Fatalf("full page from the cache: %d %.200s", code, body)
	}
	for _, c := range []struct {
		name, method, path string
		body               []byte
	}{
		{"backfill from the oldest cached", "GET", "/_matrix/federation/v1/backfill/" + esc(room.ID) + "?v=" + url.QueryEscape(oldest) + "&limit=100", nil},
		{"get_missing_events behind the oldest cached", "POST", "/_matrix/federation/v1/get_missing_events/" + esc(room.ID),
			[]byte(`{"latest_events":["` + oldest + `"],"earliest_events":[],"limit":50}`)},
		{"state_ids at the oldest cached", "GET", "/_matrix/federation/v1/state_ids/" + esc(room.ID) + "?event_id=" + url.QueryEscape(oldest), nil},
		{"state at the oldest cached", "GET", "/_matrix/federation/v1/state/" + esc(room.ID) + "?event_id=" + url.QueryEscape(oldest), nil},
		{"event_auth of an event missing its chain", "GET", "/_matrix/federation/v1/event_auth/" + esc(room.ID) + "/" + esc(room.Events[len(room.Events)/3].ID), nil},
	} {
		code, body := b.signed(t, c.method, c.path, c.body)
		if (code != http.StatusBadGateway && code != http.StatusGatewayTimeout) || gjson.Get(body, "errcode").String() != "M_UNKNOWN" {
			t.Errorf("%s: %d %.300s, want 502/504 M_UNKNOWN", c.name, code, body)
		}
	}
}

// signed sends a request to the shim signed as the server itself and returns status and body.
func (b *bed) signed(t testing.TB, method, path string, body []byte) (int, string) {
	t.Helper()
	x, err := signing.SignRequest(b.sim.Identity(), method, b.w.ServerName, path, body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, b.shim.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", x.String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(raw))
}
