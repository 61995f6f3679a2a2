package synapseclient

import (
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/signing"
)

// TestParsePDUDerivesTheRoomIDOfAV12CreateEvent: a room version 12 create event carries no
// room_id (real Synapse 1.163 sends it so); its room ID is "!" and its reference hash.
func TestParsePDUDerivesTheRoomIDOfAV12CreateEvent(t *testing.T) {
	create := []byte(`{"auth_events":[],"content":{"room_version":"12"},"depth":1,"hashes":{"sha256":"x"},` +
		`"origin_server_ts":1,"prev_events":[],"sender":"@alice:hs.test","state_key":"","type":"m.room.create","signatures":{}}`)
	id, err := signing.EventID("12", create)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePDU(create)
	if err != nil {
		t.Fatal(err)
	}
	if want := "!" + strings.TrimPrefix(id, "$"); p.RoomID != want {
		t.Fatalf("room ID %q, want %q", p.RoomID, want)
	}
	// Other versions keep what the event says: no room_id, no room ID.
	v11 := []byte(strings.Replace(string(create), `"12"`, `"11"`, 1))
	if p, err := ParsePDU(v11); err != nil || p.RoomID != "" {
		t.Fatalf("v11 create without room_id: room ID %q, %v", p.RoomID, err)
	}
}
