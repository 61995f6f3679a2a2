package synapseclient

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
)

func TestAdminUserAndRoomEndpoints(t *testing.T) {
	f := newFake(t)
	for _, n := range []string{"admin_v2_user_alice", "admin_v2_user_nonexistent", "admin_v1_user_accountdata", "admin_v2_user_devices",
		"admin_v1_user_pushers", "admin_v1_user_joined_rooms", "admin_v1_room_a", "admin_v1_room_a_state", "admin_v1_room_a_members",
		"admin_v1_room_forward_extremities_a", "admin_v1_room_nonexistent", "admin_v2_user_dave_deactivated"} {
		f.serveFixture(n)
	}
	c, _ := newTestClient(t, f)
	a := c.Admin()
	ctx := ctxT(t)
	const alice, roomA = "@alice:synapse.test", "!FxOZIdiZlcgPsSDLHo:synapse.test"

	u, err := a.User(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != alice || bool(u.Admin) || u.CreationTS != 1795330502 || u.ThreePIDs == nil || !strings.Contains(string(u.Raw), `"consent_version"`) {
		t.Errorf("user = %+v", u)
	}
	dave, err := a.User(ctx, "@dave:synapse.test")
	if err != nil || !bool(dave.Deactivated) {
		t.Errorf("dave = %+v, %v", dave, err)
	}
	if _, err := a.User(ctx, "@nobody:synapse.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("nonexistent user: %v", err)
	}
	ad, err := a.AccountData(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if string(ad.Global["org.example.custom"]) == "" || ad.Rooms[roomA]["org.example.room_custom"] == nil {
		t.Errorf("account data = %+v", ad)
	}
	devs, err := a.Devices(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].DeviceID != "ALICELAPTOP" || devs[0].LastSeenUserAgent == nil || devs[1].DisplayName != nil {
		t.Errorf("devices = %+v", devs)
	}
	ps, err := a.Pushers(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Kind != "http" || ps[0].Enabled != nil || !strings.Contains(string(ps[0].Data), "url") {
		t.Errorf("pushers = %+v", ps)
	}
	jr, err := a.JoinedRooms(ctx, alice)
	if err != nil || len(jr) != 4 {
		t.Errorf("joined rooms = %v, %v", jr, err)
	}
	rd, err := a.Room(ctx, roomA)
	if err != nil {
		t.Fatal(err)
	}
	if rd.RoomID != roomA || rd.Version != "10" || rd.Topic == nil || *rd.Topic != "talking about the oracle" || rd.JoinedLocalDevices != 3 || len(rd.Raw) == 0 {
		t.Errorf("room = %+v", rd)
	}
	st, err := a.RoomState(ctx, roomA)
	if err != nil || len(st) != 9 {
		t.Errorf("state: %d events, %v", len(st), err)
	}
	mem, err := a.RoomMembers(ctx, roomA)
	if err != nil || strings.Join(mem, ",") != "@alice:synapse.test,@bob:synapse.test" {
		t.Errorf("members = %v, %v", mem, err)
	}
	fx, err := a.ForwardExtremities(ctx, roomA)
	if err != nil || len(fx) != 1 || fx[0].Depth != 264 || fx[0].EventID != "$gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0" {
		t.Errorf("extremities = %+v, %v", fx, err)
	}
	_, err = a.Room(ctx, "!nope:synapse.test")
	var e *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || e.ErrCode != "M_NOT_FOUND" || e.Endpoint != "GET /_synapse/admin/v1/rooms/{roomId}" {
		t.Errorf("nonexistent room: %v", err)
	}
	// Every request used the fixture's exact escaping.
	for _, r := range f.seen() {
		if strings.Contains(r.URI, "@") || strings.Contains(r.URI, "!") || strings.Contains(r.URI, ":synapse") {
			t.Errorf("unescaped ID in %s", r.URI)
		}
	}
}

func TestNonAdminForbidden(t *testing.T) {
	f := newFake(t)
	rec := fixtures.Load(t, "admin_v1_users_non_admin_forbidden")
	f.handle("GET", "/_synapse/admin/v2/users", respond(rec.Response.Status, rec.Response.Body))
	c, _ := newTestClient(t, f)
	_, err := c.Admin().ListUsers(ctxT(t), ListUsersOptions{})
	if !errors.Is(err, ErrForbidden) || errors.Is(err, ErrHostNotInRoom) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), testAdminToken) || !strings.Contains(err.Error(), "M_FORBIDDEN") {
		t.Errorf("error text = %q", err)
	}
}

func TestAdminWithoutTokenFailsLocally(t *testing.T) {
	f := newFake(t)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.AdminToken = "" })
	_, err := c.Admin().User(ctxT(t), "@alice:synapse.test")
	if !errors.Is(err, ErrNotConfigured) || len(f.seen()) != 0 {
		t.Fatalf("err = %v, requests %d", err, len(f.seen()))
	}
}

func TestVersionGatingWithoutRequest(t *testing.T) {
	f := newFake(t)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.ServerVersion = "1.67.0" })
	_, err := c.Admin().RoomMessages(ctxT(t), "!FxOZIdiZlcgPsSDLHo:synapse.test", MessagesOptions{})
	var ue *UnsupportedError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ue) || !strings.Contains(err.Error(), "1.68.0") || !strings.Contains(err.Error(), "1.67.0") {
		t.Fatalf("messages on 1.67: %v", err)
	}
	_, err = c.Admin().FetchEvent(ctxT(t), "$x")
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "1.140.0") || !strings.Contains(err.Error(), "fetch_event") {
		t.Fatalf("fetch_event on 1.67: %v", err)
	}
	if n := len(f.seen()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestVersionDiscoveredOnceFromAdminAPI(t *testing.T) {
	f := newFake(t)
	f.serveFixture("admin_v1_server_version")
	c, _ := newTestClient(t, f)
	for range 2 {
		if _, err := c.Admin().FetchEvent(ctxT(t), "$x"); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := len(f.seen()); n != 1 {
		t.Errorf("%d requests, want 1 server_version", n)
	}
	v, err := c.Admin().Version(ctxT(t))
	if err != nil || v != (Version{Major: 1, Minor: 67}) {
		t.Errorf("version = %v, %v", v, err)
	}
}

func TestVersionFallsBackToFederation(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/_synapse/admin/v1/server_version", respond(404, []byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)))
	rec := f.serveFixture("fed_version")
	c, _ := newTestClient(t, f)
	v, err := c.Admin().Version(ctxT(t))
	if err != nil || v.String() != "1.67.0" {
		t.Fatalf("version = %v, %v", v, err)
	}
	for _, r := range f.seen() {
		if r.URI == rec.Request.Path && r.Auth != "" {
			t.Errorf("federation /version sent Authorization %q", r.Auth)
		}
	}
}

func TestOffsetPages(t *testing.T) {
	ptr := func(n int) *int { return &n }
	var froms []int
	nexts := []*int{ptr(10), ptr(25), nil}
	err := offsetPages("/x", func(from int) (*int, int, error) {
		froms = append(froms, from)
		return nexts[len(froms)-1], 5, nil
	})
	if err != nil || fmt.Sprint(froms) != "[0 10 25]" {
		t.Errorf("froms %v, err %v; want [0 10 25], nil", froms, err)
	}
	err = offsetPages("/x", func(from int) (*int, int, error) { return ptr(from), 5, nil })
	if err == nil || !strings.Contains(err.Error(), "does not advance") {
		t.Errorf("a repeating offset: err %v", err)
	}
	calls := 0
	err = offsetPages("/x", func(int) (*int, int, error) { calls++; return ptr(99), 0, nil })
	if err != nil || calls != 1 {
		t.Errorf("an empty page: %d calls, err %v; want 1, nil", calls, err)
	}
}
