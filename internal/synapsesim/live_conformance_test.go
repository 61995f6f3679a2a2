//go:build synapse

package synapsesim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/signing"
)

// liveSide is one server under comparison: the IDs its request paths use and how to reach it.
type liveSide struct {
	base             string
	id               *signing.Identity
	room, event      string // a room with history and one of its messages
	user, userToken  string // a local user with devices and one of its access tokens
	adminToken, dest string
	edited           string // an event of room that was edited
	dataType         string // a global account data type of user
	dataRoom, rdType string // a room and a room account data type of user
	tagRoom          string // a room user tagged
	public           string // a public room
	backup, keyID    string // user's key backup version; the server's current signing key ID
}

// liveCase is one request sent to both servers; the name matches the fixture patterns of the
// allowances in conformance_test.go. path builds the request URI from a side's IDs.
type liveCase struct {
	name, method, auth string // auth: "", "admin", "user" or "fed"
	path               func(sd liveSide) string
	body               func(sd liveSide) []byte
	minVer             [2]int
}

func liveCases() []liveCase {
	p := func(f func(sd liveSide) string) func(liveSide) string { return f }
	return []liveCase{
		{name: "admin_v1_server_version", method: "GET", auth: "admin", path: p(func(liveSide) string { return "/_synapse/admin/v1/server_version" })},
		{name: "admin_v2_users", method: "GET", auth: "admin", path: p(func(liveSide) string { return "/_synapse/admin/v2/users?limit=5" })},
		{name: "admin_v2_user", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v2/users/" + esc(sd.user) })},
		{name: "admin_v2_user_devices", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v2/users/" + esc(sd.user) + "/devices" })},
		{name: "admin_v1_user_joined_rooms", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/users/" + esc(sd.user) + "/joined_rooms" })},
		{name: "admin_v1_whois", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/whois/" + esc(sd.user) })},
		{name: "admin_v1_rooms", method: "GET", auth: "admin", path: p(func(liveSide) string { return "/_synapse/admin/v1/rooms?limit=5" })},
		{name: "admin_v1_room", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/rooms/" + esc(sd.room) })},
		{name: "admin_v1_room_members", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/rooms/" + esc(sd.room) + "/members" })},
		{name: "admin_v1_room_x_state", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/rooms/" + esc(sd.room) + "/state" })},
		{name: "admin_v1_forward_extremities", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/rooms/" + esc(sd.room) + "/forward_extremities" })},
		{name: "admin_v1_fetch_event", method: "GET", auth: "admin", minVer: [2]int{1, 140}, path: p(func(sd liveSide) string { return "/_synapse/admin/v1/fetch_event/" + esc(sd.event) })},
		{name: "client_versions", method: "GET", path: p(func(liveSide) string { return "/_matrix/client/versions" })},
		{name: "client_whoami", method: "GET", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/account/whoami" })},
		{name: "client_devices", method: "GET", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/devices" })},
		{name: "client_joined_rooms", method: "GET", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/joined_rooms" })},
		{name: "client_keys_query", method: "POST", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/keys/query" }),
			body: func(sd liveSide) []byte { return []byte(`{"device_keys":{"` + sd.user + `":[]}}`) }},
		{name: "key_v2_server", method: "GET", path: p(func(liveSide) string { return "/_matrix/key/v2/server" })},
		{name: "fed_version", method: "GET", path: p(func(liveSide) string { return "/_matrix/federation/v1/version" })},
		{name: "fed_backfill", method: "GET", auth: "fed", path: p(func(sd liveSide) string {
			return "/_matrix/federation/v1/backfill/" + esc(sd.room) + "?limit=5&v=" + esc(sd.event)
		})},
		{name: "fed_event", method: "GET", auth: "fed", path: p(func(sd liveSide) string { return "/_matrix/federation/v1/event/" + esc(sd.event) })},
		{name: "fed_state_ids", method: "GET", auth: "fed", path: p(func(sd liveSide) string {
			return "/_matrix/federation/v1/state_ids/" + esc(sd.room) + "?event_id=" + esc(sd.event)
		})},
		{name: "fed_state", method: "GET", auth: "fed", path: p(func(sd liveSide) string {
			return "/_matrix/federation/v1/state/" + esc(sd.room) + "?event_id=" + esc(sd.event)
		})},
		{name: "fed_event_auth", method: "GET", auth: "fed", path: p(func(sd liveSide) string {
			return "/_matrix/federation/v1/event_auth/" + esc(sd.room) + "/" + esc(sd.event)
		})},
		{name: "fed_get_missing_events", method: "POST", auth: "fed", path: p(func(sd liveSide) string {
			return "/_matrix/federation/v1/get_missing_events/" + esc(sd.room)
		}), body: func(sd liveSide) []byte {
			return []byte(`{"earliest_events":[],"latest_events":["` + sd.event + `"],"limit":5}`)
		}},
		{name: "admin_v1_search_users", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/search_users/" + esc(sd.user) })},
		{name: "admin_v1_user_accountdata", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/users/" + esc(sd.user) + "/accountdata" })},
		{name: "admin_v1_user_pushers", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/users/" + esc(sd.user) + "/pushers" })},
		{name: "admin_v1_user_media", method: "GET", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/users/" + esc(sd.user) + "/media" })},
		{name: "admin_v1_user_login", method: "POST", auth: "admin", path: p(func(sd liveSide) string { return "/_synapse/admin/v1/users/" + esc(sd.user) + "/login" }),
			body: func(liveSide) []byte { return []byte(`{}`) }},
		{name: "admin_v1_room_messages", method: "GET", auth: "admin", minVer: [2]int{1, 68}, path: p(func(sd liveSide) string {
			return "/_synapse/admin/v1/rooms/" + esc(sd.room) + "/messages?dir=b&limit=5"
		})},
		{name: "admin_v1_statistics_users_media", method: "GET", auth: "admin", path: p(func(liveSide) string { return "/_synapse/admin/v1/statistics/users/media" })},
		{name: "client_profile", method: "GET", auth: "user", path: p(func(sd liveSide) string { return "/_matrix/client/v3/profile/" + esc(sd.user) })},
		{name: "client_pushers", method: "GET", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/pushers" })},
		{name: "client_pushrules", method: "GET", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/pushrules/" })},
		{name: "client_tags", method: "GET", auth: "user", path: p(func(sd liveSide) string {
			return "/_matrix/client/v3/user/" + esc(sd.user) + "/rooms/" + esc(sd.tagRoom) + "/tags"
		})},
		{name: "client_account_data", method: "GET", auth: "user", path: p(func(sd liveSide) string {
			return "/_matrix/client/v3/user/" + esc(sd.user) + "/account_data/" + esc(sd.dataType)
		})},
		{name: "client_room_account_data", method: "GET", auth: "user", path: p(func(sd liveSide) string {
			return "/_matrix/client/v3/user/" + esc(sd.user) + "/rooms/" + esc(sd.dataRoom) + "/account_data/" + esc(sd.rdType)
		})},
		{name: "client_3pid", method: "GET", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/account/3pid" })},
		{name: "client_room_keys_version", method: "GET", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/room_keys/version" })},
		{name: "client_room_keys_version_n", method: "GET", auth: "user", path: p(func(sd liveSide) string { return "/_matrix/client/v3/room_keys/version/" + esc(sd.backup) })},
		{name: "client_room_keys_keys", method: "GET", auth: "user", path: p(func(sd liveSide) string { return "/_matrix/client/v3/room_keys/keys?version=" + esc(sd.backup) })},
		{name: "client_sync_account_data_only", method: "GET", auth: "user", path: p(func(liveSide) string { return "/_matrix/client/v3/sync?timeout=0&filter=" + esc(accountDataFilter) })},
		{name: "key_v2_server_key", method: "GET", path: p(func(sd liveSide) string { return "/_matrix/key/v2/server/" + esc(sd.keyID) })},
		{name: "client_room_aliases", method: "GET", auth: "user", path: p(func(sd liveSide) string { return "/_matrix/client/v3/rooms/" + esc(sd.room) + "/aliases" })},
		{name: "client_room_a_messages_b10", method: "GET", auth: "user", path: p(func(sd liveSide) string {
			return "/_matrix/client/v3/rooms/" + esc(sd.room) + "/messages?dir=b&limit=5"
		})},
		{name: "client_event", method: "GET", auth: "user", path: p(func(sd liveSide) string {
			return "/_matrix/client/v3/rooms/" + esc(sd.room) + "/event/" + esc(sd.event)
		})},
		{name: "client_relations", method: "GET", auth: "user", path: p(func(sd liveSide) string {
			return "/_matrix/client/v1/rooms/" + esc(sd.room) + "/relations/" + esc(sd.edited)
		})},
		{name: "key_v2_query", method: "GET", path: p(func(sd liveSide) string { return "/_matrix/key/v2/query/" + esc(sd.dest) })},
		{name: "fed_make_join", method: "GET", auth: "fed", path: p(func(sd liveSide) string {
			return "/_matrix/federation/v1/make_join/" + esc(sd.public) + "/" + esc("@newcomer:"+sd.dest) + "?ver=10&ver=11&ver=12"
		})},
		{name: "fed_user_devices", method: "GET", auth: "fed", path: p(func(sd liveSide) string { return "/_matrix/federation/v1/user/devices/" + esc(sd.user) })},
		{name: "fed_query_profile", method: "GET", auth: "fed", path: p(func(sd liveSide) string { return "/_matrix/federation/v1/query/profile?user_id=" + esc(sd.user) })},
	}
}

// TestLiveConformance sends the same requests to a real, seeded Synapse (TM_SYNAPSE_PYTHON) and to
// a synapsesim imitating its version, and holds the simulator's answers to the live shapes.
func TestLiveConformance(t *testing.T) {
	w := sharedWorld(t)
	// The same server name on both sides, so that maps keyed by it (signatures) compare.
	s := synapsetest.Start(t, synapsetest.Options{ServerName: w.ServerName})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	rec, err := synapsetest.Seed(ctx, s, synapsetest.SeedOptions{Messages: 12})
	if err != nil {
		t.Fatal(err)
	}
	live := liveSideOf(t, s, rec)
	sim := Start(t, Options{World: w, Version: s.Version})
	m := newWorldMap(t, w)
	alice := w.User("@alice:" + w.ServerName)
	simSide := liveSide{base: sim.URL, id: sim.Identity(), dest: w.ServerName, room: m.id(fxRoomA), event: m.id(fxLatestA),
		user: alice.ID, userToken: alice.Devices[0].AccessToken, adminToken: sim.AdminToken(), edited: m.id(fxEditedA),
		dataType: "m.direct", tagRoom: first(alice.Tags), public: m.id(fxRoomB), keyID: w.SigningKey.KeyID}
	if alice.KeyBackup != nil {
		simSide.backup = alice.KeyBackup.Version
	}
	simSide.dataRoom = first(alice.AccountData.Rooms)
	simSide.rdType = first(alice.AccountData.Rooms[simSide.dataRoom])
	ver := parseVersion(s.Version)
	t.Logf("live Synapse %s", s.Version)
	liveAnswers := map[string][]byte{}
	for _, c := range liveCases() {
		t.Run(c.name, func(t *testing.T) {
			if ver[0] < c.minVer[0] || ver[0] == c.minVer[0] && ver[1] < c.minVer[1] {
				t.Skipf("needs Synapse %d.%d", c.minVer[0], c.minVer[1])
			}
			want := liveDo(t, live, c)
			got := liveDo(t, simSide, c)
			if want.status != got.status {
				t.Fatalf("status: simulator %d, live %d; live body %.300s; simulator body %.300s", got.status, want.status, want.body, got.body)
			}
			liveAnswers[c.name] = want.body
			if contentOnly[c.name] {
				if kindOf(jsonValue(want.body)) != "object" || kindOf(jsonValue(got.body)) != "object" {
					t.Errorf("not both objects: live %.200s, simulator %.200s", want.body, got.body)
				}
				return
			}
			for _, d := range compareLiveShapes(c.name, want.body, got.body) {
				t.Error(d)
			}
		})
	}
	// The comparison must notice a simulator answer whose shape moved away from the live one.
	t.Run("changed shapes are caught", func(t *testing.T) {
		for _, c := range []struct{ name, path, raw string }{
			{"admin_v2_user", "admin", `1`},                  // boolean became 0/1
			{"admin_v2_users", "users.0.creation_ts", `"1"`}, // number became a string
			{"fed_backfill", "pdus.0.unsigned", `{"age_ts":1}`},
			{"key_v2_server", "valid_until_ts", `null`},
			{"client_whoami", "device_id", `1`},
		} {
			body := liveAnswers[c.name]
			if body == nil {
				t.Errorf("%s: no live answer to mutate", c.name)
				continue
			}
			mutated, err := sjson.SetRawBytes(body, c.path, []byte(c.raw))
			if err != nil {
				t.Fatal(err)
			}
			if diffs := compareLiveShapes(c.name, body, mutated); len(diffs) == 0 {
				t.Errorf("%s: setting %s to %s went unnoticed", c.name, c.path, c.raw)
			}
		}
	})
}

// accountDataFilter is the /sync filter the export uses (synapseclient.SyncFilter): account data only.
const accountDataFilter = `{"presence":{"not_types":["*"]},"room":{"timeline":{"limit":0,"not_types":["*"]},"state":{"not_types":["*"]},"ephemeral":{"not_types":["*"]}}}`

// contentOnly are answers that are free-form content: the seeded and the world's differ by design.
var contentOnly = map[string]bool{"client_account_data": true, "client_room_account_data": true}

func jsonValue(b []byte) any {
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}

// compareLiveShapes holds the simulator's answer to the live one's shape; it returns the differences.
func compareLiveShapes(name string, live, simulated []byte) []string {
	var want, have any
	if err := json.Unmarshal(live, &want); err != nil {
		return []string{"live answer is not JSON: " + err.Error()}
	}
	if err := json.Unmarshal(simulated, &have); err != nil {
		return []string{"simulator answer is not JSON: " + err.Error()}
	}
	sh := &shape{}
	sh.add(want, "")
	var diffs []string
	sh.check(name, "", have, func(f string, a ...any) { diffs = append(diffs, sprintf(f, a...)) })
	sort.Strings(diffs)
	return diffs
}

func liveSideOf(t *testing.T, s *synapsetest.Server, rec *synapsetest.Record) liveSide {
	room := rec.Rooms[rec.Named["v10"]]
	if room == nil || len(room.Messages) == 0 {
		t.Fatalf("seeded record has no v10 room with messages: %v", rec.Named)
	}
	var user *synapsetest.User
	ids := make([]string, 0, len(rec.Users))
	for id := range rec.Users {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		u := rec.Users[id]
		if !u.Admin && !u.Deactivated && !u.Locked && len(u.Devices) > 1 && u.CrossSigning != nil && room.Members[id] == "join" {
			user = u
			break
		}
	}
	if user == nil {
		t.Fatal("seeded record has no joined user with devices and cross-signing")
	}
	redacted := map[string]bool{}
	for _, e := range room.Redacted {
		redacted[e] = true
	}
	event := ""
	for _, e := range room.Messages {
		if _, edit := room.Edits[e]; !redacted[e] && !edit {
			event = e
		}
	}
	var edited string
	for _, target := range room.Edits {
		edited = max(edited, target)
	}
	sd := liveSide{base: s.BaseURL, id: s.Identity(), dest: s.ServerName, room: room.RoomID, event: event,
		user: user.UserID, userToken: user.Token(), adminToken: s.AdminToken, edited: edited,
		dataType: "m.direct", dataRoom: first(user.RoomData), tagRoom: first(user.Tags), public: rec.Named["public"],
		backup: user.BackupVersion, keyID: string(s.Keys()[0].ID)}
	sd.rdType = first(user.RoomData[sd.dataRoom])
	if sd.edited == "" || sd.dataType == "" || sd.rdType == "" || sd.tagRoom == "" {
		t.Fatalf("seeded user %s lacks an edit, account data or a tag: %+v", user.UserID, sd)
	}
	return sd
}

// first is the smallest key of m ("" when empty).
func first[V any](m map[string]V) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	if len(ks) == 0 {
		return ""
	}
	return ks[0]
}

func liveDo(t *testing.T, sd liveSide, c liveCase) response {
	t.Helper()
	uri := c.path(sd)
	var body []byte
	if c.body != nil {
		body = c.body(sd)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(c.method, sd.base+uri, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch c.auth {
	case "admin":
		req.Header.Set("Authorization", "Bearer "+sd.adminToken)
	case "user":
		req.Header.Set("Authorization", "Bearer "+sd.userToken)
	case "fed":
		x, err := signing.SignRequest(sd.id, c.method, sd.dest, uri, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", x.String())
	}
	return send(t, req)
}

var sprintf = func(f string, a ...any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }
