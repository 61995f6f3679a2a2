package dendritetest

import (
	"context"
	"fmt"
)

// RoomSpec says what room to fill.
type RoomSpec struct {
	Messages          int    // m.room.message events sent after creation
	HistoryVisibility string // "" leaves the preset's (private_chat: shared)
}

// Room is a room filled through the client API.
type Room struct {
	ID       string
	Version  string
	Creator  *User
	Sent     []string      // event IDs returned by every send after creation, in order
	Newest   string        // the last event sent: the room's only forward extremity
	Timeline []ClientEvent // every event of the room by /messages, newest first
	Repeats  int           // events /messages answered more than once while paging
}

// FillRoom registers a user, creates a v10 private_chat room, sends spec.Messages messages with a
// topic change after the first third and a power-level change after the second, and reads the
// whole timeline back.
func (s *Server) FillRoom(ctx context.Context, spec RoomSpec) (*Room, error) {
	alice, err := s.Register(ctx, "alice")
	if err != nil {
		return nil, err
	}
	create := map[string]any{"preset": "private_chat", "room_version": "10", "name": "dendritetest"}
	if spec.HistoryVisibility != "" {
		create["initial_state"] = []map[string]any{{
			"type": "m.room.history_visibility", "state_key": "",
			"content": map[string]any{"history_visibility": spec.HistoryVisibility},
		}}
	}
	roomID, err := alice.CreateRoom(ctx, create)
	if err != nil {
		return nil, err
	}
	r := &Room{ID: roomID, Version: "10", Creator: alice}
	for i := 0; i < spec.Messages; i++ {
		switch i {
		case spec.Messages / 3:
			id, err := alice.SetState(ctx, roomID, "m.room.topic", "", map[string]any{"topic": "a topic set after message " + fmt.Sprint(i)})
			if err != nil {
				return nil, err
			}
			r.Sent = append(r.Sent, id)
		case 2 * spec.Messages / 3:
			pl, err := alice.State(ctx, roomID, "m.room.power_levels", "")
			if err != nil {
				return nil, err
			}
			users, _ := pl["users"].(map[string]any)
			if users == nil {
				users = map[string]any{}
			}
			users["@bob:"+s.Name] = 50
			pl["users"] = users
			id, err := alice.SetState(ctx, roomID, "m.room.power_levels", "", pl)
			if err != nil {
				return nil, err
			}
			r.Sent = append(r.Sent, id)
		}
		id, err := alice.Send(ctx, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
		if err != nil {
			return nil, err
		}
		r.Sent = append(r.Sent, id)
	}
	if len(r.Sent) > 0 {
		r.Newest = r.Sent[len(r.Sent)-1]
	}
	if r.Timeline, r.Repeats, err = alice.Timeline(ctx, roomID); err != nil {
		return nil, err
	}
	if len(r.Timeline) == 0 {
		return nil, fmt.Errorf("room %s: /messages returned no events", roomID)
	}
	if r.Newest == "" {
		r.Newest = r.Timeline[0].EventID
	}
	return r, nil
}
