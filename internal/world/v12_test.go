package world

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
)

// TestV12Rooms checks what room version 12 changes: the room ID is the create event's reference
// hash, the create event has no room_id and no event lists it in auth_events, the creators are
// the sender and additional_creators and never appear in m.room.power_levels.
func TestV12Rooms(t *testing.T) {
	w := v12World(t)
	var v12 []*Room
	for _, r := range w.Rooms {
		if r.Version == "12" {
			v12 = append(v12, r)
		}
	}
	if len(v12) != 2 {
		t.Fatalf("%d rooms of version 12, want 2", len(v12))
	}
	for _, r := range v12 {
		create := r.Create()
		if r.ID != "!"+create.ID[1:] || strings.Contains(r.ID, ":") {
			t.Fatalf("room ID %s is not the create event's hash %s", r.ID, create.ID)
		}
		if w.Room(r.ID) != r {
			t.Fatalf("room %s not indexed", r.ID)
		}
		if gjson.GetBytes(create.JSON, "room_id").Exists() || gjson.GetBytes(create.JSON, "content.creator").Exists() {
			t.Fatalf("v12 create event has room_id or creator: %s", create.JSON)
		}
		pdu, err := gmsl.MustGetRoomVersion(gmsl.RoomVersionV12).NewEventFromUntrustedJSON(create.JSON)
		if err != nil || pdu.RoomID().String() != r.ID {
			t.Fatalf("gomatrixserverlib reads the create event's room as %v (%v), want %s", pdu, err, r.ID)
		}
		creators := append([]string{r.Creator}, r.AdditionalCreators...)
		for _, e := range r.Events[1:] {
			if e.RoomID != r.ID || gjson.GetBytes(e.JSON, "room_id").String() != r.ID {
				t.Fatalf("%s: room_id %s, want %s", e.ID, gjson.GetBytes(e.JSON, "room_id"), r.ID)
			}
			if slices.Contains(e.AuthEvents, create.ID) || slices.Contains(gjsonStrings(e.JSON, "auth_events"), create.ID) {
				t.Fatalf("%s lists the create event in auth_events", e.ID)
			}
			if got := r.AuthEventIDs(e); !slices.Contains(got, create.ID) {
				t.Fatalf("%s: AuthEventIDs %v lacks the create event", e.ID, got)
			}
			if e.Type == "m.room.power_levels" {
				users := gjson.GetBytes(e.JSON, "content.users").Map()
				for _, c := range creators {
					if _, ok := users[c]; ok {
						t.Fatalf("%s lists creator %s in power_levels users", e.ID, c)
					}
				}
			}
		}
		chain := r.AuthChain([]string{r.Latest().ID}, false)
		if !slices.Contains(chain, create.ID) {
			t.Fatalf("auth chain of the latest event lacks the create event")
		}
	}
	first := v12[0]
	if !slices.Equal(first.AdditionalCreators, []string{"@bob:" + w.ServerName}) {
		t.Fatalf("additional creators %v", first.AdditionalCreators)
	}
	var ac []string
	_ = json.Unmarshal([]byte(gjson.GetBytes(first.Create().JSON, "content.additional_creators").Raw), &ac)
	if !slices.Equal(ac, first.AdditionalCreators) {
		t.Fatalf("create content additional_creators %v", ac)
	}
	remote := false
	for _, m := range first.JoinedMembers() {
		remote = remote || serverOf(m) == w.RemoteServerName
	}
	if !remote {
		t.Fatal("the first v12 room has no remote member")
	}
	// The generator is held to the v12 auth rules: a power_levels event listing a creator fails them.
	cache := map[string]gmsl.PDU{}
	for _, e := range first.Events {
		if e.Type != "m.room.power_levels" || e.Sender != first.Creator {
			continue
		}
		st, _ := first.StateBefore(e.ID)
		var statePDUs []gmsl.PDU
		for _, id := range st.EventIDs() {
			statePDUs = append(statePDUs, parsed(t, first, cache, id))
		}
		ae, _ := gmsl.NewAuthEvents(statePDUs)
		if err := gmsl.Allowed(parsed(t, first, cache, e.ID), ae, userIDForSender); err != nil {
			t.Fatalf("power levels refused: %v", err)
		}
		bad := rebuiltWithUsers(t, w, first, e, map[string]int{first.Creator: 100})
		if err := gmsl.Allowed(bad, ae, userIDForSender); err == nil {
			t.Fatal("a power_levels event naming a creator passed the v12 auth rules")
		}
		return
	}
	t.Fatal("no power_levels event by the creator")
}

func gjsonStrings(raw []byte, path string) []string {
	var out []string
	for _, v := range gjson.GetBytes(raw, path).Array() {
		out = append(out, v.String())
	}
	return out
}

// rebuiltWithUsers signs a copy of the power_levels event e whose users are users.
func rebuiltWithUsers(t *testing.T, w *World, r *Room, e *Event, users map[string]int) gmsl.PDU {
	t.Helper()
	var content map[string]any
	if err := json.Unmarshal(contentOf(e.JSON), &content); err != nil {
		t.Fatal(err)
	}
	content["users"] = users
	c, _ := json.Marshal(content)
	ver := gmsl.MustGetRoomVersion(gmsl.RoomVersionV12)
	sk := ""
	pe := gmsl.ProtoEvent{SenderID: e.Sender, RoomID: r.ID, Type: e.Type, StateKey: &sk, PrevEvents: e.PrevEvents,
		AuthEvents: e.AuthEvents, Depth: e.Depth, Content: c}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&pe).Build(time.UnixMilli(e.OriginServerTS), spec.ServerName(w.ServerName), gmsl.KeyID(w.SigningKey.KeyID), w.SigningKey.Private)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}
