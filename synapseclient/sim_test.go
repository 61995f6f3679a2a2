package synapseclient_test

// These tests run every method of the three clients against the simulated Synapse
// (internal/synapsesim) and compare the answers with the generated world it serves. The table in
// TestSimCoversEveryClientMethod names the test covering each method.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

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
		simWorld, simWorldErr = world.Generate(world.Options{Seed: 3, MessagesPerRoom: 15, OldKeyEvents: 5})
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
func canon(t testing.TB, b []byte) string {
	t.Helper()
	c, err := signing.CanonicalJSON(b)
	if err != nil {
		t.Fatalf("not JSON: %v: %.200s", err, b)
	}
	return string(c)
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

func sameSet(a, b []string) bool { return slices.Equal(sorted(a), sorted(b)) }

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
		!slices.Equal(p.PrevEvents, ev.PrevEvents) || !slices.Equal(p.AuthEvents, ev.AuthEvents) {
		return nil, fmt.Errorf("event %s: parsed fields %+v differ from the world's", id, p)
	}
	return ev, nil
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

		"FederationClient.Backfill":         "TestSimFederationReads, TestSimRetryAfter429, TestSimTamperedBodyDetected, TestSimCancelInFlight",
		"FederationClient.Event":            "TestSimFederationReads, TestSimDroppedConnectionsRetried",
		"FederationClient.GetMissingEvents": "TestSimFederationReads",
		"FederationClient.StateIDs":         "TestSimFederationReads, TestSimGiveUpNamesEndpoint, TestSim500sThenSuccess",
		"FederationClient.State":            "TestSimFederationReads",
		"FederationClient.EventAuth":        "TestSimFederationReads",
		"FederationClient.MakeJoin":         "TestSimFederationReads",
		"FederationClient.ServerKeys":       "TestSimServerKeysAndVersion",
		"FederationClient.QueryServerKeys":  "TestSimQueryServerKeys",
		"FederationClient.Version":          "TestSimServerKeysAndVersion, TestSimVersionGating",
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
	if !slices.Equal(got, sorted(wantIDs)) {
		t.Fatalf("users %v, want %v", got, sorted(wantIDs))
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
	bobRoom := sorted(slices.Collect(maps.Keys(bob.Tags)))
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
		if canon(t, mustMarshal(t, ad.Global)) != canon(t, mustMarshal(t, u.AccountData.Global)) ||
			canon(t, mustMarshal(t, ad.Rooms)) != canon(t, mustMarshal(t, u.AccountData.Rooms)) {
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
				canon(t, p.Data) != canon(t, mustMarshal(t, wp.Data)) {
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
