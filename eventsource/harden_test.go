package eventsource

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// refusingAdmin answers for one malformed room ID as Synapse 1.163.2 does: forward_extremities
// 400 M_UNKNOWN "... was not legal room ID or room alias", state 404 "Room not found".
type refusingAdmin struct {
	RoomStateAPI
	roomID string
}

func (a *refusingAdmin) RoomState(ctx context.Context, roomID string) ([]json.RawMessage, error) {
	if roomID == a.roomID {
		return nil, &synapseclient.Error{Endpoint: "GET /_synapse/admin/v1/rooms/{roomId}/state", Status: 404, ErrCode: "M_NOT_FOUND", Message: "Room not found"}
	}
	return a.RoomStateAPI.RoomState(ctx, roomID)
}

func (a *refusingAdmin) ForwardExtremities(ctx context.Context, roomID string) ([]synapseclient.ForwardExtremity, error) {
	if roomID == a.roomID {
		return nil, &synapseclient.Error{Endpoint: "GET /_synapse/admin/v1/rooms/{roomId}/forward_extremities", Status: 400,
			ErrCode: "M_UNKNOWN", Message: roomID + " was not legal room ID or room alias"}
	}
	return a.RoomStateAPI.ForwardExtremities(ctx, roomID)
}

// TestMakeJoinRefusesDeactivatedUsersAndPassesClientErrorsOn: a user Synapse deactivated gets
// no join template (403), while a user who may join gets one; a 400 from Synapse comes back as
// that 400, not as 502 "Synapse is unavailable".
func TestMakeJoinRefusesDeactivatedUsersAndPassesClientErrorsOn(t *testing.T) {
	admin := &refusingAdmin{roomID: "!malformed"}
	b := newBed(t, bedOptions{world: world.Options{Seed: 152, MessagesPerRoom: 10},
		admin: func(a RoomStateAPI) RoomStateAPI { admin.RoomStateAPI = a; return admin }})
	var deactivated string
	for _, u := range b.w.Users {
		if u.Deactivated {
			deactivated = u.ID
		}
	}
	if deactivated == "" {
		t.Fatal("the world has no deactivated user")
	}
	// A room the deactivated user could join by the auth rules (a public one): a user who is not
	// deactivated gets a template there.
	var public *world.Room
	for _, r := range b.servedRooms() {
		id, ok := r.CurrentState().Get("m.room.join_rules", "")
		if ok && r.Version != "1" && gjson.GetBytes(r.Event(id).JSON, "content.join_rule").String() == "public" {
			public = r
			break
		}
	}
	if public == nil {
		t.Fatal("the world has no public room")
	}
	if resp := b.get(t, makeJoinPath(public.ID, localJoined(b.w, public), conduitVersions)); resp.StatusCode != http.StatusOK {
		t.Fatalf("a joined user's make_join: %d %s", resp.StatusCode, readAll(t, resp))
	}
	body := wantError(t, "deactivated user", b.get(t, makeJoinPath(public.ID, deactivated, conduitVersions)), 403, "M_FORBIDDEN")
	if !strings.Contains(string(body), "deactivated") {
		t.Fatalf("the refusal does not say why: %s", body)
	}
	body = wantError(t, "room ID Synapse refuses", b.get(t, makeJoinPath("!malformed", localJoined(b.w, public), conduitVersions)), 400, "M_UNKNOWN")
	if !strings.Contains(string(body), "not legal room ID") {
		t.Fatalf("Synapse's reason is not passed on: %s", body)
	}
}

// TestEventOfAnotherRoomAnswersNotFoundEverywhere: /backfill, /get_missing_events, /state_ids
// and /event_auth naming an event of another room answer 404 alike, cached or not, Synapse up
// or down.
func TestEventOfAnotherRoomAnswersNotFoundEverywhere(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 153, MessagesPerRoom: 10}})
	rooms := b.w.RoomsOfKind(world.KindOrdinary)
	here, there := rooms[0], rooms[1]
	esc := url.PathEscape
	ask := func(t *testing.T, eventID string) {
		t.Helper()
		for _, c := range []struct {
			name, method, path string
			body               []byte
		}{
			{"backfill", "GET", "/_matrix/federation/v1/backfill/" + esc(here.ID) + "?v=" + url.QueryEscape(eventID) + "&limit=10", nil},
			{"get_missing_events", "POST", "/_matrix/federation/v1/get_missing_events/" + esc(here.ID), []byte(`{"latest_events":["` + eventID + `"],"limit":10}`)},
			{"state_ids", "GET", "/_matrix/federation/v1/state_ids/" + esc(here.ID) + "?event_id=" + url.QueryEscape(eventID), nil},
			{"event_auth", "GET", "/_matrix/federation/v1/event_auth/" + esc(here.ID) + "/" + esc(eventID), nil},
		} {
			if code, body := b.signed(t, c.method, c.path, c.body); code != http.StatusNotFound || gjson.Get(body, "errcode").String() != "M_NOT_FOUND" {
				t.Errorf("%s naming an event of another room: %d %.200s, want 404 M_NOT_FOUND", c.name, code, body)
			}
		}
	}
	t.Run("not cached, Synapse up", func(t *testing.T) { ask(t, there.Events[len(there.Events)/2].ID) })
	b.backfillWhole(t, there)
	b.simHTTP.Close()
	t.Run("cached, Synapse down", func(t *testing.T) { ask(t, there.Latest().ID) })
}

// lacking is a Synapse that does not have one event: /event answers 404 for it and /backfill and
// /get_missing_events leave it out.
type lacking struct {
	synapseclient.FederationAPI
	id, version string
}

func (l lacking) without(pdus []synapseclient.PDU) []synapseclient.PDU {
	var out []synapseclient.PDU
	for _, p := range pdus {
		if id, _ := signing.EventID(l.version, p.Raw); id != l.id {
			out = append(out, p)
		}
	}
	return out
}

func (l lacking) Event(ctx context.Context, id string) (*synapseclient.Transaction, error) {
	if id == l.id {
		return nil, &synapseclient.Error{Endpoint: "GET /_matrix/federation/v1/event/{eventId}", Status: 404}
	}
	return l.FederationAPI.Event(ctx, id)
}

func (l lacking) Backfill(ctx context.Context, roomID string, ids []string, limit int) (*synapseclient.Transaction, error) {
	tx, err := l.FederationAPI.Backfill(ctx, roomID, ids, limit)
	if err == nil {
		tx.PDUs = l.without(tx.PDUs)
	}
	return tx, err
}

func (l lacking) GetMissingEvents(ctx context.Context, roomID string, req synapseclient.MissingEventsRequest) ([]synapseclient.PDU, error) {
	pdus, err := l.FederationAPI.GetMissingEvents(ctx, roomID, req)
	return l.without(pdus), err
}

// TestGapSynapseLacksStaysWholeWithSynapseDown: an event Synapse does not have ends a walk the
// same way with Synapse up and, afterwards, down (200, the events before the gap): the gap was
// recorded as one Synapse lacks, so the answer is known to be as whole as it gets.
func TestGapSynapseLacksStaysWholeWithSynapseDown(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 154, Rooms: -1, MessagesPerRoom: 60})
	if err != nil {
		t.Fatal(err)
	}
	r := w.RoomsOfKind(world.KindOrdinary)[0]
	gap := r.Events[len(r.Events)-20] // a message 20 events back
	b := newBedFor(t, w, bedOptions{upstream: func(f synapseclient.FederationAPI) synapseclient.FederationAPI { return lacking{f, gap.ID, r.Version} }},
		t.TempDir()+"/cache.db")
	path := "/_matrix/federation/v1/backfill/" + url.PathEscape(r.ID) + "?v=" + url.QueryEscape(r.Latest().ID) + "&limit=100"
	code, up := b.signed(t, "GET", path, nil)
	n := len(gjson.Get(up, "pdus").Array())
	if code != http.StatusOK || n == 0 || n >= min(100, len(r.Events)-1) {
		t.Fatalf("Synapse up: %d, %d of the room's %d events: want a 200 that stops at the gap", code, n, len(r.Events))
	}
	b.simHTTP.Close()
	code, down := b.signed(t, "GET", path, nil)
	if code != http.StatusOK || len(gjson.Get(down, "pdus").Array()) != n {
		t.Fatalf("Synapse down: %d %.200s, want the same %d events", code, down, n)
	}
}
