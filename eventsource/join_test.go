package eventsource

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

func init() { logrus.SetOutput(io.Discard) } // gomatrixserverlib's checks log every call

// conduitVersions is the ver list Conduit sends with make_join: stable 6–12, then unstable 3–5.
var conduitVersions = []string{"6", "7", "8", "9", "10", "11", "12", "3", "4", "5"}

func makeJoinPath(roomID, userID string, versions []string) string {
	q := url.Values{"ver": versions}
	return "/_matrix/federation/v1/make_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID) + "?" + q.Encode()
}

func sendJoinPath(roomID, eventID string) string {
	return "/_matrix/federation/v2/send_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(eventID)
}

// put sends a PUT to the shim signed as the server itself.
func (b *bed) put(t testing.TB, path string, body []byte) *http.Response {
	t.Helper()
	x, err := signing.SignRequest(b.sim.Identity(), "PUT", b.w.ServerName, path, body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PUT", b.shim.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", x.String())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// wantError checks a Matrix error answer.
func wantError(t testing.TB, what string, resp *http.Response, status int, errcode string) []byte {
	t.Helper()
	body := readAll(t, resp)
	if resp.StatusCode != status || gjson.GetBytes(body, "errcode").String() != errcode {
		t.Fatalf("%s: got %d %s, want %d %s", what, resp.StatusCode, body, status, errcode)
	}
	return body
}

// makeTemplate asks the shim for a join template and checks its shape.
func (b *bed) makeTemplate(t testing.TB, r *world.Room, userID string) []byte {
	t.Helper()
	resp := b.get(t, makeJoinPath(r.ID, userID, conduitVersions))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("make_join %s in %s (v%s): %d %s", userID, r.ID, r.Version, resp.StatusCode, body)
	}
	if v := gjson.GetBytes(body, "room_version").String(); v != r.Version {
		t.Fatalf("make_join: room_version %q, the room is %q", v, r.Version)
	}
	tmpl := gjson.GetBytes(body, "event")
	for _, k := range []string{"signatures", "hashes", "unsigned", "event_id"} {
		if tmpl.Get(k).Exists() {
			t.Fatalf("make_join template carries %q: %s", k, tmpl.Raw)
		}
	}
	if tmpl.Get("room_id").String() != r.ID || tmpl.Get("sender").String() != userID || tmpl.Get("state_key").String() != userID ||
		tmpl.Get("type").String() != "m.room.member" || tmpl.Get("content.membership").String() != "join" {
		t.Fatalf("make_join template: %s", tmpl.Raw)
	}
	ext := r.ForwardExtremities()
	var prev []string
	for _, p := range tmpl.Get("prev_events").Array() {
		prev = append(prev, p.String())
	}
	slices.Sort(prev)
	slices.Sort(ext)
	if !slices.Equal(prev, ext) {
		t.Fatalf("make_join prev_events %v, the room's forward extremities are %v", prev, ext)
	}
	var depth int64
	for _, id := range ext {
		depth = max(depth, r.Event(id).Depth)
	}
	if d := tmpl.Get("depth").Int(); d != depth+1 {
		t.Fatalf("make_join depth %d, want %d", d, depth+1)
	}
	return []byte(tmpl.Raw)
}

// signJoin builds the join from a template as Conduit does (origin, origin_server_ts, membership,
// displayname), hashed and signed with the server's current key by gomatrixserverlib.
func (b *bed) signJoin(t testing.TB, version string, template []byte, displayName string) gmsl.PDU {
	t.Helper()
	var proto gmsl.ProtoEvent
	if err := json.Unmarshal(template, &proto); err != nil {
		t.Fatal(err)
	}
	content := map[string]any{}
	if err := json.Unmarshal(proto.Content, &content); err != nil {
		t.Fatal(err)
	}
	content["membership"] = "join"
	if displayName != "" {
		content["displayname"] = displayName
	}
	if err := proto.SetContent(content); err != nil {
		t.Fatal(err)
	}
	ver := gmsl.MustGetRoomVersion(gmsl.RoomVersion(version))
	key := b.sim.Identity().SigningKey()
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), spec.ServerName(b.w.ServerName), gmsl.KeyID(key.ID), key.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

// checkSendJoinAnswer checks a send_join answer with gomatrixserverlib and against the world.
func checkSendJoinAnswer(t testing.TB, w *world.World, r *world.Room, join gmsl.PDU, body []byte) {
	t.Helper()
	for _, k := range []string{"event", "members_omitted", "servers_in_room"} {
		if gjson.GetBytes(body, k).Exists() && !(k == "members_omitted" && !gjson.GetBytes(body, k).Bool()) {
			t.Fatalf("send_join answer carries %q", k)
		}
	}
	var resp fclient.RespSendJoin
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	ver := gmsl.MustGetRoomVersion(gmsl.RoomVersion(r.Version))
	keys := conduitlike.Verifier{Keys: conduitlike.WorldKeys(w)}
	ctx := context.Background()
	all := map[string]gmsl.PDU{}
	for _, list := range []gmsl.EventJSONs{resp.StateEvents, resp.AuthEvents} {
		for _, raw := range list {
			if gjson.GetBytes(raw, "event_id").Exists() || gjson.GetBytes(raw, "unsigned").Exists() {
				t.Fatalf("a PDU carries event_id or unsigned: %s", raw)
			}
			p, err := ver.NewEventFromUntrustedJSON(raw)
			if err != nil {
				t.Fatalf("PDU does not parse for v%s: %v", r.Version, err)
			}
			if err := gmsl.VerifyEventSignatures(ctx, p, keys, userIDForSender); err != nil {
				t.Fatalf("PDU %s: signature: %v", p.EventID(), err)
			}
			we := w.Event(p.EventID())
			if we == nil || we.RoomID != r.ID {
				t.Fatalf("PDU %s is not an event of the room", p.EventID())
			}
			switch {
			case bytes.Equal(raw, we.JSON):
				if p.Redacted() {
					t.Fatalf("PDU %s: intact in the world, its content hash fails", p.EventID())
				}
			case we.Redacted && bytes.Equal(raw, we.RedactedJSON):
			default: // pruned by Synapse (history hidden from the server): the same event, redacted
				a, errA := signing.RedactEvent(r.Version, raw)
				c, errC := signing.RedactEvent(r.Version, we.JSON)
				ca, _ := signing.CanonicalJSON(a)
				cc, _ := signing.CanonicalJSON(c)
				if errA != nil || errC != nil || !bytes.Equal(ca, cc) || !p.Redacted() {
					t.Fatalf("PDU %s is neither as Synapse stores it nor its redacted form:\n got %s\nwant %s", p.EventID(), raw, we.JSON)
				}
			}
			all[p.EventID()] = p
		}
	}
	for id, p := range all {
		for _, a := range p.AuthEventIDs() {
			if all[a] == nil {
				t.Fatalf("auth chain not closed: %s needs %s", id, a)
			}
		}
	}
	for _, a := range join.AuthEventIDs() {
		if all[a] == nil {
			t.Fatalf("auth event %s of the join is in neither state nor auth_chain", a)
		}
	}
	var got []string
	for _, raw := range resp.StateEvents {
		id, _ := signing.EventID(r.Version, raw)
		got = append(got, id)
	}
	want := r.CurrentState().EventIDs()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("answered state (%d events) is not the world's current state (%d events)", len(got), len(want))
	}
	missingAuth := func(gmsl.RoomVersion, []string) ([]gmsl.PDU, error) {
		return nil, fmt.Errorf("an auth event is missing from the answer")
	}
	checked, err := gmsl.CheckSendJoinResponse(ctx, gmsl.RoomVersion(r.Version), &resp, keys, join, missingAuth, userIDForSender)
	if err != nil {
		t.Fatalf("gomatrixserverlib's send_join check: %v", err)
	}
	if len(checked.GetStateEvents()) != len(resp.StateEvents) || len(checked.GetAuthEvents()) != len(resp.AuthEvents) {
		t.Fatalf("gomatrixserverlib dropped events: state %d of %d, auth chain %d of %d",
			len(checked.GetStateEvents()), len(resp.StateEvents), len(checked.GetAuthEvents()), len(resp.AuthEvents))
	}
}

// joinRooms are the rooms of the acceptance test: every room a Conduit can join through the shim.
func joinRooms(t testing.TB, w *world.World) []*world.Room {
	var out []*world.Room
	seen := map[string]bool{}
	for _, r := range w.Rooms {
		if r.Version != "1" && r.LocalJoinedNow() {
			out = append(out, r)
			seen[r.Version] = true
		}
	}
	for _, v := range []string{"6", "10", "11", "12"} {
		if !seen[v] {
			t.Fatalf("the world has no joinable room of version %s", v)
		}
	}
	return out
}

// localJoined returns a local user joined to the room now (as shim rejoin picks).
func localJoined(w *world.World, r *world.Room) string {
	for _, u := range r.JoinedMembers() {
		if strings.HasSuffix(u, ":"+w.ServerName) {
			return u
		}
	}
	return ""
}

func TestJoinThroughTheShimPassesGomatrixserverlibsChecks(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 21, MessagesPerRoom: 30, OldKeyEvents: 4, V12Rooms: 2}})
	for _, r := range joinRooms(t, b.w) {
		user := localJoined(b.w, r)
		tmpl := b.makeTemplate(t, r, user)
		join := b.signJoin(t, r.Version, tmpl, "Conduit "+user)
		resp := b.put(t, sendJoinPath(r.ID, join.EventID()), join.JSON())
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("send_join in %s (v%s, %s): %d %s", r.ID, r.Version, r.Kind, resp.StatusCode, body)
		}
		checkSendJoinAnswer(t, b.w, r, join, body)

		// The join is remembered, not written into Synapse: /event answers it, /backfill from it
		// answers the room's newest events, and the state before it is kept.
		stored, ok, err := b.cache.Join(join.EventID())
		if err != nil || !ok || !bytes.Equal(stored.JSON, join.JSON()) {
			t.Fatalf("join record: %v %v", ok, err)
		}
		if n, _ := b.cache.Count(r.ID); n >= int64(len(r.Events))+1 {
			t.Fatalf("the join was stored among Synapse's events")
		}
		ev := b.get(t, "/_matrix/federation/v1/event/"+url.PathEscape(join.EventID()))
		evBody := readAll(t, ev)
		if ev.StatusCode != http.StatusOK || gjson.GetBytes(evBody, "pdus.0").Raw != string(join.JSON()) {
			t.Fatalf("/event of the join: %d %s", ev.StatusCode, evBody)
		}
		bf := b.get(t, "/_matrix/federation/v1/backfill/"+url.PathEscape(r.ID)+"?v="+url.QueryEscape(join.EventID())+"&limit=5")
		bfBody := readAll(t, bf)
		if bf.StatusCode != http.StatusOK {
			t.Fatalf("/backfill from the join: %d %s", bf.StatusCode, bfBody)
		}
		pdus := gjson.GetBytes(bfBody, "pdus").Array()
		if len(pdus) != min(5, len(r.Events)) {
			t.Fatalf("/backfill from the join: %d events", len(pdus))
		}
		newest := r.Latest().ID
		found := false
		for _, p := range pdus {
			id, _ := signing.EventID(r.Version, []byte(p.Raw))
			found = found || id == newest
		}
		if !found && len(r.ForwardExtremities()) == 1 {
			t.Fatalf("/backfill from the join does not start at the room's newest event %s", newest)
		}
	}
}

func TestJoinStateIsServedWithSynapseDown(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 22, Rooms: -1, MessagesPerRoom: 20}})
	r := b.w.RoomsOfKind(world.KindRemoteMembers)[0] // two forward extremities
	user := localJoined(b.w, r)
	join := b.signJoin(t, r.Version, b.makeTemplate(t, r, user), "")
	resp := b.put(t, sendJoinPath(r.ID, join.EventID()), join.JSON())
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("send_join: %d %s", resp.StatusCode, body)
	}
	b.backfillWhole(t, r)
	b.simHTTP.Close()
	// Conduit sends the same join again: the same answer, from the cache.
	again := b.put(t, sendJoinPath(r.ID, join.EventID()), join.JSON())
	if againBody := readAll(t, again); again.StatusCode != http.StatusOK || !bytes.Equal(againBody, body) {
		t.Fatalf("send_join again with Synapse down: %d %s", again.StatusCode, againBody)
	}
	ids := b.get(t, "/_matrix/federation/v1/state_ids/"+url.PathEscape(r.ID)+"?event_id="+url.QueryEscape(join.EventID()))
	idsBody := readAll(t, ids)
	if ids.StatusCode != http.StatusOK {
		t.Fatalf("/state_ids at the join with Synapse down: %d %s", ids.StatusCode, idsBody)
	}
	var got []string
	for _, id := range gjson.GetBytes(idsBody, "pdu_ids").Array() {
		got = append(got, id.String())
	}
	want := r.CurrentState().EventIDs()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || len(gjson.GetBytes(idsBody, "auth_chain_ids").Array()) == 0 {
		t.Fatalf("/state_ids at the join: %d state IDs (want %d)", len(got), len(want))
	}
	st := b.get(t, "/_matrix/federation/v1/state/"+url.PathEscape(r.ID)+"?event_id="+url.QueryEscape(join.EventID()))
	stBody := readAll(t, st)
	if st.StatusCode != http.StatusOK || len(gjson.GetBytes(stBody, "pdus").Array()) != len(want) {
		t.Fatalf("/state at the join with Synapse down: %d", st.StatusCode)
	}
	// The state at each prev event was kept while Synapse answered.
	for _, p := range join.PrevEventIDs() {
		resp := b.get(t, "/_matrix/federation/v1/state_ids/"+url.PathEscape(r.ID)+"?event_id="+url.QueryEscape(p))
		body := readAll(t, resp)
		sb, _ := r.StateBefore(p)
		if resp.StatusCode != http.StatusOK || len(gjson.GetBytes(body, "pdu_ids").Array()) != sb.Len() {
			t.Fatalf("/state_ids at prev event %s with Synapse down: %d %s", p, resp.StatusCode, body)
		}
	}
	// /backfill from the join still answers, from the cache.
	bf := b.get(t, "/_matrix/federation/v1/backfill/"+url.PathEscape(r.ID)+"?v="+url.QueryEscape(join.EventID())+"&limit=3")
	if body := readAll(t, bf); bf.StatusCode != http.StatusOK || len(gjson.GetBytes(body, "pdus").Array()) != 3 {
		t.Fatalf("/backfill from the join with Synapse down: %d %s", bf.StatusCode, body)
	}
}

// banningAdmin reports a ban of one user as part of the room's current state.
type banningAdmin struct {
	RoomStateAPI
	roomID string
	ban    *synapseclient.PDU // nil: no ban yet
}

func (a *banningAdmin) RoomState(ctx context.Context, roomID string) ([]json.RawMessage, error) {
	st, err := a.RoomStateAPI.RoomState(ctx, roomID)
	if err != nil || a.ban == nil || roomID != a.roomID {
		return st, err
	}
	var out []json.RawMessage
	for _, e := range st {
		if gjson.GetBytes(e, "type").String() == "m.room.member" && gjson.GetBytes(e, "state_key").String() == *a.ban.StateKey {
			continue
		}
		out = append(out, e)
	}
	ev, _ := json.Marshal(map[string]any{"event_id": a.ban.EventID, "type": "m.room.member", "state_key": *a.ban.StateKey,
		"sender": a.ban.Sender, "room_id": roomID, "content": map[string]string{"membership": "ban"}})
	return append(out, ev), nil
}

func (a *banningAdmin) ForwardExtremities(ctx context.Context, roomID string) ([]synapseclient.ForwardExtremity, error) {
	if a.ban == nil || roomID != a.roomID {
		return a.RoomStateAPI.ForwardExtremities(ctx, roomID)
	}
	return []synapseclient.ForwardExtremity{{EventID: a.ban.EventID, Depth: a.ban.Depth}}, nil
}

func TestRefusedJoinsStoreNothing(t *testing.T) {
	admin := &banningAdmin{}
	b := newBed(t, bedOptions{world: world.Options{Seed: 23, MessagesPerRoom: 15},
		admin: func(a RoomStateAPI) RoomStateAPI { admin.RoomStateAPI = a; return admin }})
	r := b.w.RoomsOfKind(world.KindOrdinary)[0]
	user := localJoined(b.w, r)

	wantError(t, "user of another server", b.get(t, makeJoinPath(r.ID, "@rita:"+b.w.RemoteServerName, conduitVersions)), 403, "M_FORBIDDEN")
	wantError(t, "unknown room", b.get(t, makeJoinPath("!nope:"+b.w.ServerName, user, conduitVersions)), 404, "M_NOT_FOUND")
	body := wantError(t, "version not offered", b.get(t, makeJoinPath(r.ID, user, []string{"5"})), 400, "M_INCOMPATIBLE_ROOM_VERSION")
	if gjson.GetBytes(body, "room_version").String() != r.Version {
		t.Fatalf("M_INCOMPATIBLE_ROOM_VERSION without the room's version: %s", body)
	}
	left := b.w.RoomsOfKind(world.KindAllLeft)[0]
	wantError(t, "room no local user is in", b.get(t, makeJoinPath(left.ID, user, conduitVersions)), 403, "M_FORBIDDEN")
	v1 := b.w.RoomsOfKind(world.KindV1)[0]
	wantError(t, "v1 room", b.get(t, makeJoinPath(v1.ID, localJoined(b.w, v1), conduitVersions)), 400, "M_INCOMPATIBLE_ROOM_VERSION")

	tmpl := b.makeTemplate(t, r, user)
	join := b.signJoin(t, r.Version, tmpl, "")
	raw := join.JSON()

	// A join whose content was changed after signing.
	tampered := bytes.Replace(raw, []byte(`"membership":"join"`), []byte(`"displayname":"x","membership":"join"`), 1)
	id, _ := signing.EventID(r.Version, tampered)
	wantError(t, "tampered join", b.put(t, sendJoinPath(r.ID, id), tampered), 403, "M_FORBIDDEN")
	// An unsigned join.
	unsigned := []byte(gjson.GetBytes(raw, "@this").Raw)
	unsigned = bytes.Replace(unsigned, []byte(`"signatures":`+gjson.GetBytes(raw, "signatures").Raw), []byte(`"signatures":{}`), 1)
	id, _ = signing.EventID(r.Version, unsigned)
	wantError(t, "unsigned join", b.put(t, sendJoinPath(r.ID, id), unsigned), 403, "M_FORBIDDEN")
	// The event ID in the path is another one.
	wantError(t, "other event ID", b.put(t, sendJoinPath(r.ID, r.Latest().ID), raw), 400, "M_BAD_JSON")
	// Another room in the path.
	other := b.w.RoomsOfKind(world.KindOrdinary)[1]
	wantError(t, "other room", b.put(t, sendJoinPath(other.ID, join.EventID()), raw), 400, "M_BAD_JSON")

	// A ban: make_join refuses the user, and a join built on the ban is refused by send_join.
	target := ""
	for _, u := range r.JoinedMembers() {
		if u != r.Creator && strings.HasSuffix(u, ":"+b.w.ServerName) {
			target = u
		}
	}
	if target == "" {
		t.Fatal("no local member to ban")
	}
	admin.roomID = r.ID
	admin.ban = b.putBan(t, r, target)
	wantError(t, "banned user", b.get(t, makeJoinPath(r.ID, target, conduitVersions)), 403, "M_FORBIDDEN")
	cur := r.CurrentState()
	var auth []string
	for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.join_rules", ""}} {
		id, _ := cur.Get(k[0], k[1])
		auth = append(auth, id)
	}
	bannedTmpl, _ := json.Marshal(map[string]any{"room_id": r.ID, "sender": target, "state_key": target, "type": "m.room.member",
		"content": map[string]string{"membership": "join"}, "prev_events": []string{admin.ban.EventID},
		"auth_events": append(auth, admin.ban.EventID), "depth": admin.ban.Depth + 1, "origin_server_ts": 1})
	banned := b.signJoin(t, r.Version, bannedTmpl, "")
	wantError(t, "banned user's join", b.put(t, sendJoinPath(r.ID, banned.EventID()), banned.JSON()), 403, "M_FORBIDDEN")

	n := 0
	if err := b.cache.Joins(func(eventcache.Join) bool { n++; return true }); err != nil || n != 0 {
		t.Fatalf("refused joins were stored: %d %v", n, err)
	}
	for _, id := range []string{banned.EventID(), join.EventID()} {
		if _, ok, _ := b.cache.StateAt(id); ok {
			t.Fatalf("a state snapshot was kept for refused join %s", id)
		}
	}
	if err := b.cache.CheckIntegrity(); err != nil {
		t.Fatal(err)
	}
}

// putBan builds a ban of target by the room's creator after the room's newest events, signs it
// with the server's key, and puts it into the cache as verified (as if fetched from Synapse).
func (b *bed) putBan(t testing.TB, r *world.Room, target string) *synapseclient.PDU {
	t.Helper()
	cur := r.CurrentState()
	var auth []string
	for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.member", r.Creator}, {"m.room.member", target}} {
		id, ok := cur.Get(k[0], k[1])
		if !ok {
			t.Fatalf("no %v in the state", k)
		}
		auth = append(auth, id)
	}
	var depth int64
	for _, id := range r.ForwardExtremities() {
		depth = max(depth, r.Event(id).Depth)
	}
	sk := target
	proto := gmsl.ProtoEvent{SenderID: r.Creator, RoomID: r.ID, Type: "m.room.member", StateKey: &sk,
		PrevEvents: r.ForwardExtremities(), AuthEvents: auth, Depth: depth + 1, Content: spec.RawJSON(`{"membership":"ban"}`)}
	key := b.sim.Identity().SigningKey()
	pdu, err := gmsl.MustGetRoomVersion(gmsl.RoomVersion(r.Version)).NewEventBuilderFromProtoEvent(&proto).
		Build(time.Now(), spec.ServerName(b.w.ServerName), gmsl.KeyID(key.ID), key.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	p, err := synapseclient.ParsePDU(pdu.JSON())
	if err != nil {
		t.Fatal(err)
	}
	p.EventID = pdu.EventID()
	if err := b.cache.Put(eventcache.Event{ID: p.EventID, RoomID: r.ID, RoomVersion: r.Version, Depth: p.Depth, PrevEvents: p.PrevEvents,
		AuthEvents: p.AuthEvents, Type: p.Type, StateKey: p.StateKey, OriginServerTS: p.OriginServerTS, JSON: pdu.JSON(),
		Status: eventcache.StatusVerified}); err != nil {
		t.Fatal(err)
	}
	return &p
}

// BenchmarkJoinThroughShim measures one make_join + send_join round through the shim (HTTP,
// X-Matrix, Synapse's admin API on the simulated Synapse, verification, one cache write) for the
// world's lobby (version 11, every user a member), with its state events already cached.
func BenchmarkJoinThroughShim(b *testing.B) {
	for _, users := range []int{3, 500} {
		bd := newBed(b, bedOptions{world: world.Options{Seed: 24, Rooms: -1, MessagesPerRoom: 50, Users: users}})
		r := bd.w.RoomsOfKind(world.KindOrdinary)[1]
		user := localJoined(bd.w, r)
		b.Run(fmt.Sprintf("state-%d", r.CurrentState().Len()), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				join := bd.signJoin(b, r.Version, bd.makeTemplate(b, r, user), fmt.Sprintf("run %d", i))
				resp := bd.put(b, sendJoinPath(r.ID, join.EventID()), join.JSON())
				if body := readAll(b, resp); resp.StatusCode != http.StatusOK {
					b.Fatalf("send_join: %d %s", resp.StatusCode, body)
				}
			}
		})
	}
}

// TestVersion12JoinsNeverListTheCreateEvent checks joins in a version 12 room: make_join's
// template leaves the create event out of auth_events (the room ID names it), and send_join
// refuses a join that lists it, storing nothing.
func TestVersion12JoinsNeverListTheCreateEvent(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 25, Rooms: -1, MessagesPerRoom: 10, NoV1Room: true, V12Rooms: 1}})
	r := b.w.Rooms[len(b.w.Rooms)-1]
	if r.Version != "12" {
		t.Fatalf("the last room is v%s", r.Version)
	}
	user := localJoined(b.w, r)
	tmpl := b.makeTemplate(t, r, user)
	create := r.Create().ID
	var auth []string
	for _, id := range gjson.GetBytes(tmpl, "auth_events").Array() {
		auth = append(auth, id.String())
	}
	if slices.Contains(auth, create) || len(auth) < 2 {
		t.Fatalf("make_join's auth_events %v (the create event is %s)", auth, create)
	}
	listed, err := sjson.SetBytes(tmpl, "auth_events", append([]string{create}, auth...))
	if err != nil {
		t.Fatal(err)
	}
	bad := b.signJoin(t, r.Version, listed, "")
	wantError(t, "v12 join listing the create event", b.put(t, sendJoinPath(r.ID, bad.EventID()), bad.JSON()), 400, "M_BAD_JSON")
	if _, ok, _ := b.cache.Join(bad.EventID()); ok {
		t.Fatal("the refused join was stored")
	}
	good := b.signJoin(t, r.Version, tmpl, "")
	resp := b.put(t, sendJoinPath(r.ID, good.EventID()), good.JSON())
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("send_join: %d %s", resp.StatusCode, body)
	}
	checkSendJoinAnswer(t, b.w, r, good, body)
	// The create event is in the answer's auth chain, as Synapse's auth chains hold it.
	found := false
	for _, raw := range gjson.GetBytes(body, "auth_chain").Array() {
		id, _ := signing.EventID(r.Version, []byte(raw.Raw))
		found = found || id == create
	}
	if !found {
		t.Fatal("the send_join auth chain lacks the create event")
	}
}
