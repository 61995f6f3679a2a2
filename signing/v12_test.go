package signing_test

import (
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// TestVersion12RoomIDs checks the room ID rules of version 12 on generated rooms: the create
// event's ID gives the room ID and back, and EventRoomID names the room of every event.
func TestVersion12RoomIDs(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 61, Rooms: -1, Users: -1, MessagesPerRoom: 2, NoV1Room: true, V12Rooms: 1})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, r := range w.Rooms {
		create, ok := signing.CreateEventIDOf(r.ID)
		if ok != (r.Version == "12") || signing.DomainlessRoomIDs(r.Version) != (r.Version == "12") {
			t.Fatalf("room %s (v%s): CreateEventIDOf ok=%v, DomainlessRoomIDs=%v", r.ID, r.Version, ok, signing.DomainlessRoomIDs(r.Version))
		}
		if ok && (create != r.Create().ID || signing.RoomIDOfCreate(create) != r.ID) {
			t.Fatalf("room %s: create %s, its room ID %s", r.ID, create, signing.RoomIDOfCreate(create))
		}
		for _, e := range r.Events {
			id, err := signing.EventID(r.Version, e.JSON)
			if err != nil || id != e.ID {
				t.Fatalf("%s: event ID %s (%v)", e.ID, id, err)
			}
			if got := signing.EventRoomID(r.Version, id, e.JSON); got != r.ID {
				t.Fatalf("%s (%s, v%s): EventRoomID %q, want %s", e.ID, e.Type, r.Version, got, r.ID)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no event checked")
	}
	for _, id := range []string{"!abc:example.org", "abc", "!", ""} {
		if _, ok := signing.CreateEventIDOf(id); ok {
			t.Errorf("CreateEventIDOf(%q) ok", id)
		}
	}
	// A version 11 create event has a room_id; without one it names no room.
	if got := signing.EventRoomID("11", "$x", []byte(`{"type":"m.room.create","state_key":""}`)); got != "" {
		t.Errorf("v11 create without room_id: EventRoomID %q", got)
	}
}
