package synapseclient_test

import (
	"slices"
	"testing"

	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// TestParsePDUVersion12 checks what ParsePDU derives in version 12 rooms: the create event's room
// from its hash (or the event_id admin formats add), and the create event the room ID implies
// first among every other event's auth events, once.
func TestParsePDUVersion12(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 62, Rooms: -1, Users: -1, MessagesPerRoom: 3, NoV1Room: true, V12Rooms: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := w.Rooms[len(w.Rooms)-1]
	if r.Version != "12" {
		t.Fatalf("last room is v%s", r.Version)
	}
	for _, e := range r.Events {
		p, err := synapseclient.ParsePDU(e.JSON)
		if err != nil {
			t.Fatal(err)
		}
		if p.RoomID != r.ID || !slices.Equal(p.AuthEvents, r.AuthEventIDs(e)) {
			t.Fatalf("%s (%s): room %s, auth events %v; want %s, %v", e.ID, e.Type, p.RoomID, p.AuthEvents, r.ID, r.AuthEventIDs(e))
		}
	}
	create := r.Create()
	withID, _ := sjson.SetBytes(create.JSON, "event_id", create.ID)
	withID, _ = sjson.SetBytes(withID, "unsigned", map[string]int{"age": 5})
	if p, err := synapseclient.ParsePDU(withID); err != nil || p.RoomID != r.ID {
		t.Fatalf("create with event_id and unsigned: room %q (%v)", p.RoomID, err)
	}
	// An event that lists the create event itself keeps it once.
	msg := r.Latest()
	listed, _ := sjson.SetBytes(msg.JSON, "auth_events", append([]string{create.ID}, msg.AuthEvents...))
	p, err := synapseclient.ParsePDU(listed)
	if err != nil || !slices.Equal(p.AuthEvents, r.AuthEventIDs(msg)) {
		t.Fatalf("listed create: %v (%v)", p.AuthEvents, err)
	}
	// Other versions: the auth events are as listed.
	for _, other := range w.Rooms[:len(w.Rooms)-1] {
		e := other.Latest()
		p, err := synapseclient.ParsePDU(e.JSON)
		if err != nil || !slices.Equal(p.AuthEvents, e.AuthEvents) || p.RoomID != other.ID {
			t.Fatalf("v%s %s: %v %s (%v)", other.Version, e.ID, p.AuthEvents, p.RoomID, err)
		}
	}
}
