package synapseclient

import (
	"encoding/json"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
)

func TestListRoomsNextBatchIsAnInt(t *testing.T) {
	f := newFake(t)
	f.serveFixture("admin_v1_rooms_limit2")
	all := fixtures.Load(t, "admin_v1_rooms")
	// Page 2 is built from the recorded full list: rooms[2:], offset 2, no next_batch.
	rooms := rawList(t, all.Response.Body, "rooms")
	page2, _ := json.Marshal(map[string]any{"offset": 2, "total_rooms": len(rooms), "rooms": rooms[2:], "prev_batch": 0})
	f.handle("GET", "/_synapse/admin/v1/rooms?limit=2&from=2", respond(200, page2))
	// Expected raw bytes: what was served (page 1 as recorded, page 2 as marshalled).
	p1rec := fixtures.Load(t, "admin_v1_rooms_limit2")
	rooms = append(rawList(t, p1rec.Response.Body, "rooms"), rawList(t, page2, "rooms")...)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.PageSize = 2 })

	p1, err := c.Admin().ListRooms(ctxT(t), ListRoomsOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p1.NextBatch == nil || *p1.NextBatch != 2 || len(p1.Rooms) != 2 {
		t.Fatalf("page 1: next_batch %v, %d rooms", p1.NextBatch, len(p1.Rooms))
	}
	if p1.Rooms[0].Name != nil || p1.Rooms[0].JoinRules != nil || p1.Rooms[0].StateEvents != 7 {
		t.Errorf("room d (no local members) should have null name/join_rules: %+v", p1.Rooms[0])
	}
	got, err := c.Admin().AllRooms(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rooms) {
		t.Fatalf("AllRooms = %d rooms, want %d", len(got), len(rooms))
	}
	for i, r := range got {
		var want struct {
			RoomID  string `json:"room_id"`
			Version string `json:"version"`
		}
		json.Unmarshal(rooms[i], &want)
		if r.RoomID != want.RoomID || r.Version != want.Version || string(r.Raw) != string(rooms[i]) {
			t.Errorf("room %d = %s v%s, want %s v%s", i, r.RoomID, r.Version, want.RoomID, want.Version)
		}
	}
}
