package synapsesim

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

var (
	bigOnce  sync.Once
	bigWorld *world.World
	bigErr   error
)

// busyWorld has rooms of a few hundred events, enough for the backfill and get_missing_events caps.
func busyWorld(t testing.TB) *world.World {
	t.Helper()
	bigOnce.Do(func() {
		bigWorld, bigErr = world.Generate(world.Options{Seed: 11, Rooms: -1, Users: -1, MessagesPerRoom: 160})
	})
	if bigErr != nil {
		t.Fatal(bigErr)
	}
	return bigWorld
}

func dmOf(t testing.TB, w *world.World) *world.Room {
	t.Helper()
	var direct map[string][]string
	_ = json.Unmarshal(w.User("@alice:" + w.ServerName).AccountData.Global["m.direct"], &direct)
	for _, rs := range direct {
		return w.Room(rs[0])
	}
	t.Fatal("no DM")
	return nil
}

func eventIDs(pdus []map[string]any) []string {
	var out []string
	for _, p := range pdus {
		out = append(out, p["_id"].(string))
	}
	return out
}

// withIDs adds the event ID ("_id") of each served PDU.
func withIDs(t testing.TB, room *world.Room, raws []json.RawMessage) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, raw := range raws {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		noUnsigned := raw
		if gjson.GetBytes(raw, "unsigned").Exists() {
			delete(m, "unsigned")
			noUnsigned, _ = json.Marshal(m)
		}
		id, err := signing.EventID(room.Version, noUnsigned)
		if err != nil {
			t.Fatal(err)
		}
		m["_id"] = id
		out = append(out, m)
	}
	return out
}

func TestBackfillIncludesSeedsCapsAndOrders(t *testing.T) {
	w := busyWorld(t)
	s := Start(t, Options{World: w})
	room := dmOf(t, w)
	if len(room.Events) < 150 {
		t.Fatalf("room too small: %d", len(room.Events))
	}
	seed := room.Latest().ID
	r := fed(t, s, "GET", "/_matrix/federation/v1/backfill/"+esc(room.ID)+"?v="+esc(seed)+"&limit=500", nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	pdus := withIDs(t, room, rawPDUs(t, r, "pdus"))
	if len(pdus) != 100 {
		t.Fatalf("backfill served %d events, want the cap of 100", len(pdus))
	}
	if pdus[0]["_id"] != seed {
		t.Errorf("first event %v, want the seed %s", pdus[0]["_id"], seed)
	}
	for i := 1; i < len(pdus); i++ {
		if pdus[i]["depth"].(float64) > pdus[i-1]["depth"].(float64) {
			t.Fatalf("depth rises at %d", i)
		}
	}
	want := BackfillEvents(room, []string{seed}, 100)
	for i, id := range eventIDs(pdus) {
		if want[i].ID != id {
			t.Fatalf("event %d is %s, want %s", i, id, want[i].ID)
		}
	}
	// The create event as seed gives just itself.
	r = fed(t, s, "GET", "/_matrix/federation/v1/backfill/"+esc(room.ID)+"?v="+esc(room.Create().ID)+"&limit=10", nil)
	if got := withIDs(t, room, rawPDUs(t, r, "pdus")); len(got) != 1 || got[0]["_id"] != room.Create().ID {
		t.Fatalf("backfill from create: %v", eventIDs(got))
	}
	// No limit: 400 without errcode.
	r = fed(t, s, "GET", "/_matrix/federation/v1/backfill/"+esc(room.ID)+"?v="+esc(seed), nil)
	if r.status != 400 || string(r.body) != `{"error":"Did not include limit param"}` {
		t.Fatalf("no limit: %d %s", r.status, r.body)
	}
}

func TestGetMissingEventsCapAndOrder(t *testing.T) {
	w := busyWorld(t)
	s := Start(t, Options{World: w})
	room := dmOf(t, w)
	latest := room.Latest().ID
	body := fmt.Sprintf(`{"earliest_events":[%q],"latest_events":[%q],"limit":50,"min_depth":999999}`, room.Create().ID, latest)
	r := fed(t, s, "POST", "/_matrix/federation/v1/get_missing_events/"+esc(room.ID), []byte(body))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	evs := withIDs(t, room, rawPDUs(t, r, "events"))
	if len(evs) != 20 {
		t.Fatalf("%d events, want the cap of 20 (min_depth ignored)", len(evs))
	}
	for i, ev := range evs {
		if ev["_id"] == latest {
			t.Fatal("latest event returned")
		}
		if i > 0 && ev["depth"].(float64) < evs[i-1]["depth"].(float64) {
			t.Fatalf("not oldest first at %d", i)
		}
	}
	last := room.Event(evs[len(evs)-1]["_id"].(string))
	if !contains(room.Latest().PrevEvents, last.ID) {
		t.Errorf("last event %s is not a prev event of the latest", last.ID)
	}
	body = fmt.Sprintf(`{"earliest_events":[],"latest_events":[%q]}`, latest)
	r = fed(t, s, "POST", "/_matrix/federation/v1/get_missing_events/"+esc(room.ID), []byte(body))
	if n := len(rawPDUs(t, r, "events")); n != 10 {
		t.Fatalf("default limit gave %d events, want 10", n)
	}
}

func TestEventNotFoundBodyIsEmptyString(t *testing.T) {
	s := Start(t, Options{World: sharedWorld(t)})
	r := fed(t, s, "GET", "/_matrix/federation/v1/event/"+esc("$doesnotexist"), nil)
	if r.status != 404 || string(r.body) != `""` {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestHostNotInRoomOnEveryRoomEndpoint(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	room := w.RoomsOfKind(world.KindAllLeft)[0]
	rid, eid := esc(room.ID), esc(room.Latest().ID)
	gme := []byte(fmt.Sprintf(`{"earliest_events":[],"latest_events":[%q],"limit":10}`, room.Latest().ID))
	for _, c := range []struct {
		method, uri string
		body        []byte
	}{
		{"GET", "/_matrix/federation/v1/backfill/" + rid + "?v=" + eid + "&limit=10", nil},
		{"GET", "/_matrix/federation/v1/event/" + eid, nil},
		{"POST", "/_matrix/federation/v1/get_missing_events/" + rid, gme},
		{"GET", "/_matrix/federation/v1/state_ids/" + rid + "?event_id=" + eid, nil},
		{"GET", "/_matrix/federation/v1/state/" + rid + "?event_id=" + eid, nil},
		{"GET", "/_matrix/federation/v1/event_auth/" + rid + "/" + eid, nil},
		{"GET", "/_matrix/federation/v1/make_join/" + rid + "/" + esc("@alice:"+w.ServerName) + "?ver=" + room.Version, nil},
	} {
		r := fed(t, s, c.method, c.uri, c.body)
		if r.status != 403 || string(r.body) != `{"errcode":"M_FORBIDDEN","error":"Host not in room."}` {
			t.Errorf("%s %s: %d %s", c.method, c.uri, r.status, r.body)
		}
	}
}

func TestPreJoinEventsArePrunedForTheServer(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	room := w.RoomsOfKind(world.KindJoinedVisibility)[0]
	var hidden, visible *world.Event
	for _, ev := range room.Events {
		if ev.Type == "m.room.message" && !ev.Redacted {
			if !room.LocalJoinedAt(ev.ID) && hidden == nil {
				hidden = ev
			} else if room.LocalJoinedAt(ev.ID) {
				visible = ev
			}
		}
	}
	if hidden == nil || visible == nil {
		t.Fatal("world lacks pre- and post-join messages")
	}
	get := func(ev *world.Event) []byte {
		r := fed(t, s, "GET", "/_matrix/federation/v1/event/"+esc(ev.ID), nil)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		pdu := rawPDUs(t, r, "pdus")[0]
		var m map[string]any
		_ = json.Unmarshal(pdu, &m)
		delete(m, "unsigned")
		b, _ := json.Marshal(m)
		return b
	}
	check := func(ev *world.Event, pdu []byte, wantPruned bool) {
		t.Helper()
		content := gjson.GetBytes(pdu, "content").Raw
		if pruned := content == "{}"; pruned != wantPruned {
			t.Fatalf("%s: content %s, want pruned=%v", ev.ID, content, wantPruned)
		}
		pub, _, ok := w.KeyFor(ev.Origin, ev.SignedWithKey)
		if !ok {
			t.Fatal("no key")
		}
		if err := signing.VerifyEventSignature(room.Version, ev.Origin, signing.KeyID(ev.SignedWithKey), pub, pdu); err != nil {
			t.Errorf("%s: signature: %v", ev.ID, err)
		}
		hash, _ := signing.ContentHash(pdu)
		if matches := hash == gjson.GetBytes(pdu, "hashes.sha256").String(); matches == wantPruned {
			t.Errorf("%s: content hash matches=%v, pruned=%v", ev.ID, matches, wantPruned)
		}
		if id, _ := signing.EventID(room.Version, pdu); id != ev.ID {
			t.Errorf("served event has ID %s, want %s", id, ev.ID)
		}
	}
	check(hidden, get(hidden), true)
	check(visible, get(visible), false)
	// Backfill prunes the same way; /state does not filter.
	r := fed(t, s, "GET", "/_matrix/federation/v1/backfill/"+esc(room.ID)+"?v="+esc(hidden.ID)+"&limit=1", nil)
	if c := gjson.GetBytes(rawPDUs(t, r, "pdus")[0], "content").Raw; c != "{}" {
		t.Errorf("backfilled hidden event content %s", c)
	}
}

func TestRedactedEventServedPrunedWithRedactedBy(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	var ev *world.Event
	for _, e := range dmOf(t, w).Events {
		if e.Redacted {
			ev = e
		}
	}
	r := fed(t, s, "GET", "/_matrix/federation/v1/event/"+esc(ev.ID), nil)
	pdu := rawPDUs(t, r, "pdus")[0]
	if gjson.GetBytes(pdu, "content").Raw != "{}" || gjson.GetBytes(pdu, "unsigned.redacted_by").String() != ev.RedactedBy {
		t.Fatalf("redacted event served as %s", pdu)
	}
}

func TestLoginAsTokenIsBoundToTheUser(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	alice, bob := "@alice:"+w.ServerName, "@bob:"+w.ServerName
	tok := loginAs(t, s, alice)
	r := do(t, s, "GET", "/_matrix/client/v3/account/whoami", tok, nil)
	if m := r.json(t); m["user_id"] != alice || m["device_id"] != nil {
		t.Fatalf("whoami: %s", r.body)
	}
	if r := do(t, s, "GET", "/_matrix/client/v3/user/"+esc(bob)+"/account_data/org.example.custom", tok, nil); r.status != 403 {
		t.Errorf("other user's account data: %d %s", r.status, r.body)
	}
	if r := do(t, s, "GET", "/_matrix/client/v3/user/"+esc(alice)+"/account_data/org.example.custom", tok, nil); r.status != 200 {
		t.Errorf("own account data: %d %s", r.status, r.body)
	}
	if r := do(t, s, "GET", "/_synapse/admin/v2/users", tok, nil); r.status != 403 {
		t.Errorf("puppet token on admin API: %d", r.status)
	}
	if r := do(t, s, "GET", "/_matrix/client/v3/devices", tok, nil); len(r.json(t)["devices"].([]any)) != len(w.User(alice).Devices) {
		t.Errorf("login-as created a device or lost one: %s", r.body)
	}
	r = do(t, s, "POST", "/_synapse/admin/v1/users/"+esc(s.admin.ID)+"/login", s.AdminToken(), []byte(`{}`))
	if r.status != 400 || !strings.Contains(string(r.body), "Cannot use admin API to login as self") {
		t.Errorf("login as self: %d %s", r.status, r.body)
	}
	if r := do(t, s, "GET", "/_matrix/client/v3/account/whoami", "nope", nil); r.status != 401 || r.json(t)["errcode"] != "M_UNKNOWN_TOKEN" {
		t.Errorf("unknown token: %d %s", r.status, r.body)
	}
	if r := do(t, s, "GET", "/_matrix/client/v3/account/whoami", "", nil); r.status != 401 || r.json(t)["errcode"] != "M_MISSING_TOKEN" {
		t.Errorf("missing token: %d %s", r.status, r.body)
	}
}

func TestVersionGatedEndpoints(t *testing.T) {
	w := sharedWorld(t)
	room := dmOf(t, w)
	ev := room.Latest()
	old := Start(t, Options{World: w})
	for _, uri := range []string{"/_synapse/admin/v1/rooms/" + esc(room.ID) + "/messages", "/_synapse/admin/v1/fetch_event/" + esc(ev.ID)} {
		r := do(t, old, "GET", uri, old.AdminToken(), nil)
		if r.status != 404 || string(r.body) != `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}` {
			t.Errorf("1.67 %s: %d %s", uri, r.status, r.body)
		}
	}
	s := Start(t, Options{World: w, Version: "1.140.0"})
	r := do(t, s, "GET", "/_synapse/admin/v1/rooms/"+esc(room.ID)+"/messages?raw&dir=b&limit=5", s.AdminToken(), nil)
	chunk := gjson.GetBytes(r.body, "chunk").Array()
	if r.status != 200 || len(chunk) != 5 || chunk[0].Get("event_id").String() != ev.ID || !chunk[0].Get("signatures").Exists() {
		t.Fatalf("admin messages raw: %d %.300s", r.status, r.body)
	}
	r = do(t, s, "GET", "/_synapse/admin/v1/fetch_event/"+esc(ev.ID), s.AdminToken(), nil)
	if r.status != 200 || !gjson.GetBytes(r.body, "event.hashes.sha256").Exists() {
		t.Fatalf("fetch_event: %d %s", r.status, r.body)
	}
}

func TestRateLimitPerOrigin(t *testing.T) {
	w := sharedWorld(t)
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := Start(t, Options{World: w, Now: clock, RateLimit: &RateLimit{Requests: 3, Window: time.Second}})
	uri := "/_matrix/federation/v1/event/" + esc(dmOf(t, w).Latest().ID)
	for i := range 3 {
		if r := fed(t, s, "GET", uri, nil); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	r := fed(t, s, "GET", uri, nil)
	if r.status != 429 || r.json(t)["errcode"] != "M_LIMIT_EXCEEDED" || r.json(t)["retry_after_ms"].(float64) <= 0 {
		t.Fatalf("4th request: %d %s", r.status, r.body)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if r := fed(t, s, "GET", uri, nil); r.status != 200 {
		t.Fatalf("after the window: %d", r.status)
	}
}

func TestStatsCountRequests(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	for range 3 {
		fed(t, s, "GET", "/_matrix/federation/v1/version", nil)
	}
	do(t, s, "GET", "/_nope", "", nil)
	if st := s.Stats(); st["fed.version"] != 3 || st["unrecognized"] != 1 {
		t.Fatalf("stats %v", st)
	}
}

func TestPathsWithSlashAndPlusInEventIDs(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	// Unknown IDs containing '/' and '+' must still route to the handler (404 ""), not 404 M_UNRECOGNIZED.
	r := fed(t, s, "GET", "/_matrix/federation/v1/event/"+url.PathEscape("$ab/cd+ef"), nil)
	if r.status != 404 || string(r.body) != `""` {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestVersion12CreateInAdminRawForms holds the simulator to what Synapse 1.163.2 does with the
// create event of a version 12 room: the admin raw forms (room messages, fetch_event) give it a
// room_id it was signed without, the federation API serves it as signed, without one.
func TestVersion12CreateInAdminRawForms(t *testing.T) {
	w := sharedWorld(t)
	var room *world.Room
	for _, r := range w.Rooms {
		if r.Version == "12" {
			room = r
		}
	}
	if room == nil {
		t.Fatal("the world has no room of version 12")
	}
	create := room.Create()
	s := Start(t, Options{World: w, Version: "1.163.2"})
	r := do(t, s, "GET", "/_synapse/admin/v1/rooms/"+esc(room.ID)+"/messages?raw&dir=f&limit=1", s.AdminToken(), nil)
	if got := gjson.GetBytes(r.body, "chunk.0"); r.status != 200 || got.Get("event_id").String() != create.ID || got.Get("room_id").String() != room.ID {
		t.Fatalf("admin messages raw, the create event: %d %.400s", r.status, r.body)
	}
	r = do(t, s, "GET", "/_synapse/admin/v1/fetch_event/"+esc(create.ID), s.AdminToken(), nil)
	if r.status != 200 || gjson.GetBytes(r.body, "event.room_id").String() != room.ID {
		t.Fatalf("fetch_event of the create event: %d %s", r.status, r.body)
	}
	r = fed(t, s, "GET", "/_matrix/federation/v1/event/"+esc(create.ID), nil)
	if r.status != 200 || gjson.GetBytes(r.body, "pdus.0.room_id").Exists() || gjson.GetBytes(r.body, "pdus.0.type").String() != "m.room.create" {
		t.Fatalf("federation /event of the create event: %d %s", r.status, r.body)
	}
	// Other events are unchanged.
	r = do(t, s, "GET", "/_synapse/admin/v1/fetch_event/"+esc(room.Latest().ID), s.AdminToken(), nil)
	if r.status != 200 || gjson.GetBytes(r.body, "event.room_id").String() != room.ID {
		t.Fatalf("fetch_event of the latest event: %d %s", r.status, r.body)
	}
}
