package signing_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// pduKeys is a fixed key set: server → key ID → public key.
type pduKeys map[string]map[string]ed25519.PublicKey

func (k pduKeys) lookup(server string, id signing.KeyID) (ed25519.PublicKey, error) {
	if pub, ok := k[server][string(id)]; ok {
		return pub, nil
	}
	return nil, fmt.Errorf("unknown key %s of %s", id, server)
}

// VerifyJSONs checks what the shim's full check checks: every known key of a server verifies, at least one.
func (k pduKeys) VerifyJSONs(_ context.Context, reqs []gmsl.VerifyJSONRequest) ([]gmsl.VerifyJSONResult, error) {
	out := make([]gmsl.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		ids, err := gmsl.ListKeyIDs(string(r.ServerName), r.Message)
		if err != nil {
			out[i].Error = err
			continue
		}
		n := 0
		for _, id := range ids {
			pub, ok := k[string(r.ServerName)][string(id)]
			if !ok {
				continue
			}
			if err := gmsl.VerifyJSON(string(r.ServerName), id, pub, r.Message); err != nil {
				out[i].Error = err
				break
			}
			n++
		}
		if out[i].Error == nil && n == 0 {
			out[i].Error = errors.New("no known key signed it")
		}
	}
	return out, nil
}

// gmslVerdict is gomatrixserverlib's answer: the event's ID, whether it parses with its
// signatures holding, and whether its content hash fails (it is then taken redacted).
func gmslVerdict(version string, raw []byte, keys pduKeys) (id string, signed, redacted bool) {
	impl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(version))
	if err != nil {
		return "", false, false
	}
	pdu, err := impl.NewEventFromUntrustedJSON(raw)
	if err != nil {
		return "", false, false
	}
	err = gmsl.VerifyEventSignatures(context.Background(), pdu, keys, func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
		return spec.NewUserID(string(s), true)
	})
	return pdu.EventID(), err == nil, pdu.Redacted()
}

func worldKeys(w *world.World) pduKeys {
	keys := pduKeys{w.ServerName: {w.SigningKey.KeyID: w.SigningKey.Public}, w.RemoteServerName: {w.RemoteKey.KeyID: w.RemoteKey.Public}}
	for _, k := range w.OldKeys {
		keys[w.ServerName][k.KeyID] = k.Public
	}
	return keys
}

// checkAgrees asserts CheckPDU never confirms what gomatrixserverlib refuses, that it gives the
// same event ID and the same fields as synapseclient's parser, and reports whether it confirmed
// the event (intact, or signed with a failing content hash).
func checkAgrees(t *testing.T, name, version string, raw []byte, keys pduKeys) (confirmed bool) {
	t.Helper()
	info, err := signing.CheckPDU(version, raw, keys.lookup)
	wantID, signed, redacted := gmslVerdict(version, raw, keys)
	switch {
	case errors.Is(err, signing.ErrFullCheck):
		return false
	case err != nil && !errors.Is(err, signing.ErrContentHash):
		t.Errorf("%s: error neither ErrFullCheck nor ErrContentHash: %v", name, err)
		return false
	case !signed:
		t.Errorf("%s: CheckPDU confirms (%v) an event gomatrixserverlib refuses: %s", name, err, raw)
	case redacted != (err != nil):
		t.Errorf("%s: content hash: CheckPDU %v, gomatrixserverlib redacted %v", name, err, redacted)
	case info.EventID != wantID:
		t.Errorf("%s: event ID %s, gomatrixserverlib %s", name, info.EventID, wantID)
	}
	p, perr := synapseclient.ParsePDU(raw)
	if perr != nil {
		t.Errorf("%s: synapseclient cannot parse a confirmed event: %v", name, perr)
		return true
	}
	sk := func(s *string) string {
		if s == nil {
			return "<nil>"
		}
		return *s
	}
	if p.RoomID != info.RoomID || p.Type != info.Type || p.Sender != info.Sender || sk(p.StateKey) != sk(info.StateKey) ||
		p.Depth != info.Depth || p.OriginServerTS != info.OriginServerTS ||
		!slices.Equal(p.PrevEvents, info.PrevEvents) || !slices.Equal(p.AuthEvents, info.AuthEvents) {
		t.Errorf("%s: fields differ from synapseclient.ParsePDU: %+v vs %+v", name, info, p)
	}
	return true
}

// TestCheckPDUAgreesWithGomatrixserverlib runs CheckPDU and gomatrixserverlib's checks on every
// event of a generated world (all room kinds, versions 1 to 12, old keys, remote events) and on
// altered copies of each: CheckPDU must confirm the intact events of versions 1 to 11 with the
// same event ID, and confirm nothing gomatrixserverlib refuses.
func TestCheckPDUAgreesWithGomatrixserverlib(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 41, MessagesPerRoom: 20, OldKeyEvents: 5})
	if err != nil {
		t.Fatal(err)
	}
	keys := worldKeys(w)
	fast, full := 0, 0
	for _, r := range w.Rooms {
		for _, e := range r.Events {
			raw := e.JSON
			if e.Redacted && e.RedactedJSON != nil {
				raw = e.RedactedJSON
			}
			if checkAgrees(t, e.ID, r.Version, raw, keys) {
				fast++
			} else {
				full++
				if _, ok, _ := gmslVerdict(r.Version, raw, keys); ok && r.Version != "12" {
					t.Errorf("%s (v%s, %s): intact event left to the full check", e.ID, r.Version, e.Type)
				}
			}
			for _, alt := range alterations(raw) {
				_, err := signing.CheckPDU(r.Version, alt.raw, keys.lookup)
				if checkAgrees(t, e.ID+" "+alt.name, r.Version, alt.raw, keys) && alt.mustFail && err == nil {
					t.Errorf("%s: %s confirmed intact", e.ID, alt.name)
				}
				if alt.name == "content changed" && !errors.Is(err, signing.ErrContentHash) {
					if _, signed, _ := gmslVerdict(r.Version, alt.raw, keys); signed && r.Version != "12" {
						t.Errorf("%s (v%s): changed content: %v, want ErrContentHash", e.ID, r.Version, err)
					}
				}
			}
		}
	}
	t.Logf("%d events confirmed on the fast path, %d left to the full check", fast, full)
	if fast == 0 {
		t.Fatal("no event confirmed")
	}
	// Without keys nothing is confirmed.
	for _, e := range w.Rooms[0].Events {
		if _, err := signing.CheckPDU(w.Rooms[0].Version, e.JSON, pduKeys{}.lookup); !errors.Is(err, signing.ErrFullCheck) {
			t.Fatalf("confirmed without keys: %v", err)
		}
	}
}

type alteration struct {
	name     string
	raw      []byte
	mustFail bool // the change breaks a signature or the content hash (or gomatrixserverlib refuses it)
}

func alterations(raw []byte) []alteration {
	set := func(path, val string) []byte {
		out, err := sjson.SetRawBytes(append([]byte(nil), raw...), path, []byte(val))
		if err != nil {
			panic(err)
		}
		return out
	}
	del := func(path string) []byte {
		out, _ := sjson.DeleteBytes(append([]byte(nil), raw...), path)
		return out
	}
	sig := strings.Replace(string(raw), `"signatures":{`, `"signatures":{"zz.example":{"ed25519:x":"AAAA"},`, 1)
	return []alteration{
		{"content changed", set("content.x_added", `"1"`), true},
		{"membership changed", set("content.membership", `"ban"`), true},
		{"depth changed", set("depth", `999999`), true},
		{"float in content", set("content.x_added", `1.5`), true},
		{"big integer", set("content.x_added", `9007199254740992`), true},
		{"minus zero", set("content.x_added", `-0`), true},
		{"hashes removed", del("hashes"), true},
		{"hash padded", set("hashes.sha256", `"`+gjson.GetBytes(raw, "hashes.sha256").Str+`="`), false},
		{"signatures removed", del("signatures"), true},
		{"age_ts added", set("age_ts", `5`), false},
		{"underscore key", set("_room_version", `"10"`), false},
		{"event_id added", set("event_id", `"$x:y"`), false},
		{"duplicate key", []byte(strings.Replace(string(raw), "{", `{"depth":1,`, 1)), false},
		{"whitespace", []byte(strings.ReplaceAll(string(raw), ",", " ,\n ")), false},
		{"unknown signer", []byte(sig), false},
		{"trailing", append(append([]byte(nil), raw...), []byte(" x")...), true},
	}
}

// TestCheckPDUSpecialEvents signs events whose redaction keeps content keys or that need a second
// signer, in every room version the fast path covers, and checks CheckPDU against gomatrixserverlib.
func TestCheckPDUSpecialEvents(t *testing.T) {
	local := signing.Key{ID: "ed25519:a", Seed: make([]byte, ed25519.SeedSize)}
	remoteSeed := make([]byte, ed25519.SeedSize)
	remoteSeed[0] = 1
	remote := signing.Key{ID: "ed25519:r", Seed: remoteSeed}
	keys := pduKeys{"a.test": {"ed25519:a": local.PublicKey()}, "b.test": {"ed25519:r": remote.PublicKey()}}
	events := []struct {
		name, json  string
		needsRemote bool // b.test must sign too
	}{
		{"power levels", `{"type":"m.room.power_levels","state_key":"","content":{"ban":50,"users":{"@u:a.test":100},"invite":0,"notifications":{"room":50},"x":"y"}}`, false},
		{"join rules", `{"type":"m.room.join_rules","state_key":"","content":{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!r:a.test"}],"x":1}}`, false},
		{"create", `{"type":"m.room.create","state_key":"","content":{"creator":"@u:a.test","room_version":"9","m.federate":true}}`, false},
		{"history", `{"type":"m.room.history_visibility","state_key":"","content":{"history_visibility":"shared","x":1}}`, false},
		{"aliases", `{"type":"m.room.aliases","state_key":"a.test","content":{"aliases":["#x:a.test"],"x":1}}`, false},
		{"redaction", `{"type":"m.room.redaction","redacts":"$abc","content":{"redacts":"$abc","reason":"spam"}}`, false},
		{"member", `{"type":"m.room.member","state_key":"@u:a.test","membership":"join","content":{"membership":"join","displayname":"U"}}`, false},
		{"invite of a remote user", `{"type":"m.room.member","state_key":"@v:b.test","content":{"membership":"invite"}}`, true},
		{"restricted join", `{"type":"m.room.member","state_key":"@u:a.test","content":{"membership":"join","join_authorised_via_users_server":"@w:b.test"}}`, true},
		{"message", `{"type":"m.room.message","content":{"body":"hi \u00e9 \"q\"","msgtype":"m.text"},"origin":"a.test","prev_state":[]}`, false},
	}
	for v := 1; v <= 11; v++ {
		version := fmt.Sprint(v)
		for _, ev := range events {
			base := `{"room_id":"!r:a.test","sender":"@u:a.test","depth":3,"origin_server_ts":1700000000000,` + ev.json[1:]
			if v <= 2 {
				base = `{"event_id":"$e` + version + `:a.test","prev_events":[["$p:a.test",{"sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]],"auth_events":[],` + base[1:]
			} else {
				base = `{"prev_events":["$p"],"auth_events":["$q"],` + base[1:]
			}
			signed, err := signing.SignEvent(version, "a.test", local, []byte(base))
			if err != nil {
				t.Fatal(err)
			}
			name := "v" + version + " " + ev.name
			confirmed := checkAgrees(t, name, version, signed, keys)
			if ev.needsRemote && confirmed && needsRemoteIn(version, ev.name) {
				t.Errorf("%s: confirmed without b.test's signature", name)
			}
			both, err := signing.SignEvent(version, "b.test", remote, signed)
			if err != nil {
				t.Fatal(err)
			}
			if !checkAgrees(t, name+" (both signed)", version, both, keys) {
				t.Errorf("%s (both signed): left to the full check", name)
			}
		}
	}
}

// needsRemoteIn reports whether gomatrixserverlib asks b.test to sign this event in version.
func needsRemoteIn(version, name string) bool {
	if name == "restricted join" {
		return version >= "8" || len(version) == 2
	}
	return true
}

// TestCheckPDUIDOutlivesTheCall: the ID of a version 1 event (read from the event) stays intact
// after later calls reuse CheckPDU's working memory.
func TestCheckPDUIDOutlivesTheCall(t *testing.T) {
	k := signing.Key{ID: "ed25519:a", Seed: make([]byte, ed25519.SeedSize)}
	keys := pduKeys{"a.test": {"ed25519:a": k.PublicKey()}}
	var ids []string
	for i := range 20 {
		ev := fmt.Sprintf(`{"event_id":"$e%d:a.test","room_id":"!r:a.test","sender":"@u:a.test","type":"m.room.message","depth":1,"origin_server_ts":1,"prev_events":[],"auth_events":[],"content":{"body":"%d"}}`, i, i)
		signed, err := signing.SignEvent("1", "a.test", k, []byte(ev))
		if err != nil {
			t.Fatal(err)
		}
		info, err := signing.CheckPDU("1", signed, keys.lookup)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.EventID)
	}
	for i, id := range ids {
		if want := fmt.Sprintf("$e%d:a.test", i); id != want {
			t.Fatalf("event %d: ID %q after later calls, want %q", i, id, want)
		}
	}
}
