package synapseclient_test

// These tests run every method of the three clients against the simulated Synapse
// (internal/synapsesim) and compare the answers with the generated world it serves. The table in
// TestSimCoversEveryClientMethod names the test covering each method.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/jsontest"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

var (
	simWorldOnce sync.Once
	simWorld     *world.World
	simWorldErr  error
)

// sharedWorld is the small world the tests share (the simulator never changes it); a few early
// events are signed with a key rotated out since, so old-key signatures are verified too.
func sharedWorld(t testing.TB) *world.World {
	t.Helper()
	simWorldOnce.Do(func() {
		simWorld, simWorldErr = world.Generate(world.Options{Seed: 3, MessagesPerRoom: 15, OldKeyEvents: 5, V12Rooms: 1})
	})
	if simWorldErr != nil {
		t.Fatal(simWorldErr)
	}
	return simWorld
}

// clock is a hand-driven clock for the simulator's rate-limit windows.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// sleeps stands in for Config.Sleep: it records each wait instead of sleeping and, when clock is
// set, moves that clock on by the wait.
type sleeps struct {
	mu    sync.Mutex
	waits []time.Duration
	clock *clock
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.waits = append(s.waits, d)
	clk := s.clock
	s.mu.Unlock()
	if clk != nil {
		clk.Advance(d)
	}
	return nil
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// rig is a simulated Synapse and a client configured for it.
type rig struct {
	w      *world.World
	s      *synapsesim.Server
	c      *synapseclient.Client
	sleeps *sleeps
}

// Backoff settings of the rig's client; Jitter is the identity so waits are exact.
const (
	rigBaseBackoff = 100 * time.Millisecond
	rigAttempts    = 4
)

// startRig starts a simulated Synapse (over the shared world unless opts names one) and a client
// with a small page size, no real sleeping and exact backoffs; tweak may change the config.
func startRig(t *testing.T, opts synapsesim.Options, tweak func(*synapseclient.Config)) *rig {
	t.Helper()
	if opts.World == nil {
		opts.World = sharedWorld(t)
	}
	s := synapsesim.Start(t, opts)
	sl := &sleeps{}
	cfg := synapseclient.Config{
		BaseURL:     s.URL,
		AdminToken:  s.AdminToken(),
		ServerName:  opts.World.ServerName,
		Identity:    s.Identity(),
		PageSize:    3,
		MaxAttempts: rigAttempts,
		BaseBackoff: rigBaseBackoff,
		MaxBackoff:  time.Second,
		Timeout:     30 * time.Second,
		Sleep:       sl.sleep,
		Jitter:      func(d time.Duration) time.Duration { return d },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := synapseclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{w: opts.World, s: s, c: c, sleeps: sl}
}

func (r *rig) loginAs(t *testing.T, userID string) *synapseclient.UserClient {
	t.Helper()
	tok, err := r.c.Admin().LoginAsUser(t.Context(), userID, time.Time{})
	if err != nil {
		t.Fatalf("login as %s: %v", userID, err)
	}
	return r.c.User(tok)
}

// canon returns the canonical form of a JSON value, failing the test when it is not JSON.

func sameSet(a, b []string) bool { return slices.Equal(jsontest.Sorted(a), jsontest.Sorted(b)) }

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func ptrEq(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func show(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q", *p)
}

func isLocal(w *world.World, userID string) bool {
	_, server, _ := strings.Cut(userID, ":")
	return server == w.ServerName
}

// hiddenFromServer says whether history visibility hides ev from its own server (no local user
// joined, or for "invited" invited, in the state after the event), so federation serves it pruned.
func hiddenFromServer(w *world.World, room *world.Room, ev *world.Event) bool {
	switch room.HistoryVisibilityAt(ev.ID) {
	case "joined":
		return !room.LocalJoinedAt(ev.ID)
	case "invited":
		if room.LocalJoinedAt(ev.ID) {
			return false
		}
		st, _ := room.StateAfter(ev.ID)
		for k, id := range st.Map() {
			if k.Type == "m.room.member" && isLocal(w, k.StateKey) && room.Event(id).Membership == "invite" {
				return false
			}
		}
		return true
	}
	return false
}

// pduCore is a served PDU without what the server adds on top of the signed event: "unsigned"
// and, outside room versions 1 and 2, "event_id" (the admin raw formats add it). Canonical JSON.
func pduCore(raw []byte, roomVersion string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("PDU is not a JSON object: %w", err)
	}
	delete(m, "unsigned")
	if roomVersion != "1" && roomVersion != "2" {
		delete(m, "event_id")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return signing.CanonicalJSON(b)
}

// checkPDU is what a careful caller does with a PDU from Synapse, then compares it with the world:
// every signature must verify with the signer's key (old keys included), the sender's server
// must have signed, and the content hash must match unless the event is served pruned (redacted,
// or hidden from the server when filtered is set). The PDU's bytes must then be the world's
// event (pruned exactly where expected) and its parsed fields must agree.
func checkPDU(w *world.World, p synapseclient.PDU, filtered bool) (*world.Event, error) {
	room := w.Room(p.RoomID)
	if room == nil {
		return nil, fmt.Errorf("PDU of unknown room %q", p.RoomID)
	}
	core, err := pduCore(p.Raw, room.Version)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%t %s", filtered, core)
	if id, ok := checkedPDUs.Load(key); ok {
		ev := room.Event(id.(string))
		return ev, checkParsed(p, room, ev)
	}
	var signed struct {
		Signatures map[string]map[string]string `json:"signatures"`
		Hashes     struct {
			SHA256 string `json:"sha256"`
		} `json:"hashes"`
	}
	if err := json.Unmarshal(core, &signed); err != nil {
		return nil, err
	}
	_, senderServer, _ := strings.Cut(p.Sender, ":")
	if len(signed.Signatures[senderServer]) == 0 {
		return nil, fmt.Errorf("PDU is not signed by its sender's server %s", senderServer)
	}
	for server, keys := range signed.Signatures {
		for keyID := range keys {
			pub, _, ok := w.KeyFor(server, keyID)
			if !ok {
				return nil, fmt.Errorf("signature by unknown key %s of %s", keyID, server)
			}
			if err := signing.VerifyEventSignature(room.Version, server, signing.KeyID(keyID), pub, core); err != nil {
				return nil, fmt.Errorf("signature of %s with %s: %w", server, keyID, err)
			}
		}
	}
	id, err := signing.EventID(room.Version, core)
	if err != nil {
		return nil, err
	}
	ev := room.Event(id)
	if ev == nil {
		return nil, fmt.Errorf("event %s is not in room %s of the world", id, room.ID)
	}
	if p.EventID != "" && p.EventID != id {
		return nil, fmt.Errorf("event_id field %s, reference hash gives %s", p.EventID, id)
	}
	pruned := ev.Redacted || (filtered && hiddenFromServer(w, room, ev))
	if !pruned {
		hash, err := signing.ContentHash(core)
		if err != nil {
			return nil, err
		}
		if hash != signed.Hashes.SHA256 {
			return nil, fmt.Errorf("event %s: content hash mismatch: computed %s, event says %s", id, hash, signed.Hashes.SHA256)
		}
	}
	want := ev.JSON
	switch {
	case ev.Redacted:
		want = ev.RedactedJSON
	case pruned:
		if want, err = signing.RedactEvent(room.Version, ev.JSON); err != nil {
			return nil, err
		}
	}
	wantC, err := signing.CanonicalJSON(want)
	if err != nil {
		return nil, err
	}
	if string(core) != string(wantC) {
		return nil, fmt.Errorf("event %s (pruned=%t) differs from the world:\n got %s\nwant %s", id, pruned, core, wantC)
	}
	if err := checkParsed(p, room, ev); err != nil {
		return nil, err
	}
	checkedPDUs.Store(key, ev.ID)
	return ev, nil
}

// checkedPDUs remembers the PDUs checkPDU passed (keyed by filtering and canonical bytes), as the
// same bytes come back from several endpoints and checking them again would only cost time.
var checkedPDUs sync.Map

// checkParsed compares the fields the client parsed from a PDU with the world's event.
func checkParsed(p synapseclient.PDU, room *world.Room, ev *world.Event) error {
	sk := ""
	if p.StateKey != nil {
		sk = *p.StateKey
	}
	wantSK := ""
	if ev.StateKey != nil {
		wantSK = *ev.StateKey
	}
	if p.Type != ev.Type || p.Sender != ev.Sender || p.Depth != ev.Depth || p.OriginServerTS != ev.OriginServerTS ||
		(p.StateKey == nil) != (ev.StateKey == nil) || sk != wantSK ||
		!slices.Equal(p.PrevEvents, ev.PrevEvents) || !slices.Equal(p.AuthEvents, room.AuthEventIDs(ev)) || p.RoomID != ev.RoomID {
		return fmt.Errorf("event %s: parsed fields %+v differ from the world's", ev.ID, p)
	}
	return nil
}

// checkPDUs checks every PDU and returns their event IDs in order.
func checkPDUs(t *testing.T, w *world.World, what string, pdus []synapseclient.PDU, filtered bool) []string {
	t.Helper()
	ids := make([]string, 0, len(pdus))
	for i, p := range pdus {
		ev, err := checkPDU(w, p, filtered)
		if err != nil {
			t.Fatalf("%s: PDU %d: %v", what, i, err)
		}
		ids = append(ids, ev.ID)
	}
	return ids
}

// joinedRoomsOf returns the world's rooms some local user is still joined to, and the others.
func roomsByHost(w *world.World) (joined, left []*world.Room) {
	for _, r := range w.Rooms {
		if r.LocalJoinedNow() {
			joined = append(joined, r)
		} else {
			left = append(left, r)
		}
	}
	return joined, left
}

func roomOfKind(t *testing.T, w *world.World, kind string) *world.Room {
	t.Helper()
	rs := w.RoomsOfKind(kind)
	if len(rs) == 0 {
		t.Fatalf("world has no %s room", kind)
	}
	return rs[0]
}

// TestSimCoversEveryClientMethod is the table of exported client methods and the tests below
// that call them against the simulator; a new method fails it until it gets a test.
func TestSimCoversEveryClientMethod(t *testing.T) {
	covered := map[string]string{
		"Client.Admin":       "every test",
		"Client.Federation":  "TestSimFederationReads",
		"Client.User":        "TestSimUserAPI",
		"Client.AdminAsUser": "TestSimUserAPI",

		"AdminClient.ServerVersion":      "TestSimVersionGating",
		"AdminClient.Version":            "TestSimVersionGating",
		"AdminClient.AdminUserID":        "TestSimLoginAsUser",
		"AdminClient.ListUsers":          "TestSimUsersPaginated",
		"AdminClient.AllUsers":           "TestSimUsersPaginated, TestSimLockedUsersListed",
		"AdminClient.User":               "TestSimUserDetails, TestSimLockedUsersListed",
		"AdminClient.LoginAsUser":        "TestSimLoginAsUser",
		"AdminClient.SearchUsers":        "TestSimSearchUsersPasswordHashes",
		"AdminClient.AccountData":        "TestSimAdminPerUserData",
		"AdminClient.Devices":            "TestSimAdminPerUserData",
		"AdminClient.Pushers":            "TestSimAdminPerUserData",
		"AdminClient.JoinedRooms":        "TestSimAdminPerUserData",
		"AdminClient.ListRooms":          "TestSimRoomsPaginated",
		"AdminClient.AllRooms":           "TestSimRoomsPaginated",
		"AdminClient.Room":               "TestSimRoomDetails",
		"AdminClient.RoomState":          "TestSimRoomDetails",
		"AdminClient.RoomMembers":        "TestSimRoomDetails",
		"AdminClient.ForwardExtremities": "TestSimRoomDetails",
		"AdminClient.RoomMessages":       "TestSimVersionGating, TestSimRoomMessagesAndFetchEventOnNewSynapse",
		"AdminClient.FetchEvent":         "TestSimVersionGating, TestSimRoomMessagesAndFetchEventOnNewSynapse",

		"UserClient.WhoAmI":          "TestSimUserAPI, TestSimLoginAsUser",
		"UserClient.Profile":         "TestSimUserAPI",
		"UserClient.SyncAccountData": "TestSimUserAPI",
		"UserClient.Devices":         "TestSimUserAPI",
		"UserClient.Pushers":         "TestSimUserAPI",
		"UserClient.PushRules":       "TestSimUserAPI, TestSimTruncatedBodyRetried",
		"UserClient.RoomTags":        "TestSimUserAPI, TestSimLoginAsUser",
		"UserClient.ThreePIDs":       "TestSimUserAPI",
		"UserClient.QueryKeys":       "TestSimUserAPI",
		"UserClient.RoomKeysVersion": "TestSimUserAPI",
		"UserClient.RoomKeys":        "TestSimUserAPI",
		"UserClient.RoomAliases":     "TestSimRoomAliasesAndLogout",
		"UserClient.Logout":          "TestSimRoomAliasesAndLogout",

		"FederationClient.Backfill":         "TestSimFederationReads, TestSimRetryAfter429, TestSimTamperedBodyDetected, TestSimCancelInFlight, TestSimPDUBytesAsSent",
		"FederationClient.Event":            "TestSimFederationReads, TestSimDroppedConnectionsRetried",
		"FederationClient.GetMissingEvents": "TestSimFederationReads",
		"FederationClient.StateIDs":         "TestSimFederationReads, TestSimGiveUpNamesEndpoint, TestSim500sThenSuccess",
		"FederationClient.State":            "TestSimFederationReads",
		"FederationClient.EventAuth":        "TestSimFederationReads",
		"FederationClient.MakeJoin":         "TestSimFederationReads",
		"FederationClient.ServerKeys":       "TestSimServerKeysAndVersion",
		"FederationClient.QueryServerKeys":  "TestSimQueryServerKeys",
		"FederationClient.Version":          "TestSimServerKeysAndVersion, TestSimVersionGating",
		"FederationClient.QueryProfile":     "TestSimQueryProfileAndMediaTotals",
		"AdminClient.UserMediaStatistics":   "TestSimQueryProfileAndMediaTotals",
		"AdminClient.LocalMediaTotals":      "TestSimQueryProfileAndMediaTotals",
		"AdminClient.UserMedia":             "TestSimUserMedia",
		"AdminClient.AllUserMedia":          "TestSimUserMedia",
		"AdminClient.ProbeLoginAs":          "TestSimProbeLoginAsAndAuthIssuer",
		"AdminClient.AuthIssuer":            "TestSimProbeLoginAsAndAuthIssuer",
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[*synapseclient.Client](), reflect.TypeFor[*synapseclient.AdminClient](),
		reflect.TypeFor[*synapseclient.UserClient](), reflect.TypeFor[*synapseclient.FederationClient](),
	} {
		for i := range typ.NumMethod() {
			name := typ.Elem().Name() + "." + typ.Method(i).Name
			if covered[name] == "" {
				t.Errorf("%s has no simulator test in the table", name)
			}
			delete(covered, name)
		}
	}
	for name := range covered {
		t.Errorf("table names %s, which is not an exported method", name)
	}
}

// TestSimUsersPaginated pages through every local user, deactivated ones included, three per page.
func TestSimUsersPaginated(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	users, err := r.c.Admin().AllUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pages := r.s.Count("admin.users")
	if want := (len(r.w.Users) + 2) / 3; pages != want || pages < 3 {
		t.Fatalf("AllUsers made %d requests for %d users, want %d pages of 3 (at least 3)", pages, len(r.w.Users), want)
	}
	wantIDs := make([]string, 0, len(r.w.Users))
	for _, u := range r.w.Users {
		wantIDs = append(wantIDs, u.ID)
	}
	var got []string
	deactivated := 0
	for _, s := range users {
		got = append(got, s.Name)
		u := r.w.User(s.Name)
		if u == nil {
			t.Fatalf("listed user %s is not in the world", s.Name)
		}
		if bool(s.Admin) != u.Admin || bool(s.Deactivated) != u.Deactivated || !ptrEq(s.UserType, strOrNil(u.UserType)) ||
			!ptrEq(s.DisplayName, strOrNil(u.Profile.DisplayName)) || !ptrEq(s.AvatarURL, strOrNil(u.Profile.AvatarURL)) ||
			s.CreationTS != u.CreationTS || bool(s.Locked) {
			t.Errorf("%s: listed as %+v (type %s, name %s), world has %+v", s.Name, s, show(s.UserType), show(s.DisplayName), u.Profile)
		}
		if s.Deactivated {
			deactivated++
		}
	}
	if !slices.Equal(got, jsontest.Sorted(wantIDs)) {
		t.Fatalf("users %v, want %v", got, jsontest.Sorted(wantIDs))
	}
	if deactivated == 0 {
		t.Fatal("no deactivated user listed")
	}

	first, err := r.c.Admin().ListUsers(ctx, synapseclient.ListUsersOptions{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Users) != 4 || first.NextToken != "4" || first.Total != len(r.w.Users) {
		t.Fatalf("first page: %d users, next_token %q, total %d", len(first.Users), first.NextToken, first.Total)
	}
	last, err := r.c.Admin().ListUsers(ctx, synapseclient.ListUsersOptions{From: "8", Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(last.Users) != len(r.w.Users)-8 || last.NextToken != "" {
		t.Fatalf("last page: %d users, next_token %q", len(last.Users), last.NextToken)
	}
	named, err := r.c.Admin().ListUsers(ctx, synapseclient.ListUsersOptions{Name: "Departed"})
	if err != nil {
		t.Fatal(err)
	}
	if len(named.Users) != 1 || !named.Users[0].Deactivated {
		t.Fatalf("name filter: %+v", named.Users)
	}
}

// TestSimLockedUsersListed checks that a locked account (Synapse >= 1.93 hides it unless asked)
// is listed, and flagged, by the client.
func TestSimLockedUsersListed(t *testing.T) {
	t.Parallel()
	w, err := world.Generate(world.Options{Seed: 5, Rooms: -1, MessagesPerRoom: 2})
	if err != nil {
		t.Fatal(err)
	}
	carol := w.User("@carol:" + w.ServerName)
	carol.Locked = true
	r := startRig(t, synapsesim.Options{World: w, Version: "1.93.0"}, nil)
	ctx := t.Context()

	// The simulator leaves carol out of a list that does not ask for locked users.
	resp := adminGET(t, r, "/_synapse/admin/v2/users?deactivated=true&limit=100")
	if strings.Contains(resp, carol.ID) {
		t.Fatalf("a list without locked=true shows the locked user: %s", resp)
	}

	users, err := r.c.Admin().AllUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != len(w.Users) {
		t.Fatalf("%d users listed, world has %d", len(users), len(w.Users))
	}
	locked := 0
	for _, u := range users {
		if bool(u.Locked) != (u.Name == carol.ID) {
			t.Errorf("%s listed with locked=%t", u.Name, u.Locked)
		}
		if u.Locked {
			locked++
		}
	}
	if locked != 1 {
		t.Fatalf("%d locked users listed, want 1", locked)
	}
	d, err := r.c.Admin().User(ctx, carol.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Locked {
		t.Fatalf("query user: carol not locked: %s", d.Raw)
	}
}

// adminGET sends a raw admin request (outside the client) and returns the body.
func adminGET(t *testing.T, r *rig, uri string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", r.s.URL+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.s.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", uri, resp.StatusCode, b)
	}
	return string(b)
}

// TestSimUserDetails queries every local account and checks typed errors for unknown and remote users.
func TestSimUserDetails(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	for _, u := range r.w.Users {
		d, err := r.c.Admin().User(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		var tps []synapseclient.ThreePID
		for _, tp := range u.Threepids {
			tps = append(tps, synapseclient.ThreePID(tp))
		}
		var ext []synapseclient.ExternalID
		for _, e := range u.ExternalIDs {
			ext = append(ext, synapseclient.ExternalID(e))
		}
		if d.Name != u.ID || bool(d.Admin) != u.Admin || bool(d.Deactivated) != u.Deactivated || d.CreationTS != u.CreationTS/1000 ||
			!ptrEq(d.DisplayName, strOrNil(u.Profile.DisplayName)) || !ptrEq(d.AvatarURL, strOrNil(u.Profile.AvatarURL)) ||
			!ptrEq(d.UserType, strOrNil(u.UserType)) || !slices.Equal(d.ThreePIDs, tps) || !slices.Equal(d.ExternalIDs, ext) {
			t.Errorf("%s: got %s", u.ID, d.Raw)
		}
		if len(d.Raw) == 0 || d.PasswordHash != "" {
			t.Errorf("%s: raw %d bytes, password hash %t (1.67 has none here)", u.ID, len(d.Raw), d.PasswordHash != "")
		}
	}
	_, err := r.c.Admin().User(ctx, "@nobody:"+r.w.ServerName)
	var e *synapseclient.Error
	if !errors.Is(err, synapseclient.ErrNotFound) || !errors.As(err, &e) || e.Endpoint != "GET /_synapse/admin/v2/users/{userId}" {
		t.Fatalf("unknown user: %v", err)
	}
	_, err = r.c.Admin().User(ctx, r.w.RemoteUsers[0])
	if !errors.As(err, &e) || e.Status != 400 {
		t.Fatalf("remote user: %v", err)
	}
}

// TestSimLoginAsUser checks puppet tokens: bound to their user, without a device, and never
// asked for the admin itself (refused locally; Synapse's own 400 is typed the same).
func TestSimLoginAsUser(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	w := r.w
	alice, bob := w.User("@alice:"+w.ServerName), w.User("@bob:"+w.ServerName)
	admin := w.Users[0]

	tok, err := r.c.Admin().LoginAsUser(ctx, alice.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	who, err := r.c.User(tok).WhoAmI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if who.UserID != alice.ID || who.DeviceID != "" {
		t.Fatalf("puppet token belongs to %+v, want %s without a device", who, alice.ID)
	}
	// The token acts as alice only: bob's tags are refused.
	bobRoom := jsontest.Sorted(slices.Collect(maps.Keys(bob.Tags)))
	if len(bobRoom) == 0 {
		t.Fatal("bob has no tags in the world")
	}
	if _, err := r.c.User(tok).RoomTags(ctx, bob.ID, bobRoom[0]); !errors.Is(err, synapseclient.ErrForbidden) {
		t.Fatalf("alice's token reading bob's tags: %v", err)
	}
	if _, err := r.c.Admin().LoginAsUser(ctx, bob.ID, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("login as with an expiry: %v", err)
	}
	if n := r.s.Count("client.whoami"); n != 2 {
		t.Fatalf("%d whoami requests, want 2 (the admin's ID once, then alice's token)", n)
	}
	self, err := r.c.Admin().AdminUserID(ctx)
	if err != nil || self != admin.ID {
		t.Fatalf("AdminUserID = %q, %v", self, err)
	}

	before := r.s.Count("admin.login")
	_, err = r.c.Admin().LoginAsUser(ctx, admin.ID, time.Time{})
	if !errors.Is(err, synapseclient.ErrLoginAsSelf) {
		t.Fatalf("login as self: %v", err)
	}
	if n := r.s.Count("admin.login"); n != before {
		t.Fatalf("login as self sent %d requests", n-before)
	}

	// A client told the wrong admin ID sends the request; Synapse's 400 is typed as login-as-self.
	wrong := startRig(t, synapsesim.Options{}, func(c *synapseclient.Config) { c.AdminUserID = alice.ID })
	_, err = wrong.c.Admin().LoginAsUser(ctx, admin.ID, time.Time{})
	var e *synapseclient.Error
	if !errors.Is(err, synapseclient.ErrLoginAsSelf) || !errors.As(err, &e) || e.Status != 400 {
		t.Fatalf("server refusal of login as self: %v", err)
	}
}

// TestSimSearchUsersPasswordHashes reads every local password hash through search_users.
func TestSimSearchUsersPasswordHashes(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	got, err := r.c.Admin().SearchUsers(ctx, ":")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(r.w.Users) {
		t.Fatalf("%d users, world has %d", len(got), len(r.w.Users))
	}
	withHash := 0
	for _, s := range got {
		u := r.w.User(s.Name)
		if u == nil || s.PasswordHash != u.PasswordHash || bool(s.Admin) != u.Admin || !ptrEq(s.UserType, strOrNil(u.UserType)) {
			t.Errorf("%s: wrong entry (hash matches: %t)", s.Name, u != nil && s.PasswordHash == u.PasswordHash)
		}
		if s.PasswordHash != "" {
			withHash++
			if strings.Contains(fmt.Sprint(s), s.PasswordHash) || strings.Contains(fmt.Sprintf("%#v", s), s.PasswordHash) {
				t.Errorf("%s: formatting shows the password hash", s.Name)
			}
		}
	}
	if withHash == 0 || withHash == len(got) {
		t.Fatalf("%d of %d users have a hash; the world has users with and without", withHash, len(got))
	}
	one, err := r.c.Admin().SearchUsers(ctx, "alice")
	if err != nil || len(one) != 1 {
		t.Fatalf("term alice: %v, %v", one, err)
	}
	before := r.s.Count("admin.search_users")
	if _, err := r.c.Admin().SearchUsers(ctx, ""); err == nil || r.s.Count("admin.search_users") != before {
		t.Fatalf("empty term: err %v, requests sent %d", err, r.s.Count("admin.search_users")-before)
	}
}

// TestSimAdminPerUserData compares account data, devices, pushers and joined rooms of every user.
func TestSimAdminPerUserData(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	a := r.c.Admin()
	for _, u := range r.w.Users {
		ad, err := a.AccountData(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if jsontest.Canonical(t, jsontest.Marshal(t, ad.Global)) != jsontest.Canonical(t, jsontest.Marshal(t, u.AccountData.Global)) ||
			jsontest.Canonical(t, jsontest.Marshal(t, ad.Rooms)) != jsontest.Canonical(t, jsontest.Marshal(t, u.AccountData.Rooms)) {
			t.Errorf("%s: account data differs", u.ID)
		}
		devs, err := a.Devices(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != len(u.Devices) {
			t.Fatalf("%s: %d devices, want %d", u.ID, len(devs), len(u.Devices))
		}
		for i, d := range devs {
			wd := u.Devices[i]
			if d.DeviceID != wd.ID || d.UserID != u.ID || !ptrEq(d.DisplayName, strOrNil(wd.DisplayName)) ||
				!ptrEq(d.LastSeenIP, &wd.LastSeenIP) || !ptrEq(d.LastSeenUserAgent, &wd.LastSeenUserAgent) ||
				d.LastSeenTS == nil || *d.LastSeenTS != wd.LastSeenTS {
				t.Errorf("%s: device %s: %s", u.ID, wd.ID, d.Raw)
			}
		}
		ps, err := a.Pushers(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != len(u.Pushers) {
			t.Fatalf("%s: %d pushers, want %d", u.ID, len(ps), len(u.Pushers))
		}
		for i, p := range ps {
			wp := u.Pushers[i]
			if p.Pushkey != wp.Pushkey || p.AppID != wp.AppID || p.Kind != wp.Kind || p.Lang != wp.Lang ||
				p.AppDisplayName != wp.AppDisplayName || p.DeviceDisplayName != wp.DeviceDisplayName || p.ProfileTag != wp.ProfileTag ||
				jsontest.Canonical(t, p.Data) != jsontest.Canonical(t, jsontest.Marshal(t, wp.Data)) {
				t.Errorf("%s: pusher %s", u.ID, p.Raw)
			}
		}
		rooms, err := a.JoinedRooms(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameSet(rooms, r.w.JoinedRooms(u.ID)) {
			t.Errorf("%s: joined rooms %v, want %v", u.ID, rooms, r.w.JoinedRooms(u.ID))
		}
	}
	pushers := 0
	for _, u := range r.w.Users {
		pushers += len(u.Pushers)
	}
	if pushers == 0 {
		t.Fatal("the world has no pushers to compare")
	}
}

// TestSimRoomsPaginated lists every room two per page, following next_batch.
func TestSimRoomsPaginated(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, func(c *synapseclient.Config) { c.PageSize = 2 })
	ctx := t.Context()
	rooms, err := r.c.Admin().AllRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pages := r.s.Count("admin.rooms")
	if want := (len(r.w.Rooms) + 1) / 2; pages != want || pages < 3 {
		t.Fatalf("AllRooms made %d requests for %d rooms, want %d (at least 3)", pages, len(r.w.Rooms), want)
	}
	var ids []string
	for _, s := range rooms {
		ids = append(ids, s.RoomID)
		room := r.w.Room(s.RoomID)
		if room == nil {
			t.Fatalf("listed room %s is not in the world", s.RoomID)
		}
		var wantName, wantJR, wantHV, wantAlias *string
		if room.LocalJoinedNow() {
			wantName, wantJR, wantHV, wantAlias = strOrNil(room.Name), strOrNil(room.JoinRule), strOrNil(room.HistoryVisibility), strOrNil(room.CanonicalAlias)
		}
		local := 0
		for _, m := range room.JoinedMembers() {
			if isLocal(r.w, m) {
				local++
			}
		}
		if s.Version != room.Version || s.JoinedMembers != len(room.JoinedMembers()) || s.JoinedLocalMembers != local ||
			!ptrEq(s.Name, wantName) || !ptrEq(s.JoinRules, wantJR) || !ptrEq(s.HistoryVisibility, wantHV) ||
			!ptrEq(s.CanonicalAlias, wantAlias) || bool(s.Public) != room.IsPublic ||
			(s.Encryption != nil) != (room.Encrypted && room.LocalJoinedNow()) || s.StateEvents != room.CurrentState().Len() {
			t.Errorf("room %s (%s): listed as %s", room.ID, room.Kind, s.Raw)
		}
	}
	wantIDs := make([]string, 0, len(r.w.Rooms))
	for _, room := range r.w.Rooms {
		wantIDs = append(wantIDs, room.ID)
	}
	if len(ids) != len(wantIDs) || !sameSet(ids, wantIDs) {
		t.Fatalf("rooms %v, want %v", ids, wantIDs)
	}

	first, err := r.c.Admin().ListRooms(ctx, synapseclient.ListRoomsOptions{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if first.NextBatch == nil || *first.NextBatch != 4 || first.TotalRooms != len(r.w.Rooms) || len(first.Rooms) != 4 {
		t.Fatalf("first page: next_batch %v, total %d, %d rooms", first.NextBatch, first.TotalRooms, len(first.Rooms))
	}
	last, err := r.c.Admin().ListRooms(ctx, synapseclient.ListRoomsOptions{From: 8, Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if last.NextBatch != nil || last.Offset != 8 || len(last.Rooms) != len(r.w.Rooms)-8 {
		t.Fatalf("last page: next_batch %v, offset %d, %d rooms", last.NextBatch, last.Offset, len(last.Rooms))
	}
}

// TestSimRoomDetails compares details, state, members and forward extremities of every room.
func TestSimRoomDetails(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	a := r.c.Admin()
	for _, room := range r.w.Rooms {
		d, err := a.Room(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		var wantTopic *string
		if room.LocalJoinedNow() {
			wantTopic = strOrNil(room.Topic)
		}
		if d.RoomID != room.ID || d.Version != room.Version || !ptrEq(d.Topic, wantTopic) || len(d.Raw) == 0 {
			t.Errorf("room %s: details %s, topic %s", room.ID, d.Raw, show(d.Topic))
		}
		state, err := a.RoomState(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, raw := range state {
			var ev struct {
				EventID  string  `json:"event_id"`
				Type     string  `json:"type"`
				StateKey *string `json:"state_key"`
			}
			if err := json.Unmarshal(raw, &ev); err != nil || ev.StateKey == nil {
				t.Fatalf("room %s: state event %s: %v", room.ID, raw, err)
			}
			got = append(got, ev.EventID)
		}
		var want []string
		if room.LocalJoinedNow() {
			want = room.CurrentState().EventIDs()
		}
		if len(got) != len(want) || !sameSet(got, want) {
			t.Errorf("room %s (%s): %d state events, want %d", room.ID, room.Kind, len(got), len(want))
		}
		members, err := a.RoomMembers(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameSet(members, room.JoinedMembers()) {
			t.Errorf("room %s: members %v, want %v", room.ID, members, room.JoinedMembers())
		}
		fx, err := a.ForwardExtremities(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		var fxIDs []string
		for _, f := range fx {
			fxIDs = append(fxIDs, f.EventID)
			if ev := room.Event(f.EventID); ev == nil || ev.Depth != f.Depth {
				t.Errorf("room %s: extremity %+v", room.ID, f)
			}
		}
		if len(fxIDs) == 0 || !sameSet(fxIDs, room.ForwardExtremities()) {
			t.Errorf("room %s: extremities %v, want %v", room.ID, fxIDs, room.ForwardExtremities())
		}
	}
	if _, err := a.Room(ctx, "!nowhere:"+r.w.ServerName); !errors.Is(err, synapseclient.ErrNotFound) {
		t.Fatalf("unknown room: %v", err)
	}
}

// TestSimVersionGating checks that a 1.67 server is never asked for endpoints it lacks, and how
// the version is found: admin server_version once, Config.ServerVersion without a request, or
// federation /version without an admin token.
func TestSimVersionGating(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	a := r.c.Admin()
	room := r.w.Rooms[0]
	info, err := a.ServerVersion(ctx)
	if err != nil || info.ServerVersion != "1.67.0" || info.PythonVersion == "" {
		t.Fatalf("server_version: %+v, %v", info, err)
	}
	_, err = a.RoomMessages(ctx, room.ID, synapseclient.MessagesOptions{Dir: "f"})
	var ue *synapseclient.UnsupportedError
	if !errors.Is(err, synapseclient.ErrUnsupported) || !errors.As(err, &ue) ||
		ue.Need != synapseclient.VersionAdminRoomMessages || ue.Have.String() != "1.67.0" ||
		!strings.Contains(err.Error(), "/_synapse/admin/v1/rooms/{roomId}/messages") {
		t.Fatalf("room messages on 1.67: %v", err)
	}
	_, err = a.FetchEvent(ctx, room.Latest().ID)
	if !errors.Is(err, synapseclient.ErrUnsupported) || !errors.As(err, &ue) || ue.Need != synapseclient.VersionFetchEvent {
		t.Fatalf("fetch_event on 1.67: %v", err)
	}
	v, err := a.Version(ctx)
	if err != nil || v.String() != "1.67.0" {
		t.Fatalf("Version = %v, %v", v, err)
	}
	stats := r.s.Stats()
	if stats["admin.room_messages"] != 0 || stats["admin.fetch_event"] != 0 || stats["unrecognized"] != 0 {
		t.Fatalf("gated endpoints were asked: %v", stats)
	}
	if stats["admin.server_version"] != 2 {
		t.Fatalf("%d server_version requests, want 2 (one by ServerVersion, one cached by Version)", stats["admin.server_version"])
	}

	pinned := startRig(t, synapsesim.Options{}, func(c *synapseclient.Config) { c.ServerVersion = "1.67.0" })
	if _, err := pinned.c.Admin().FetchEvent(ctx, room.Latest().ID); !errors.Is(err, synapseclient.ErrUnsupported) {
		t.Fatalf("pinned 1.67: %v", err)
	}
	if n := len(pinned.s.Stats()); n != 0 {
		t.Fatalf("a pinned version still sent requests: %v", pinned.s.Stats())
	}

	// 1.68 has the admin messages API but not fetch_event.
	mid := startRig(t, synapsesim.Options{Version: "1.68.0"}, nil)
	page, err := mid.c.Admin().RoomMessages(ctx, room.ID, synapseclient.MessagesOptions{Dir: "b", Limit: 3})
	if err != nil || len(page.Chunk) != 3 || page.Chunk[0].EventID != room.Latest().ID {
		t.Fatalf("room messages on 1.68: %v", err)
	}
	if _, err := mid.c.Admin().FetchEvent(ctx, room.Latest().ID); !errors.As(err, &ue) || ue.Have.String() != "1.68.0" ||
		mid.s.Count("admin.fetch_event") != 0 || mid.s.Count("unrecognized") != 0 {
		t.Fatalf("fetch_event on 1.68: %v", err)
	}

	noToken := startRig(t, synapsesim.Options{Version: "1.140.0"}, func(c *synapseclient.Config) { c.AdminToken = "" })
	v, err = noToken.c.Admin().Version(ctx)
	if err != nil || v.String() != "1.140.0" || noToken.s.Count("fed.version") != 1 {
		t.Fatalf("version via federation: %v, %v, %v", v, err, noToken.s.Stats())
	}
	if _, err := noToken.c.Admin().AllUsers(ctx); !errors.Is(err, synapseclient.ErrNotConfigured) {
		t.Fatalf("admin call without a token: %v", err)
	}
}

// TestSimRoomMessagesAndFetchEventOnNewSynapse pages every room through the admin messages API
// and fetches events one by one on a server new enough for both; nothing is filtered there.
func TestSimRoomMessagesAndFetchEventOnNewSynapse(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{Version: "1.140.0"}, nil)
	ctx := t.Context()
	a := r.c.Admin()
	const limit = 7
	for _, room := range r.w.Rooms {
		var ids []string
		opts := synapseclient.MessagesOptions{Dir: "f", Limit: limit}
		pages := 0
		for {
			page, err := a.RoomMessages(ctx, room.ID, opts)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, p := range page.Chunk {
				if p.EventID == "" {
					t.Fatalf("room %s: admin raw event without event_id", room.ID)
				}
			}
			ids = append(ids, checkPDUs(t, r.w, "messages of "+room.ID, page.Chunk, false)...)
			if page.End == "" || pages > len(room.Events) {
				break
			}
			opts.From = page.End
		}
		var want []string
		for _, ev := range room.Events {
			want = append(want, ev.ID)
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("room %s: paged %d events, want the room's %d in order", room.ID, len(ids), len(want))
		}
		if wantPages := (len(room.Events) + limit - 1) / limit; pages != wantPages {
			t.Fatalf("room %s: %d pages, want %d", room.ID, pages, wantPages)
		}
		for _, ev := range []*world.Event{room.Create(), room.Latest()} {
			p, err := a.FetchEvent(ctx, ev.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := checkPDUs(t, r.w, "fetch_event", []synapseclient.PDU{*p}, false); got[0] != ev.ID {
				t.Fatalf("fetch_event %s returned %s", ev.ID, got[0])
			}
		}
	}
	// Backwards from the end, the same events come newest first.
	v1 := roomOfKind(t, r.w, world.KindV1)
	var back []string
	opts := synapseclient.MessagesOptions{Dir: "b", Limit: limit}
	for range len(v1.Events) {
		page, err := a.RoomMessages(ctx, v1.ID, opts)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, checkPDUs(t, r.w, "messages backwards", page.Chunk, false)...)
		if page.End == "" {
			break
		}
		opts.From = page.End
	}
	want := eventIDs(v1.Events)
	slices.Reverse(want)
	if !slices.Equal(back, want) {
		t.Fatalf("backwards: %d events, want the room's %d newest first", len(back), len(want))
	}

	redacted := 0
	for _, room := range r.w.Rooms {
		for _, ev := range room.Events {
			if !ev.Redacted {
				continue
			}
			redacted++
			p, err := a.FetchEvent(ctx, ev.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkPDUs(t, r.w, "fetch_event of a redacted event", []synapseclient.PDU{*p}, false)
		}
	}
	if redacted == 0 {
		t.Fatal("the world has no redacted event")
	}
	if _, err := a.FetchEvent(ctx, "$nope"); !errors.Is(err, synapseclient.ErrNotFound) {
		t.Fatalf("unknown event: %v", err)
	}
}

// TestSimUserAPI reads every user's client-API data with a login-as token (the admin's with the
// admin token) and compares it with the world.
func TestSimUserAPI(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	w := r.w
	alice := w.User("@alice:" + w.ServerName)
	var checked, backups, tagged int
	for _, u := range w.Users {
		uc := r.c.AdminAsUser()
		if !u.Admin {
			uc = r.loginAs(t, u.ID)
		}
		who, err := uc.WhoAmI(ctx)
		if err != nil || who.UserID != u.ID {
			t.Fatalf("%s: whoami %+v, %v", u.ID, who, err)
		}
		prof, err := uc.Profile(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !ptrEq(prof.DisplayName, strOrNil(u.Profile.DisplayName)) || !ptrEq(prof.AvatarURL, strOrNil(u.Profile.AvatarURL)) {
			t.Errorf("%s: profile %s", u.ID, prof.Raw)
		}

		sync, err := uc.SyncAccountData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantGlobal := map[string]string{"m.push_rules": jsontest.Canonical(t, u.PushRules)}
		for typ, c := range u.AccountData.Global {
			wantGlobal[typ] = jsontest.Canonical(t, c)
		}
		gotGlobal := map[string]string{}
		for _, e := range sync.Global {
			gotGlobal[e.Type] = jsontest.Canonical(t, e.Content)
		}
		if !maps.Equal(gotGlobal, wantGlobal) || sync.NextBatch == "" {
			t.Errorf("%s: sync global account data %v, want %v", u.ID, slices.Sorted(maps.Keys(gotGlobal)), slices.Sorted(maps.Keys(wantGlobal)))
		}
		wantRooms := map[string]map[string]string{}
		for _, rid := range w.JoinedRooms(u.ID) {
			m := map[string]string{}
			for typ, c := range u.AccountData.Rooms[rid] {
				m[typ] = jsontest.Canonical(t, c)
			}
			if tags := u.Tags[rid]; len(tags) > 0 {
				m["m.tag"] = jsontest.Canonical(t, jsontest.Marshal(t, map[string]any{"tags": tags}))
			}
			if len(m) > 0 {
				wantRooms[rid] = m
			}
		}
		gotRooms := map[string]map[string]string{}
		for rid, evs := range sync.Rooms {
			m := map[string]string{}
			for _, e := range evs {
				m[e.Type] = jsontest.Canonical(t, e.Content)
			}
			gotRooms[rid] = m
		}
		if !maps.EqualFunc(gotRooms, wantRooms, maps.Equal) {
			t.Errorf("%s: sync room account data %v, want %v", u.ID, gotRooms, wantRooms)
		}

		devs, err := uc.Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var devIDs, wantDevIDs []string
		for _, d := range devs {
			devIDs = append(devIDs, d.DeviceID)
			if d.UserID != u.ID || d.LastSeenUserAgent != nil {
				t.Errorf("%s: client device %s", u.ID, d.Raw)
			}
		}
		for _, d := range u.Devices {
			wantDevIDs = append(wantDevIDs, d.ID)
		}
		if !slices.Equal(devIDs, wantDevIDs) {
			t.Errorf("%s: devices %v, want %v", u.ID, devIDs, wantDevIDs)
		}
		ps, err := uc.Pushers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != len(u.Pushers) || (len(ps) > 0 && ps[0].Pushkey != u.Pushers[0].Pushkey) {
			t.Errorf("%s: %d pushers, want %d", u.ID, len(ps), len(u.Pushers))
		}
		rules, err := uc.PushRules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if jsontest.Canonical(t, rules) != jsontest.Canonical(t, u.PushRules) {
			t.Errorf("%s: push rules differ", u.ID)
		}
		for rid, want := range u.Tags {
			tags, err := uc.RoomTags(ctx, u.ID, rid)
			if err != nil {
				t.Fatal(err)
			}
			if jsontest.Canonical(t, jsontest.Marshal(t, tags)) != jsontest.Canonical(t, jsontest.Marshal(t, want)) {
				t.Errorf("%s: tags of %s: %v", u.ID, rid, tags)
			}
			tagged++
		}
		tps, err := uc.ThreePIDs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wantTPs []synapseclient.ThreePID
		for _, tp := range u.Threepids {
			wantTPs = append(wantTPs, synapseclient.ThreePID(tp))
		}
		if !slices.Equal(tps, wantTPs) && (len(tps) != 0 || len(wantTPs) != 0) {
			t.Errorf("%s: threepids %v, want %v", u.ID, tps, wantTPs)
		}

		keys, err := uc.QueryKeys(ctx, u.ID, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkKeys(t, u, keys, true)
		if u != alice {
			checkKeys(t, alice, keys, false)
		}

		bv, err := uc.RoomKeysVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kb := u.KeyBackup
		if (bv == nil) != (kb == nil) {
			t.Fatalf("%s: backup version %v, world backup %v", u.ID, bv, kb)
		}
		if kb != nil {
			backups++
			if bv.Version != kb.Version || bv.Algorithm != kb.Algorithm || bv.ETag != kb.ETag || bv.Count != int64(kb.Count()) ||
				jsontest.Canonical(t, bv.AuthData) != jsontest.Canonical(t, kb.AuthData) {
				t.Errorf("%s: backup version %s", u.ID, bv.Raw)
			}
			rk, err := uc.RoomKeys(ctx, bv.Version)
			if err != nil {
				t.Fatal(err)
			}
			if jsontest.Canonical(t, jsontest.Marshal(t, rk.Rooms)) != jsontest.Canonical(t, jsontest.Marshal(t, kb.Rooms)) {
				t.Errorf("%s: backed-up sessions differ", u.ID)
			}
			if _, err := uc.RoomKeys(ctx, "999"); !errors.Is(err, synapseclient.ErrNotFound) {
				t.Errorf("%s: keys of an unknown backup version: %v", u.ID, err)
			}
		}
		checked++
	}
	if checked != len(w.Users) || backups == 0 || tagged == 0 {
		t.Fatalf("checked %d users, %d backups, %d tagged rooms", checked, backups, tagged)
	}
	if _, err := r.c.User("syt_bm9ib2R5_notatoken_000000").WhoAmI(ctx); !errors.Is(err, synapseclient.ErrUnauthorized) {
		t.Fatalf("unknown token: %v", err)
	}
}

// checkKeys compares u's keys in a /keys/query answer with the world: every device that
// uploaded keys, its own signature valid, and the cross-signing keys (user-signing only for self).
func checkKeys(t *testing.T, u *world.User, q *synapseclient.KeysQuery, self bool) {
	t.Helper()
	got := q.DeviceKeys[u.ID]
	n := 0
	for _, d := range u.Devices {
		if d.Keys == nil {
			continue
		}
		n++
		raw, ok := got[d.ID]
		if !ok {
			t.Errorf("%s: device %s missing from keys/query", u.ID, d.ID)
			continue
		}
		core, err := pduCore(raw, "10")
		if err != nil {
			t.Fatal(err)
		}
		if string(core) != jsontest.Canonical(t, d.Keys) {
			t.Errorf("%s: device %s keys differ", u.ID, d.ID)
		}
		if err := signing.VerifyJSON(u.ID, signing.KeyID("ed25519:"+d.ID), d.Ed25519.Public().(ed25519.PublicKey), raw); err != nil {
			t.Errorf("%s: device %s self-signature: %v", u.ID, d.ID, err)
		}
	}
	if len(got) != n {
		t.Errorf("%s: %d devices in keys/query, %d uploaded keys", u.ID, len(got), n)
	}
	cs := u.CrossSigning
	_, hasMaster := q.MasterKeys[u.ID]
	_, hasUserSigning := q.UserSigningKeys[u.ID]
	if hasMaster != (cs != nil) || hasUserSigning != (cs != nil && self) {
		t.Errorf("%s: master key %t, user-signing key %t; cross-signing %t, self %t", u.ID, hasMaster, hasUserSigning, cs != nil, self)
	}
	if cs != nil && (jsontest.Canonical(t, q.MasterKeys[u.ID]) != jsontest.Canonical(t, cs.Master) || jsontest.Canonical(t, q.SelfSigningKeys[u.ID]) != jsontest.Canonical(t, cs.SelfSigning)) {
		t.Errorf("%s: cross-signing keys differ", u.ID)
	}
}

// TestSimServerKeysAndVersion checks the key document (self-signed, current and old keys) and
// the federation version.
func TestSimServerKeysAndVersion(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	f := r.c.Federation()
	keys, err := f.ServerKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur := r.w.SigningKey
	if keys.ServerName != r.w.ServerName || keys.VerifyKeys[signing.KeyID(cur.KeyID)].Key != cur.PublicBase64() {
		t.Fatalf("key document %s", keys.Raw)
	}
	if err := signing.VerifyJSON(r.w.ServerName, signing.KeyID(cur.KeyID), cur.Public, keys.Raw); err != nil {
		t.Fatalf("key document self-signature: %v", err)
	}
	if len(r.w.OldKeys) == 0 {
		t.Fatal("the world has no old key")
	}
	for _, old := range r.w.OldKeys {
		if keys.OldVerifyKeys[signing.KeyID(old.KeyID)].Key != old.PublicBase64() {
			t.Fatalf("old key %s missing: %s", old.KeyID, keys.Raw)
		}
	}
	v, err := f.Version(ctx)
	if err != nil || v.Server.Name != "Synapse" || v.Server.Version != "1.67.0" {
		t.Fatalf("version %+v, %v", v, err)
	}
}

// TestSimFederationReads runs every federation read over every room as the server itself and
// checks each PDU's bytes and signatures against the world.
func TestSimFederationReads(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	f := r.c.Federation()
	joined, left := roomsByHost(r.w)
	if len(left) == 0 || len(joined) < 5 {
		t.Fatalf("world has %d joined and %d left rooms", len(joined), len(left))
	}
	pruned := 0
	for _, room := range joined {
		what := fmt.Sprintf("room %s (v%s, %s)", room.ID, room.Version, room.Kind)
		ext := room.ForwardExtremities()
		tx, err := f.Backfill(ctx, room.ID, ext, 500)
		if err != nil {
			t.Fatal(err)
		}
		ids := checkPDUs(t, r.w, what+" backfill", tx.PDUs, true)
		if tx.Origin != r.w.ServerName || len(ids) != min(100, len(room.Events)) {
			t.Fatalf("%s: backfill of %d events from %s, want %d", what, len(ids), tx.Origin, min(100, len(room.Events)))
		}
		if len(room.Events) <= 100 && !sameSet(ids, eventIDs(room.Events)) {
			t.Fatalf("%s: backfill is not the whole room", what)
		}
		for i := 1; i < len(tx.PDUs); i++ {
			if tx.PDUs[i].Depth > tx.PDUs[i-1].Depth {
				t.Fatalf("%s: backfill not newest first at %d", what, i)
			}
		}
		// A second page, seeded by the oldest event's prev_events, continues where the first stopped.
		small, err := f.Backfill(ctx, room.ID, ext, 5)
		if err != nil {
			t.Fatal(err)
		}
		oldest := small.PDUs[len(small.PDUs)-1]
		next, err := f.Backfill(ctx, room.ID, oldest.PrevEvents, 5)
		if err != nil {
			t.Fatal(err)
		}
		two := append(checkPDUs(t, r.w, what+" backfill page 1", small.PDUs, true), checkPDUs(t, r.w, what+" backfill page 2", next.PDUs, true)...)
		if !slices.Equal(two, ids[:len(two)]) {
			t.Fatalf("%s: two backfill pages %v are not the first %d of the whole backfill", what, two, len(two))
		}

		// /event for every event where visibility matters, and the ends and redactions elsewhere
		// (backfill above already brought every event of the room).
		for _, ev := range room.Events {
			if room.Kind != world.KindJoinedVisibility && ev != room.Create() && ev != room.Latest() && !ev.Redacted && ev.Redacts == "" {
				continue
			}
			tx, err := f.Event(ctx, ev.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := checkPDUs(t, r.w, what+" event", tx.PDUs, true); got[0] != ev.ID {
				t.Fatalf("%s: /event/%s returned %s", what, ev.ID, got[0])
			}
			if !ev.Redacted && hiddenFromServer(r.w, room, ev) {
				pruned++
			}
		}

		latest := room.Latest()
		missing, err := f.GetMissingEvents(ctx, room.ID, synapseclient.MissingEventsRequest{
			EarliestEvents: []string{room.Create().ID}, LatestEvents: []string{latest.ID}, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		mids := checkPDUs(t, r.w, what+" get_missing_events", missing, true)
		if len(mids) != min(20, len(room.Events)-2) || slices.Contains(mids, latest.ID) || slices.Contains(mids, room.Create().ID) {
			t.Fatalf("%s: get_missing_events gave %d events (latest included %t), want %d", what, len(mids), slices.Contains(mids, latest.ID), min(20, len(room.Events)-2))
		}
		for i := 1; i < len(missing); i++ {
			if missing[i].Depth < missing[i-1].Depth {
				t.Fatalf("%s: get_missing_events not oldest first", what)
			}
		}

		before, _ := room.StateBefore(latest.ID)
		wantState := before.EventIDs()
		wantChain := room.AuthChain(wantState, false)
		sids, err := f.StateIDs(ctx, room.ID, latest.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameSet(sids.PDUIDs, wantState) || !sameSet(sids.AuthChainIDs, wantChain) {
			t.Fatalf("%s: state_ids %d/%d, want %d/%d", what, len(sids.PDUIDs), len(sids.AuthChainIDs), len(wantState), len(wantChain))
		}
		st, err := f.State(ctx, room.ID, latest.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameSet(checkPDUs(t, r.w, what+" state", st.PDUs, false), wantState) ||
			!sameSet(checkPDUs(t, r.w, what+" state auth chain", st.AuthChain, false), wantChain) {
			t.Fatalf("%s: /state differs from the world's state before the latest event", what)
		}
		auth, err := f.EventAuth(ctx, room.ID, latest.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameSet(checkPDUs(t, r.w, what+" event_auth", auth, true), room.AuthChain(room.AuthEventIDs(latest), true)) {
			t.Fatalf("%s: event_auth differs from the auth chain", what)
		}

		joiner := "@newcomer:" + r.w.ServerName
		mj, err := f.MakeJoin(ctx, room.ID, joiner, []string{"1", "6", "10", "11", "12"})
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := synapseclient.ParsePDU(mj.Event)
		if err != nil {
			t.Fatal(err)
		}
		if mj.RoomVersion != room.Version || tmpl.Type != "m.room.member" || tmpl.StateKey == nil || *tmpl.StateKey != joiner ||
			tmpl.RoomID != room.ID || !sameSet(tmpl.PrevEvents, ext) || len(tmpl.AuthEvents) < 3 {
			t.Fatalf("%s: make_join %s", what, mj.Event)
		}
		_, err = f.MakeJoin(ctx, room.ID, joiner, []string{"9"})
		var e *synapseclient.Error
		if !errors.As(err, &e) || e.Status != 400 || e.ErrCode != "M_INCOMPATIBLE_ROOM_VERSION" {
			t.Fatalf("%s: make_join with an unsupported version: %v", what, err)
		}
	}
	if pruned == 0 {
		t.Fatal("no event was hidden from the server; the joined-visibility room should have some")
	}

	for _, room := range left {
		ev := room.Latest()
		errs := map[string]error{}
		_, errs["backfill"] = f.Backfill(ctx, room.ID, []string{ev.ID}, 10)
		_, errs["event"] = f.Event(ctx, ev.ID)
		_, errs["get_missing_events"] = f.GetMissingEvents(ctx, room.ID, synapseclient.MissingEventsRequest{LatestEvents: []string{ev.ID}})
		_, errs["state_ids"] = f.StateIDs(ctx, room.ID, ev.ID)
		_, errs["state"] = f.State(ctx, room.ID, ev.ID)
		_, errs["event_auth"] = f.EventAuth(ctx, room.ID, ev.ID)
		_, errs["make_join"] = f.MakeJoin(ctx, room.ID, "@newcomer:"+r.w.ServerName, []string{room.Version})
		for name, err := range errs {
			if !errors.Is(err, synapseclient.ErrHostNotInRoom) {
				t.Errorf("%s of a room no local user is in: %v", name, err)
			}
		}
	}

	_, err := f.Event(ctx, "$unknown")
	var e *synapseclient.Error
	if !errors.Is(err, synapseclient.ErrNotFound) || !errors.As(err, &e) || string(e.Body) != `""` {
		t.Fatalf("unknown event: %v", err)
	}
	_, err = f.MakeJoin(ctx, joined[0].ID, r.w.RemoteUsers[0], []string{joined[0].Version})
	if !errors.Is(err, synapseclient.ErrForbidden) || errors.Is(err, synapseclient.ErrHostNotInRoom) {
		t.Fatalf("make_join for another server's user: %v", err)
	}

	// Synapse accepts its own name only with its current key.
	old := r.w.OldKeys[0]
	stale := startRig(t, synapsesim.Options{}, func(c *synapseclient.Config) {
		c.Identity = &signing.Identity{ServerName: r.w.ServerName, Keys: []signing.Key{{ID: signing.KeyID(old.KeyID), Seed: old.Private.Seed()}}}
	})
	if _, err := stale.c.Federation().Event(ctx, joined[0].Latest().ID); !errors.Is(err, synapseclient.ErrUnauthorized) {
		t.Fatalf("request signed with the old key: %v", err)
	}
}

func eventIDs(evs []*world.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// retries records the client's OnRetry reports.
type retries struct {
	mu     sync.Mutex
	events []synapseclient.RetryEvent
}

func (r *retries) add(e synapseclient.RetryEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *retries) all() []synapseclient.RetryEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]synapseclient.RetryEvent(nil), r.events...)
}

// noKeepAlive makes every attempt use a new connection, so Go's transport never replays a
// request on its own after a dropped connection and the attempt counts are exact.
func noKeepAlive(c *synapseclient.Config) {
	c.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

const backfillEndpoint = "GET /_matrix/federation/v1/backfill/{roomId}"

// TestSimRetryAfter429 runs into the simulator's per-origin rate limit and checks that the client
// waits exactly the retry_after_ms Synapse asked for (the recorded wait moves the simulator's
// clock, which opens a new window) and then succeeds.
func TestSimRetryAfter429(t *testing.T) {
	t.Parallel()
	clk := newClock()
	var rs retries
	r := startRig(t, synapsesim.Options{Now: clk.Now, RateLimit: &synapsesim.RateLimit{Requests: 2, Window: 1500 * time.Millisecond}},
		func(c *synapseclient.Config) { c.OnRetry = rs.add })
	r.sleeps.clock = clk
	ctx := t.Context()
	room := roomOfKind(t, r.w, world.KindRemoteMembers)
	for i := range 3 {
		tx, err := r.c.Federation().Backfill(ctx, room.ID, room.ForwardExtremities(), 10)
		if err != nil {
			t.Fatalf("backfill %d: %v", i, err)
		}
		checkPDUs(t, r.w, "backfill after 429", tx.PDUs, true)
	}
	if got := r.sleeps.all(); !slices.Equal(got, []time.Duration{1500 * time.Millisecond}) {
		t.Fatalf("waits %v, want the 1.5 s Synapse asked for", got)
	}
	ev := rs.all()
	if len(ev) != 1 || ev[0].Status != 429 || ev[0].Endpoint != backfillEndpoint || ev[0].Attempt != 1 ||
		ev[0].Wait != 1500*time.Millisecond || !errors.Is(ev[0].Err, synapseclient.ErrRateLimited) {
		t.Fatalf("retry reports %+v", ev)
	}
	if n := r.s.Count("fed.backfill"); n != 4 {
		t.Fatalf("%d backfill requests, want 4 (3 calls, one retried)", n)
	}
}

// TestSimGiveUpNamesEndpoint spends the retry budget, by attempts and by total wait, on 429s and
// on 500s, and checks the error names the endpoint (and no room ID) and wraps the last answer.
func TestSimGiveUpNamesEndpoint(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const stateIDs = "GET /_matrix/federation/v1/state_ids/{roomId}"
	limited := func(maxWait time.Duration) *rig {
		return startRig(t, synapsesim.Options{Now: newClock().Now, RateLimit: &synapsesim.RateLimit{Requests: 1, Window: time.Minute}},
			func(c *synapseclient.Config) { c.MaxTotalWait = maxWait })
	}
	room := roomOfKind(t, sharedWorld(t), world.KindOrdinary)

	r := limited(time.Hour)
	f := r.c.Federation()
	if _, err := f.StateIDs(ctx, room.ID, room.Latest().ID); err != nil {
		t.Fatal(err)
	}
	_, err := f.StateIDs(ctx, room.ID, room.Latest().ID)
	var re *synapseclient.RetryError
	var last *synapseclient.Error
	if !errors.As(err, &re) || re.Endpoint != stateIDs || re.Attempts != rigAttempts ||
		!errors.Is(err, synapseclient.ErrRetriesExhausted) || !errors.Is(err, synapseclient.ErrRateLimited) ||
		!errors.As(err, &last) || last.RetryAfter != time.Minute {
		t.Fatalf("rate limited until the attempts ran out: %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, stateIDs) || !strings.Contains(msg, fmt.Sprintf("gave up after %d attempts", rigAttempts)) ||
		strings.Contains(msg, room.ID) {
		t.Fatalf("message %q should name the endpoint template and the attempts, not the room", msg)
	}
	if got := r.sleeps.all(); !slices.Equal(got, []time.Duration{time.Minute, time.Minute, time.Minute}) {
		t.Fatalf("waits %v, want three of the minute Synapse asked for", got)
	}
	if n := r.s.Count("fed.state_ids"); n != 1+rigAttempts {
		t.Fatalf("%d requests, want %d", n, 1+rigAttempts)
	}

	r = limited(90 * time.Second)
	if _, err := r.c.Federation().StateIDs(ctx, room.ID, room.Latest().ID); err != nil {
		t.Fatal(err)
	}
	_, err = r.c.Federation().StateIDs(ctx, room.ID, room.Latest().ID)
	if !errors.As(err, &re) || re.Attempts != 2 || !strings.Contains(err.Error(), stateIDs) ||
		!strings.Contains(re.Reason, "max total wait") || re.Waited != time.Minute {
		t.Fatalf("total wait budget: %v", err)
	}

	r = startRig(t, synapsesim.Options{}, nil)
	r.s.Faults().FailNext("admin.users", 100, 0)
	_, err = r.c.Admin().AllUsers(ctx)
	if !errors.As(err, &re) || re.Endpoint != "GET /_synapse/admin/v2/users" || !errors.As(err, &last) || last.Status != 500 ||
		!strings.Contains(err.Error(), "GET /_synapse/admin/v2/users") {
		t.Fatalf("500s until the attempts ran out: %v", err)
	}
	if got, want := r.sleeps.all(), []time.Duration{rigBaseBackoff, 2 * rigBaseBackoff, 4 * rigBaseBackoff}; !slices.Equal(got, want) {
		t.Fatalf("backoffs %v, want %v", got, want)
	}
}

// TestSim500sThenSuccess checks that 5xx answers are retried with doubling backoff on reads, and
// that a login-as POST (not idempotent) is not retried.
func TestSim500sThenSuccess(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	room := roomOfKind(t, r.w, world.KindV1)
	rule := r.s.Faults().FailNext("fed.state_ids", 2, 0)
	sids, err := r.c.Federation().StateIDs(ctx, room.ID, room.Latest().ID)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := room.StateBefore(room.Latest().ID)
	if !sameSet(sids.PDUIDs, before.EventIDs()) {
		t.Fatal("state_ids after retries differs from the world")
	}
	if rule.Hits() != 2 || r.s.Count("fed.state_ids") != 3 {
		t.Fatalf("%d faults, %d requests", rule.Hits(), r.s.Count("fed.state_ids"))
	}
	if got := r.sleeps.all(); !slices.Equal(got, []time.Duration{rigBaseBackoff, 2 * rigBaseBackoff}) {
		t.Fatalf("backoffs %v", got)
	}

	r.s.Faults().FailNext("client.sync", 1, 503)
	alice := r.w.User("@alice:" + r.w.ServerName)
	uc := r.loginAs(t, alice.ID)
	if _, err := uc.SyncAccountData(ctx); err != nil || r.s.Count("client.sync") != 2 {
		t.Fatalf("sync after a 503: %v, %d requests", err, r.s.Count("client.sync"))
	}

	waits := len(r.sleeps.all())
	r.s.Faults().FailNext("admin.login", 1, 0)
	logins := r.s.Count("admin.login")
	_, err = r.c.Admin().LoginAsUser(ctx, alice.ID, time.Time{})
	var e *synapseclient.Error
	var re *synapseclient.RetryError
	if !errors.As(err, &e) || e.Status != 500 || errors.As(err, &re) {
		t.Fatalf("login-as on a 500: %v", err)
	}
	if r.s.Count("admin.login") != logins+1 || len(r.sleeps.all()) != waits {
		t.Fatal("login-as was retried")
	}
}

// TestSimDroppedConnectionsRetried drops connections without an answer: reads are retried and
// succeed, the login-as POST is not retried.
func TestSimDroppedConnectionsRetried(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, noKeepAlive)
	ctx := t.Context()
	room := roomOfKind(t, r.w, world.KindJoinedVisibility)
	r.s.Faults().DropNext("fed.event", 2)
	tx, err := r.c.Federation().Event(ctx, room.Latest().ID)
	if err != nil {
		t.Fatal(err)
	}
	checkPDUs(t, r.w, "event after dropped connections", tx.PDUs, true)
	if n := r.s.Count("fed.event"); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	if got := r.sleeps.all(); !slices.Equal(got, []time.Duration{rigBaseBackoff, 2 * rigBaseBackoff}) {
		t.Fatalf("backoffs %v", got)
	}

	r.s.Faults().DropNext("fed.get_missing_events", 1)
	missing, err := r.c.Federation().GetMissingEvents(ctx, room.ID, synapseclient.MissingEventsRequest{LatestEvents: []string{room.Latest().ID}})
	if err != nil {
		t.Fatal(err)
	}
	checkPDUs(t, r.w, "get_missing_events after a dropped connection", missing, true)

	alice := r.w.User("@alice:" + r.w.ServerName)
	if _, err := r.c.Admin().AdminUserID(ctx); err != nil {
		t.Fatal(err)
	}
	r.s.Faults().DropNext("admin.login", 1)
	if _, err := r.c.Admin().LoginAsUser(ctx, alice.ID, time.Time{}); err == nil ||
		!strings.Contains(err.Error(), "POST /_synapse/admin/v1/users/{userId}/login") || r.s.Count("admin.login") != 1 {
		t.Fatalf("login-as over a dropped connection: %v, %d requests", err, r.s.Count("admin.login"))
	}
}

// TestSimTruncatedBodyRetried cuts an answer in half and closes the connection; the read is retried.
func TestSimTruncatedBodyRetried(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, noKeepAlive)
	ctx := t.Context()
	alice := r.w.User("@alice:" + r.w.ServerName)
	uc := r.loginAs(t, alice.ID)
	r.s.Faults().TruncateNext("client.pushrules", 1)
	rules, err := uc.PushRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if jsontest.Canonical(t, rules) != jsontest.Canonical(t, alice.PushRules) || r.s.Count("client.pushrules") != 2 {
		t.Fatalf("push rules after a truncated answer: %d requests", r.s.Count("client.pushrules"))
	}
}

// TestSimTamperedBodyDetected has the simulator corrupt event contents: the client returns the
// bytes as received, and the caller's verification (content hash, signatures) catches them.
func TestSimTamperedBodyDetected(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	room := roomOfKind(t, r.w, world.KindRemoteMembers)
	r.s.Faults().TamperNext("fed.backfill", 1)
	tx, err := r.c.Federation().Backfill(ctx, room.ID, room.ForwardExtremities(), 100)
	if err != nil {
		t.Fatal(err)
	}
	caught := 0
	for i, p := range tx.PDUs {
		if _, err := checkPDU(r.w, p, true); err != nil {
			caught++
			if msg := err.Error(); !strings.Contains(msg, "content hash mismatch") && !strings.Contains(msg, "signature") {
				t.Fatalf("PDU %d: tampering caught by the wrong check: %v", i, err)
			}
		}
	}
	if caught == 0 {
		t.Fatal("no tampered PDU was caught")
	}
	clean, err := r.c.Federation().Backfill(ctx, room.ID, room.ForwardExtremities(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if ids := checkPDUs(t, r.w, "backfill after tampering", clean.PDUs, true); len(ids) != len(tx.PDUs) {
		t.Fatalf("%d events after tampering, %d with it", len(ids), len(tx.PDUs))
	}
	t.Logf("tampering caught in %d of %d PDUs", caught, len(tx.PDUs))
}

// waitFor receives from ch, failing the test if nothing comes: a guard against hanging, not a
// timing assertion.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("gave up waiting for %s", what)
		panic("unreachable")
	}
}

// TestSimCancelInFlight cancels a request the simulator holds: the call returns context.Canceled
// without retrying; released, the same call then succeeds. Cancelling during a retry wait ends
// the wait too.
func TestSimCancelInFlight(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	room := roomOfKind(t, r.w, world.KindOrdinary)
	hold := r.s.Faults().Hold("fed.backfill")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := r.c.Federation().Backfill(ctx, room.ID, room.ForwardExtremities(), 10)
		done <- err
	}()
	waitFor(t, hold.Arrived(), "the held backfill to arrive")
	select {
	case err := <-done:
		t.Fatalf("held call returned early: %v", err)
	default:
	}
	cancel()
	err := waitFor(t, done, "the cancelled call to return")
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), backfillEndpoint) {
		t.Fatalf("cancelled call: %v", err)
	}
	if n := r.s.Count("fed.backfill"); n != 1 || len(r.sleeps.all()) != 0 {
		t.Fatalf("cancelled call retried: %d requests, waits %v", n, r.sleeps.all())
	}
	hold.Release()
	tx, err := r.c.Federation().Backfill(t.Context(), room.ID, room.ForwardExtremities(), 10)
	if err != nil {
		t.Fatal(err)
	}
	checkPDUs(t, r.w, "backfill after release", tx.PDUs, true)

	wctx, wcancel := context.WithCancel(t.Context())
	waiting := startRig(t, synapsesim.Options{}, func(c *synapseclient.Config) {
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			wcancel()
			<-ctx.Done()
			return ctx.Err()
		}
	})
	waiting.s.Faults().FailNext("fed.event", 1, 0)
	_, err = waiting.c.Federation().Event(wctx, room.Latest().ID)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting to retry") ||
		!strings.Contains(err.Error(), "GET /_matrix/federation/v1/event/{eventId}") || waiting.s.Count("fed.event") != 1 {
		t.Fatalf("cancelled during the retry wait: %v (%d requests)", err, waiting.s.Count("fed.event"))

	}
}

// TestSimRoomAliasesAndLogout reads a room's local aliases with the admin token and a member's
// puppet token, and logs a puppet token out: it stops working, and a second logout (a retry after
// a lost answer) still succeeds.
func TestSimRoomAliasesAndLogout(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	w := r.w
	var room *world.Room
	for _, rm := range w.Rooms {
		if len(rm.Aliases) > 0 && rm.LocalJoinedNow() {
			room = rm
			break
		}
	}
	if room == nil {
		t.Fatal("world has no room with a local alias")
	}
	want := []string{}
	for a, id := range w.Aliases {
		if id == room.ID {
			want = append(want, a)
		}
	}
	got, err := r.c.AdminAsUser().RoomAliases(ctx, room.ID)
	if err != nil || !slices.Equal(jsontest.Sorted(got), jsontest.Sorted(want)) || len(want) == 0 {
		t.Fatalf("aliases of %s = %v, %v; want %v", room.ID, got, err, want)
	}
	tok, err := r.c.Admin().LoginAsUser(ctx, "@alice:"+w.ServerName, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	alice := r.c.User(tok)
	if _, err := alice.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	if err := alice.Logout(ctx); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if _, err := alice.WhoAmI(ctx); !errors.Is(err, synapseclient.ErrUnauthorized) {
		t.Fatalf("token still works after logout: %v", err)
	}
	if err := alice.Logout(ctx); err != nil {
		t.Fatalf("second logout: %v", err)
	}
	if n := r.s.LiveLoginTokens(); n != 0 {
		t.Fatalf("%d puppet tokens alive", n)
	}
}

// TestSimPDUBytesAsSent checks that PDU.Raw holds exactly the bytes Synapse sent: with the
// simulator's clock fixed its answers repeat byte for byte, so a raw signed request must show
// the same bytes for every PDU.
func TestSimPDUBytesAsSent(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{Now: newClock().Now}, nil)
	ctx := t.Context()
	room := roomOfKind(t, r.w, world.KindV1)
	tx, err := r.c.Federation().Backfill(ctx, room.ID, []string{room.Latest().ID}, 50)
	if err != nil {
		t.Fatal(err)
	}
	uri := "/_matrix/federation/v1/backfill/" + url.PathEscape(room.ID) + "?v=" + url.QueryEscape(room.Latest().ID) + "&limit=50"
	x, err := signing.SignRequest(r.s.Identity(), "GET", r.w.ServerName, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", r.s.URL+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", x.String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != 200 {
		t.Fatalf("raw backfill: %d, %v", resp.StatusCode, err)
	}
	if len(raw.PDUs) != len(tx.PDUs) || len(raw.PDUs) == 0 {
		t.Fatalf("%d PDUs raw, %d through the client", len(raw.PDUs), len(tx.PDUs))
	}
	for i := range raw.PDUs {
		if string(tx.PDUs[i].Raw) != string(raw.PDUs[i]) {
			t.Fatalf("PDU %d: client kept\n%s\nSynapse sent\n%s", i, tx.PDUs[i].Raw, raw.PDUs[i])
		}
	}
	checkPDUs(t, r.w, "backfill of the v1 room", tx.PDUs, true)
}

// TestSimQueryProfileAndMediaTotals reads a profile over federation as the server itself, and the
// local media totals through the users' media statistics, paged three users at a time.
func TestSimQueryProfileAndMediaTotals(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	alice := r.w.User("@alice:" + r.w.ServerName)
	p, err := r.c.Federation().QueryProfile(ctx, alice.ID, "")
	if err != nil || p.DisplayName == nil || *p.DisplayName != alice.Profile.DisplayName {
		t.Fatalf("profile %+v, %v", p, err)
	}
	if _, err := r.c.Federation().QueryProfile(ctx, "@nobody:"+r.w.ServerName, ""); !errors.Is(err, synapseclient.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	want := synapseclient.MediaTotals{}
	for _, items := range r.s.LocalMedia() {
		want.Users++
		for _, m := range items {
			want.Count++
			want.Bytes += m.Length
		}
	}
	if want.Users < 4 {
		t.Fatalf("the world has media for %d users; paging needs more than 3", want.Users)
	}
	got, err := r.c.Admin().LocalMediaTotals(ctx)
	if err != nil || *got != want {
		t.Fatalf("media totals %+v, %v; want %+v", got, err, want)
	}
	page, err := r.c.Admin().UserMediaStatistics(ctx, 0, 3)
	if err != nil || len(page.Users) != 3 || page.Total != want.Users || page.NextToken == nil || *page.NextToken != 3 {
		t.Fatalf("first page %+v, %v", page, err)
	}
}

func TestSimUserMedia(t *testing.T) {
	r := startRig(t, synapsesim.Options{}, func(c *synapseclient.Config) { c.PageSize = 2 })
	ctx := t.Context()
	alice := r.w.User("@alice:" + r.w.ServerName)
	got, err := r.c.Admin().AllUserMedia(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(alice.Media) < 3 || len(got) != len(alice.Media) {
		t.Fatalf("%d items, want %d (at least 3, to page by 2)", len(got), len(alice.Media))
	}
	for i, m := range alice.Media {
		want := synapseclient.LocalMedia{MediaID: m.ID, MediaType: m.ContentType, MediaLength: int64(len(m.Bytes)),
			UploadName: m.UploadName, CreatedTS: m.CreatedTS, LastAccessTS: m.LastAccessTS, QuarantinedBy: m.QuarantinedBy}
		if got[i] != want {
			t.Errorf("item %d: %+v, want %+v", i, got[i], want)
		}
	}
	page, err := r.c.Admin().UserMedia(ctx, alice.ID, 0, 1)
	if err != nil || len(page.Media) != 1 || page.Total != len(alice.Media) || page.NextToken == nil || *page.NextToken != 1 {
		t.Fatalf("first page %+v, %v", page, err)
	}
	bob := r.w.User("@bob:" + r.w.ServerName)
	bobs, err := r.c.Admin().AllUserMedia(ctx, bob.ID)
	quarantined := 0
	for _, m := range bobs {
		if m.QuarantinedBy != "" {
			quarantined++
		}
	}
	if err != nil || quarantined != 1 {
		t.Errorf("bob: %d quarantined items (want 1), %v", quarantined, err)
	}
	if none, err := r.c.Admin().AllUserMedia(ctx, "@dave:"+r.w.ServerName); err != nil || none == nil || len(none) != 0 {
		t.Errorf("user without uploads: %v, %v", none, err)
	}
	if _, err := r.c.Admin().AllUserMedia(ctx, "@nobody:"+r.w.ServerName); !errors.Is(err, synapseclient.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
}

// TestSimProbeLoginAsAndAuthIssuer: a Synapse that handles its own logins offers login-as (the
// probe for the admin itself is refused with "login as self", no token made) and names no issuer.
func TestSimProbeLoginAsAndAuthIssuer(t *testing.T) {
	t.Parallel()
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := t.Context()
	la, err := r.c.Admin().ProbeLoginAs(ctx)
	if err != nil || !la.Available || la.Refusal != nil {
		t.Fatalf("probe: %+v, %v", la, err)
	}
	iss, err := r.c.Admin().AuthIssuer(ctx)
	if err != nil || iss != "" {
		t.Fatalf("issuer %q, %v", iss, err)
	}
}
