package eventsource

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

func TestColdCacheBackfillsEveryRoomWhole(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 11, MessagesPerRoom: 120, OldKeyEvents: 4, V12Rooms: 1}})
	kinds := map[string]bool{}
	for _, r := range b.servedRooms() {
		b.backfillWhole(t, r)
		kinds[r.Kind] = true
		kinds["v"+r.Version] = true
	}
	if !kinds["v12"] {
		t.Error("the world has no room of version 12 served")
	}
	for _, k := range []string{world.KindV1, world.KindRemoteMembers, world.KindJoinedVisibility, world.KindOrdinary} {
		if !kinds[k] {
			t.Errorf("the world has no %s room: the test covers less than it claims", k)
		}
	}
	// The room no local user is in: Synapse answers 403, and so does the shim, without data.
	for _, r := range b.w.RoomsOfKind(world.KindAllLeft) {
		resp := b.get(t, "/_matrix/federation/v1/backfill/"+url.PathEscape(r.ID)+"?v="+url.QueryEscape(r.Latest().ID)+"&limit=10")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || gjson.GetBytes(body, "errcode").String() != "M_FORBIDDEN" {
			t.Fatalf("all-left room: %d %s", resp.StatusCode, body)
		}
	}
}

func TestServesWholeRoomsFromTheCacheWhenSynapseIsDown(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 12, MessagesPerRoom: 80}})
	rooms := b.servedRooms()
	for _, r := range rooms {
		b.backfillWhole(t, r)
	}
	b.simHTTP.Close() // Synapse is gone: every answer now comes from the cache
	for _, r := range rooms {
		b.backfillWhole(t, r)
	}
	// Something the cache never held gets a Matrix error, not a hang.
	resp := b.get(t, "/_matrix/federation/v1/event/"+url.PathEscape("$never-seen"))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || gjson.GetBytes(body, "errcode").String() == "" {
		t.Fatalf("unknown event with Synapse down: %d %s", resp.StatusCode, body)
	}
}

func TestArchiveThenServeWithSynapseStopped(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 13, MessagesPerRoom: 100, OldKeyEvents: 3, V12Rooms: 1}})
	var heads []RoomHeads
	for _, r := range b.servedRooms() {
		heads = append(heads, RoomHeads{RoomID: r.ID, Heads: r.ForwardExtremities()})
	}
	sums := b.src.Archive(context.Background(), heads, 3, nil)
	for i, s := range sums {
		r := b.w.Room(heads[i].RoomID)
		if s.Err != nil || !s.Complete || s.Events != int64(len(r.Events)) || s.Failed() != 0 || len(s.Missing) != 0 {
			t.Fatalf("archive of %s (%s): %+v, world has %d events", r.ID, r.Kind, s, len(r.Events))
		}
		if s.Verified+s.Redacted != s.Events {
			t.Fatalf("archive of %s: %d verified + %d redacted != %d", r.ID, s.Verified, s.Redacted, s.Events)
		}
	}
	b.simHTTP.Close()
	for _, r := range b.servedRooms() {
		b.backfillWhole(t, r)
	}
	// A rerun finds nothing to do and changes nothing.
	again := b.src.Archive(context.Background(), heads, 2, func(string, int) { t.Error("a complete archive fetched events again") })
	for _, s := range again {
		if s.Err != nil || !s.Complete {
			t.Fatalf("rerun: %+v", s)
		}
	}
}

// noBackfill answers /backfill with nothing, as Dendrite does to its own name.
type noBackfill struct{ synapseclient.FederationAPI }

func (noBackfill) Backfill(context.Context, string, []string, int) (*synapseclient.Transaction, error) {
	return &synapseclient.Transaction{}, nil
}

func TestWalksPrevEventsItselfWhenUpstreamBackfillAnswersNothing(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 14, Rooms: -1, MessagesPerRoom: 150},
		upstream: func(f synapseclient.FederationAPI) synapseclient.FederationAPI { return noBackfill{f} }})
	for _, r := range b.servedRooms() {
		b.backfillWhole(t, r)
	}
	var heads []RoomHeads
	for _, r := range b.servedRooms() {
		heads = append(heads, RoomHeads{RoomID: r.ID, Heads: r.ForwardExtremities()})
	}
	b2 := newBedFor(t, b.w, bedOptions{upstream: func(f synapseclient.FederationAPI) synapseclient.FederationAPI { return noBackfill{f} }}, t.TempDir()+"/c.db")
	for i, s := range b2.src.Archive(context.Background(), heads, 2, nil) {
		if s.Err != nil || !s.Complete || s.Events != int64(len(b.w.Room(heads[i].RoomID).Events)) {
			t.Fatalf("archive without /backfill: %+v", s)
		}
	}
}

func TestTamperedEventIsNeverServedIntact(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 15, Rooms: -1, MessagesPerRoom: 40}})
	r := b.w.RoomsOfKind(world.KindOrdinary)
	if len(r) == 0 {
		t.Skip("no ordinary room")
	}
	room := r[0]
	var victim *world.Event
	for i := len(room.Events) - 1; i >= 0; i-- {
		if e := room.Events[i]; e.Type == "m.room.message" && !e.Redacted && strings.Contains(string(e.JSON), `"body"`) {
			victim = e
			break
		}
	}
	// Synapse's /event answers are tampered with, the refetch included: the shim can never get
	// the event intact, so it serves it redacted (its signature holds over the redacted form).
	b.sim.Faults().TamperNext("fed.event", 1000)
	resp := b.get(t, "/_matrix/federation/v1/event/"+url.PathEscape(victim.ID))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/event: %d %s", resp.StatusCode, body)
	}
	pdu := gjson.GetBytes(body, "pdus.0")
	if content := pdu.Get("content"); content.Exists() && len(content.Map()) != 0 {
		t.Fatalf("a tampered event was served with content: %s", pdu.Raw)
	}
	if st, err := b.cache.GetAnyStatus(victim.ID); err != nil || st.Status != eventcache.StatusPruned {
		t.Fatalf("cache status of the tampered event: %+v %v", st.Status, err)
	}
	// A state event whose tampering breaks its event ID and signature is not served at all.
	member := room.Create()
	resp = b.get(t, "/_matrix/federation/v1/event/"+url.PathEscape(member.ID))
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "pdus") {
		t.Fatalf("tampered create event: %d %s", resp.StatusCode, body)
	}
	b.sim.Faults().Clear()

	// Synapse is healthy again; the consumer still never gets the tampered bytes as intact.
	res, err := b.consumer.BackfillRoom(context.Background(), room.ID, room.Version, room.ForwardExtremities())
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, e := range res.Timeline {
		if e.EventID == victim.ID {
			seen = true
			if e.Outcome != conduitlike.Redacted {
				t.Fatalf("the consumer got the tampered event as %s", e.Outcome)
			}
		}
	}
	if !seen || res.Count(conduitlike.Rejected) != 0 || !res.ReachedCreate {
		t.Fatalf("backfill after tampering: victim seen %v, rejected %d, create %v", seen, res.Count(conduitlike.Rejected), res.ReachedCreate)
	}
	// archive asks again for what failed, and now gets it intact.
	sum := b.src.ArchiveRoom(context.Background(), room.ID, room.ForwardExtremities(), nil)
	if sum.Err != nil || sum.Pruned != 0 || sum.Rejected != 0 || !sum.Complete {
		t.Fatalf("archive after tampering: %+v", sum)
	}
	if st, _ := b.cache.GetAnyStatus(victim.ID); st.Status != "verified" {
		t.Fatalf("after archive the event is %s", st.Status)
	}
}

func TestTamperedOnceIsFetchedAgainIntact(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 16, Rooms: -1, MessagesPerRoom: 40}})
	b.sim.Faults().TamperNext("fed.backfill", 1)
	room := b.w.RoomsOfKind(world.KindOrdinary)[0]
	res := b.backfillWhole(t, room)
	if n := res.Count(conduitlike.Verified) + res.Count(conduitlike.Redacted); n != len(room.Events) {
		t.Fatalf("%d of %d arrived", n, len(room.Events))
	}
	counts, err := b.cache.StatusCounts(room.ID)
	if err != nil || counts[eventcache.StatusPruned] != 0 || counts[eventcache.StatusRejected] != 0 {
		t.Fatalf("after one tampered answer and a refetch: %v %v", counts, err)
	}
}

func TestSlowSynapseGives504NotAHang(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 17, Rooms: -1, MessagesPerRoom: 10}, timeout: 300 * time.Millisecond})
	room := b.w.RoomsOfKind(world.KindOrdinary)[0]
	hold := b.sim.Faults().Hold("fed.event")
	defer hold.Release()
	resp := b.get(t, "/_matrix/federation/v1/event/"+url.PathEscape(room.Latest().ID))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("held Synapse: %d %s", resp.StatusCode, body)
	}
	var e struct{ Errcode string }
	if json.Unmarshal(body, &e) != nil || e.Errcode == "" {
		t.Fatalf("no Matrix error body: %s", body)
	}
}

func TestSynapseErrorsBecomeMatrixErrors(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 18, Rooms: -1, MessagesPerRoom: 10}})
	room := b.w.RoomsOfKind(world.KindOrdinary)[0]
	b.sim.Faults().FailNext("fed.event", 100, http.StatusInternalServerError)
	resp := b.get(t, "/_matrix/federation/v1/event/"+url.PathEscape(room.Latest().ID))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || gjson.GetBytes(body, "errcode").String() != "M_UNKNOWN" || strings.Contains(string(body), "pdus") {
		t.Fatalf("Synapse 500: %d %s", resp.StatusCode, body)
	}
	b.sim.Faults().Clear()
	resp = b.get(t, "/_matrix/federation/v1/event/"+url.PathEscape("$does-not-exist"))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown event: %d", resp.StatusCode)
	}
}
