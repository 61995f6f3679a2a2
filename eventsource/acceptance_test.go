package eventsource

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
)

// TestAcceptanceEveryRoomWholeColdThenWithSynapseStopped is issue 4's central acceptance test: a
// world of at least 6 rooms (one of ≥ 20,000 events, one with a second server's events, one of
// room version 1) is backfilled whole through the shim by the Conduit-like consumer, first with
// Synapse up and a cold cache, then — after `archive` into a fresh cache — with Synapse stopped.
func TestAcceptanceEveryRoomWholeColdThenWithSynapseStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20,000-event room: run without -short")
	}
	w, err := world.Generate(world.Options{Seed: 4, MessagesPerRoom: 150, BigRoomActivity: 20000, OldKeyEvents: 5})
	if err != nil {
		t.Fatal(err)
	}
	cold := newBedFor(t, w, bedOptions{}, filepath.Join(t.TempDir(), "cold.db"))
	rooms := cold.servedRooms()
	biggest, kinds := 0, map[string]bool{}
	for _, r := range rooms {
		biggest = max(biggest, len(r.Events))
		kinds[r.Kind] = true
	}
	if len(rooms) < 6 || biggest < 20000 || !kinds[world.KindV1] || !kinds[world.KindRemoteMembers] {
		t.Fatalf("world too small for the acceptance test: %d rooms, biggest %d, kinds %v", len(rooms), biggest, kinds)
	}
	for _, r := range rooms {
		b := cold.backfillWhole(t, r)
		t.Logf("cold cache, Synapse up: room v%s %-33s %6d events, %d requests", r.Version, r.Kind, len(b.Timeline), b.Requests)
	}

	archived := newBedFor(t, w, bedOptions{}, filepath.Join(t.TempDir(), "archived.db"))
	var heads []RoomHeads
	for _, r := range rooms {
		heads = append(heads, RoomHeads{RoomID: r.ID, Heads: r.ForwardExtremities()})
	}
	for i, s := range archived.src.Archive(context.Background(), heads, 4, nil) {
		if s.Err != nil || !s.Complete || s.Events != int64(len(w.Room(heads[i].RoomID).Events)) || s.Failed() != 0 {
			t.Fatalf("archive %s: %+v", heads[i].RoomID, s)
		}
	}
	archived.simHTTP.Close()
	for _, r := range rooms {
		b := archived.backfillWhole(t, r)
		t.Logf("after archive, Synapse stopped: room v%s %-33s %6d events, %d requests", r.Version, r.Kind, len(b.Timeline), b.Requests)
	}
}
