package synapsesim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/transition-matrix/transition-matrix/internal/fixtures"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// Fixture room and event IDs, and what they stand for in the generated world.
const (
	fxRoomA = "!FxOZIdiZlcgPsSDLHo:synapse.test" // private v10 DM alice+bob with many messages
	fxRoomB = "!AVaWghPEUXEGqjHYur:synapse.test" // public lobby
	fxRoomC = "!STKJGUaaLthAaOOGaq:synapse.test" // encrypted room
	fxRoomD = "!VVhmvbqMOMIFZlwJpY:synapse.test" // every local user left
	fxRoomE = "!nyXaMgLQEkrNsBiNHP:synapse.test" // room version 1

	fxLatestA   = "$gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0"
	fxCreateA   = "$8zk2OQmUX-xtETfe3mA2zj7AlF7g7T8cMIQkx72S4TQ"
	fxRedactedA = "$5IdS3yVecf5auPVLi_vnveO_jL-kSVPBT7CXREIjF20"
	fxEditA     = "$-gSoSVZ7c_iLaKHggzYXGAq6nlKNmgI9T0TPx2ADZ2s"
	fxEditedA   = "$x-iGSIisNoN8olS7D13mB3_6f8RyLB5V5MVVu2HbekQ"
	fxPLChangeA = "$OXzOlz0loNByuwl1HVU0E4QntS8qzltKVpFhrJHZxwc"
	fxLatestD   = "$y4gfRSNAHasRWtvsowIBOJj6xrJll0VJoJBagqnIzXw"
	fxLatestE   = "$179533051216WEfPP:synapse.test"
)

// unmapped lists fixtures that cannot be held against the simulator, with the reason.
var unmapped = map[string]string{}

// allowance tolerates one documented difference: at paths matching path (glob, "*" = anything)
// in fixtures matching fixture, a key may be missing or extra, or a type may differ.
type allowance struct {
	fixture, path, reason string
}

// optionalKeys may be present in one answer and absent in the other.
var optionalKeys = []allowance{
	{"fed_*", "*.state_key", "state events fall in the world's windows; the recorded windows held only messages"},
	{"fed_*", "*.prev_state", "Synapse 1.67 writes prev_state:[] on every event it creates; gomatrixserverlib (the world's builder) only on state events"},
	{"fed_*", "*.unsigned.replaces_state", "present only for state events that replaced earlier state"},
	{"fed_*", "*.unsigned.invite_room_state", "present only for invites"},
	{"fed_*", "*.unsigned.redacted_by", "present only for redacted events"},
	{"fed_*", "*.redacts", "only m.room.redaction events carry it"},
	{"fed_*", "*.origin", "room v11 events (the world's lobby) have no origin"},
	{"admin_v1_room_*_state", "state[].replaces_state", "present only for state that replaced earlier state"},
	{"admin_v1_room_*_state", "state[].unsigned.replaces_state", "present only for state that replaced earlier state"},
	{"client_room_a_messages_b10", "chunk[].state_key", "state events may fall in the world's last ten events"},
	{"client_room_a_messages_b10", "chunk[].redacts", "a redaction may fall in the world's last ten events"},
	{"client_room_a_messages_b10", "chunk[].unsigned.replaces_state", "state may fall in the window"},
	{"client_room_a_messages_b10", "chunk[].replaces_state", "state may fall in the window"},
	{"client_room_a_messages_b10", "chunk[].redacted_because", "a redacted event may fall in the window"},
	{"client_room_a_messages_b10", "chunk[].unsigned.redacted_by", "a redacted event may fall in the window"},
	{"client_room_a_messages_b10", "chunk[].unsigned.redacted_because", "a redacted event may fall in the window"},
	{"client_keys_query", "device_keys.*.*.signatures.*.*", "world devices are also signed by the self-signing key"},
	{"admin_v1_user_pushers", "pushers[].data.format", "optional pusher data field"},
	{"client_pushers", "pushers[].data.format", "optional pusher data field"},
	{"client_room_keys_version*", "auth_data.signatures", "the seeded live backup is unsigned; the world's is signed"},
	{"client_tags", "tags.*.order", "a tag's order is optional; the seeded and the world's tags differ"},
	{"client_*", "*unsigned.transaction_id", "present only to the device that sent the event"},
	{"admin_v1_fetch_event", "event.origin", "Synapse 1.163.2 no longer writes origin; the world's events carry it"},
}

// typeChanges are places where the JSON type legitimately differs.
var typeChanges = []allowance{
	{"admin_v1_user_media", "media[].last_access_ts", "null for media never downloaded (the live seed); the world's were"},
	{"fed_user_devices_alice", "master_key", "null when the user has no cross-signing (recorded alice); world alice has it"},
	{"fed_user_devices_alice", "self_signing_key", "null when the user has no cross-signing (recorded alice); world alice has it"},
}

// emptyOK are non-empty recorded arrays that may legitimately be empty in the world.
var emptyOK = []allowance{
	{"fed_*", "*.prev_events", "m.room.create has none; it falls in the world's (smaller) windows"},
	{"fed_*", "*.auth_events", "m.room.create has none; it falls in the world's (smaller) windows"},
}

// mapPaths are objects whose keys are data (IDs, types), compared value-by-value against the
// union of the recorded values; objects whose keys all contain ':' are maps too.
var mapPaths = []string{
	"account_data.global", "account_data.rooms", "account_data.rooms.*",
	"device_keys.*", "tags", "*.tags", "rooms.*.sessions", "devices", "rooms.join",
	"*.content", "content", "*.auth_data.signatures.*", "unstable_features",
}

// freePaths are left unchecked below the path: free-form content.
var freePaths = []string{
	"*content", "account_data.global.*", "account_data.rooms.*.*", "*.m.push_rules*",
}

func match(pattern, s string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$"
	return regexp.MustCompile(re).MatchString(s)
}

func allowed(list []allowance, fixture, path string) bool {
	for _, a := range list {
		if match(a.fixture, fixture) && match(a.path, path) {
			return true
		}
	}
	return false
}

func anyMatch(patterns []string, path string) bool {
	for _, p := range patterns {
		if match(p, path) {
			return true
		}
	}
	return false
}

// shape is the union of the JSON shapes recorded at one path.
type shape struct {
	kinds    map[string]bool
	integral bool // every recorded number was integral
	fields   map[string]*shape
	seen     map[string]int // samples holding each field
	samples  int
	elem     *shape // array elements or map values
	isMap    bool
	bigTS    map[int]bool // digit counts of *_ts values
	empty    bool         // some recorded array here was empty
	emptyObj bool         // some recorded object here was {}
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func isMapObject(path string, m map[string]any) bool {
	if anyMatch(mapPaths, path) {
		return true
	}
	if len(m) == 0 {
		return false
	}
	for k := range m {
		if !strings.Contains(k, ":") {
			return false
		}
	}
	return true
}

func childPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func (sh *shape) add(v any, path string) {
	if sh.kinds == nil {
		sh.kinds, sh.fields, sh.seen, sh.bigTS, sh.integral = map[string]bool{}, map[string]*shape{}, map[string]int{}, map[int]bool{}, true
	}
	sh.kinds[kindOf(v)] = true
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) {
			sh.integral = false
		}
		if isTS(path) && x > 1e9 {
			sh.bigTS[len(strconv.FormatInt(int64(x), 10))] = true
		}
	case []any:
		if len(x) == 0 {
			sh.empty = true
		}
		for _, e := range x {
			if sh.elem == nil {
				sh.elem = &shape{}
			}
			sh.elem.add(e, path+"[]")
		}
	case map[string]any:
		if isMapObject(path, x) {
			sh.isMap = true
			for _, e := range x {
				if sh.elem == nil {
					sh.elem = &shape{}
				}
				sh.elem.add(e, childPath(path, "*"))
			}
			return
		}
		if len(x) == 0 {
			sh.emptyObj = true // {} says nothing about the keys, but makes none required
			return
		}
		sh.samples++
		for k, e := range x {
			if sh.fields[k] == nil {
				sh.fields[k] = &shape{}
			}
			sh.fields[k].add(e, childPath(path, k))
			sh.seen[k]++
		}
	}
}

func isTS(path string) bool {
	return strings.HasSuffix(path, "_ts") || strings.HasSuffix(path, "last_seen") || strings.HasSuffix(path, "added_at") || strings.HasSuffix(path, "validated_at")
}

// check compares a simulated value to the recorded shape and reports differences.
func (sh *shape) check(fixture, path string, v any, report func(string, ...any)) {
	if anyMatch(freePaths, path) && path != "" {
		return
	}
	k := kindOf(v)
	if !sh.kinds[k] {
		nullable := (k == "null" && sh.kinds["string"]) || (k == "string" && sh.kinds["null"])
		if !nullable && !allowed(typeChanges, fixture, path) {
			report("%s: type %s, recorded %v", path, k, keys(sh.kinds))
		}
		return
	}
	switch x := v.(type) {
	case float64:
		if sh.integral && x != math.Trunc(x) {
			report("%s: %v is not integral like the recording", path, x)
		}
		if isTS(path) && len(sh.bigTS) > 0 && x > 1e9 && !sh.bigTS[len(strconv.FormatInt(int64(x), 10))] {
			report("%s: %v has another magnitude (ms vs s?) than recorded (%v digits)", path, x, keys2(sh.bigTS))
		}
	case []any:
		if len(x) == 0 && sh.elem != nil && !sh.empty && !allowed(emptyOK, fixture, path) {
			report("%s: empty, recorded non-empty", path)
		}
		if sh.elem != nil {
			for _, e := range x {
				sh.elem.check(fixture, path+"[]", e, report)
			}
		}
	case map[string]any:
		if sh.isMap || (sh.samples == 0 && isMapObject(path, x)) {
			if sh.elem != nil {
				for _, e := range x {
					sh.elem.check(fixture, childPath(path, "*"), e, report)
				}
			}
			return
		}
		if sh.samples == 0 {
			return // recorded only as {}: nothing to compare
		}
		for key, e := range x {
			f := sh.fields[key]
			if f == nil {
				if !allowed(optionalKeys, fixture, childPath(path, key)) {
					report("%s: extra key", childPath(path, key))
				}
				continue
			}
			f.check(fixture, childPath(path, key), e, report)
		}
		for key, n := range sh.seen {
			if _, ok := x[key]; !ok && n == sh.samples && !sh.emptyObj && !allowed(optionalKeys, fixture, childPath(path, key)) {
				report("%s: missing key", childPath(path, key))
			}
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func keys2(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// worldMap holds the world's analogues of the fixture's rooms and events.
type worldMap struct {
	ids     map[string]string
	w       *world.World
	userCnt int
}

func newWorldMap(t *testing.T, w *world.World) *worldMap {
	alice := w.User("@alice:" + w.ServerName)
	var dmID string
	var direct map[string][]string
	_ = json.Unmarshal(alice.AccountData.Global["m.direct"], &direct)
	for _, rs := range direct {
		dmID = rs[0]
	}
	a := w.Room(dmID)
	b := w.Room(w.Aliases["#lobby:"+w.ServerName])
	var c *world.Room
	for _, r := range w.Rooms {
		if r.Encrypted {
			c = r
			break
		}
	}
	d := w.RoomsOfKind(world.KindAllLeft)[0]
	e := w.RoomsOfKind(world.KindV1)[0]
	if a == nil || b == nil || c == nil {
		t.Fatal("world lacks the DM, lobby or encrypted room")
	}
	m := &worldMap{w: w, userCnt: len(w.Users), ids: map[string]string{
		fxRoomA: a.ID, fxRoomB: b.ID, fxRoomC: c.ID, fxRoomD: d.ID, fxRoomE: e.ID,
		fxCreateA: a.Create().ID, fxLatestD: d.Latest().ID,
	}}
	plain := func(r *world.Room, ev *world.Event) bool {
		return ev.Type == "m.room.message" && !ev.Redacted && !gjson.GetBytes(ev.JSON, `content.m\.relates_to`).Exists()
	}
	for _, ev := range a.Events {
		switch {
		case plain(a, ev):
			m.ids[fxLatestA] = ev.ID
		case ev.Redacted && m.ids[fxRedactedA] == "":
			m.ids[fxRedactedA] = ev.ID
		case gjson.GetBytes(ev.JSON, `content.m\.relates_to.rel_type`).String() == "m.replace" && m.ids[fxEditA] == "":
			m.ids[fxEditA] = ev.ID
			m.ids[fxEditedA] = gjson.GetBytes(ev.JSON, `content.m\.relates_to.event_id`).String()
		case ev.Type == "m.room.power_levels" && ev.Depth > 3:
			m.ids[fxPLChangeA] = ev.ID
		}
	}
	for _, ev := range e.Events {
		if plain(e, ev) {
			m.ids[fxLatestE] = ev.ID
		}
	}
	for _, k := range []string{fxLatestA, fxRedactedA, fxEditA, fxEditedA, fxPLChangeA, fxLatestE} {
		if m.ids[k] == "" {
			t.Fatalf("the world has no analogue of fixture event %s", k)
		}
	}
	return m
}

func (m *worldMap) id(s string) string {
	if v, ok := m.ids[s]; ok {
		return v
	}
	return s
}

// uri maps a recorded request URI onto the world, escaping like the recording.
func (m *worldMap) uri(t *testing.T, name, raw string) string {
	p, q, _ := strings.Cut(raw, "?")
	segs := strings.Split(p, "/")
	for i, sgm := range segs {
		u, err := url.PathUnescape(sgm)
		if err != nil {
			t.Fatal(err)
		}
		if mapped := m.id(u); mapped != u {
			segs[i] = esc(mapped)
		}
	}
	out := strings.Join(segs, "/")
	if q == "" {
		return out
	}
	var parts []string
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		u, err := url.QueryUnescape(v)
		if err != nil {
			t.Fatal(err)
		}
		if mapped := m.id(u); mapped != u {
			v = esc(mapped)
		}
		if name == "admin_v2_users_limit2_page3" && k == "from" {
			v = strconv.Itoa(m.userCnt - 1) // the world has more users: ask for its last page
		}
		parts = append(parts, k+"="+v)
	}
	return out + "?" + strings.Join(parts, "&")
}

// body maps event IDs in a recorded JSON body.
func (m *worldMap) body(raw json.RawMessage) []byte {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	var walk func(any) any
	walk = func(x any) any {
		switch y := x.(type) {
		case string:
			return m.id(y)
		case []any:
			for i := range y {
				y[i] = walk(y[i])
			}
		case map[string]any:
			for k := range y {
				y[k] = walk(y[k])
			}
		}
		return x
	}
	b, _ := json.Marshal(walk(v))
	return b
}

func TestConformanceWithSynapse167(t *testing.T) {
	recs := fixtures.LoadAll(t)
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	m := newWorldMap(t, w)
	puppet := loginAs(t, s, "@alice:"+w.ServerName)
	names := map[string]bool{}
	matched := 0
	for _, rec := range recs {
		names[rec.Name] = true
		ok := t.Run(rec.Name, func(t *testing.T) {
			if why, ok := unmapped[rec.Name]; ok {
				t.Skip("unmapped: " + why)
			}
			uri := m.uri(t, rec.Name, rec.Request.Path)
			body := m.body(rec.Request.Body)
			for id := range m.ids {
				if strings.Contains(uri, esc(id)) && m.ids[id] != id {
					t.Fatalf("fixture ID %s left in %s", id, uri)
				}
			}
			req := rawFedRequest(t, s, rec.Request.Method, uri, body, "")
			switch auth := authOf(rec); {
			case auth == "":
			case strings.HasPrefix(auth, "admin"):
				req.Header.Set("Authorization", "Bearer "+s.AdminToken())
			case strings.HasPrefix(auth, "alice"):
				req.Header.Set("Authorization", "Bearer "+puppet)
			case strings.HasPrefix(auth, "X-Matrix"):
				req.Header.Set("Authorization", xmatrixFor(t, s, rec, uri, body))
			default:
				t.Fatalf("unknown auth %q", auth)
			}
			got := send(t, req)
			compareRecording(t, rec, got, s)
		})
		if ok {
			matched++
		}
	}
	for _, want := range []string{"fed_backfill_a", "admin_v2_users_default", "client_sync_account_data_only"} {
		if !names[want] {
			t.Errorf("fixture %s not found", want)
		}
	}
	t.Logf("%d fixtures: %d matched, %d unmapped", len(recs), matched, len(unmapped))
}

func authOf(rec *fixtures.Recording) string {
	var s string
	if json.Unmarshal(rec.Request.Auth, &s) == nil {
		return s
	}
	if x := rec.XMatrix(); x != "" {
		return x
	}
	return ""
}

// xmatrixFor signs the request with the world's key the way the recording's case needs.
func xmatrixFor(t *testing.T, s *Server, rec *fixtures.Recording, uri string, body []byte) string {
	id := s.Identity()
	dest := s.w.ServerName
	switch rec.Name {
	case "fed_destination_mismatch_header":
		x, _ := signing.SignRequest(id, rec.Request.Method, "other.test", uri, body)
		return x.String()
	case "fed_destination_mismatch_signed_only":
		x, _ := signing.SignRequest(id, rec.Request.Method, "other.test", uri, body)
		x.Destination = dest
		return x.String()
	case "fed_unknown_origin":
		other := &signing.Identity{ServerName: "unknown.invalid", Keys: id.Keys}
		x, _ := signing.SignRequest(other, rec.Request.Method, dest, uri, body)
		return x.String()
	case "fed_bad_signature":
		x, _ := signing.SignRequest(id, rec.Request.Method, dest, uri, body)
		sig, _ := signing.DecodeBase64(x.Sig)
		sig[0] ^= 0x01
		x.Sig = signing.EncodeBase64(sig)
		return x.String()
	}
	x, err := signing.SignRequest(id, rec.Request.Method, dest, uri, body)
	if err != nil {
		t.Fatal(err)
	}
	return x.String()
}

var digits = regexp.MustCompile(`[0-9]+`)

// compareRecording holds one simulated answer against the recorded one.
func compareRecording(t *testing.T, rec *fixtures.Recording, got response, s *Server) {
	t.Helper()
	if got.status != rec.Response.Status {
		t.Fatalf("status %d, recorded %d; body %.400s", got.status, rec.Response.Status, got.body)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var want, have any
	if err := json.Unmarshal(rec.Response.Body, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got.body, &have); err != nil {
		t.Fatalf("answer is not JSON: %v: %.300s", err, got.body)
	}
	if ws, ok := want.(string); ok {
		if hs, ok := have.(string); !ok || hs != ws {
			t.Fatalf("body %s, recorded %s", got.body, rec.Response.Body)
		}
		return
	}
	if rec.Response.Status >= 300 {
		wm, _ := want.(map[string]any)
		hm, _ := have.(map[string]any)
		if wm["errcode"] != hm["errcode"] {
			t.Errorf("errcode %v, recorded %v", hm["errcode"], wm["errcode"])
		}
		norm := func(v any) string {
			str, _ := v.(string)
			str = strings.ReplaceAll(str, "a_cNMa", strings.TrimPrefix(s.w.SigningKey.KeyID, "ed25519:"))
			return digits.ReplaceAllString(str, "N")
		}
		if norm(wm["error"]) != norm(hm["error"]) {
			t.Errorf("error %q, recorded %q", hm["error"], wm["error"])
		}
	}
	sh := &shape{}
	sh.add(want, "")
	sh.check(rec.Name, "", have, func(f string, a ...any) { t.Errorf(f, a...) })
}

// TestComparatorCatchesQuirkChanges makes sure the shape comparison notices the quirks it guards.
func TestComparatorCatchesQuirkChanges(t *testing.T) {
	for _, c := range []struct{ fixture, path, replacement string }{
		{"admin_v2_users_limit2", "next_token", `2`},                // string token became an int
		{"admin_v1_rooms_limit2", "next_batch", `"2"`},              // int token became a string
		{"admin_v2_user_alice", "admin", `false`},                   // 0/1 ints became booleans
		{"admin_v2_user_alice", "creation_ts", `1795330502000`},     // seconds became ms
		{"fed_backfill_a_no_limit", "errcode", `"M_MISSING_PARAM"`}, // errcode appeared
		{"fed_backfill_a", "pdus.0.unsigned", `{"age_ts":1}`},       // age became age_ts
		{"fed_state_ids_a", "pdu_ids", `[]`},                        // emptied
		{"client_whoami_puppet", "device_id", `"ABC"`},              // puppet gained a device
		{"admin_v1_search_users", "0.password_hash", `{"x":1}`},     // type change in a bare list
		{"admin_v1_user_accountdata", "account_data.global", `[]`},  // map became a list
		{"client_sync_account_data_only", "device_one_time_keys_count", `[]`},
	} {
		rec := fixtures.Load(t, c.fixture)
		var want any
		_ = json.Unmarshal(rec.Response.Body, &want)
		mutated := rec.Response.Body
		if strings.HasPrefix(c.path, "0.") || gjson.GetBytes(mutated, c.path).Exists() || c.path == "errcode" || c.path == "device_id" {
			mutated = []byte(sjsonSet(t, mutated, c.path, c.replacement))
		}
		var have any
		_ = json.Unmarshal(mutated, &have)
		sh := &shape{}
		sh.add(want, "")
		n := 0
		sh.check(rec.Name, "", have, func(string, ...any) { n++ })
		if n == 0 {
			t.Errorf("%s: changing %s to %s went unnoticed", c.fixture, c.path, c.replacement)
		}
	}
}

func sjsonSet(t *testing.T, body []byte, path, raw string) string {
	t.Helper()
	out, err := sjson.SetRawBytes(body, path, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
