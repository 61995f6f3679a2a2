package synapseclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
)

func TestAllUsersFollowsStringNextTokenAcrossFixturePages(t *testing.T) {
	f := newFake(t)
	f.serveFixture("admin_v2_users_limit2")
	f.serveFixture("admin_v2_users_limit2_page2")
	f.serveFixture("admin_v2_users_limit2_page3")
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.PageSize = 2 })

	users, err := c.Admin().AllUsers(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	want := "@admin:synapse.test @alice:synapse.test @bob:synapse.test @carol:synapse.test @dave:synapse.test"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("users = %s, want %s", got, want)
	}
	if !users[0].Admin || users[1].Admin {
		t.Errorf("admin flags (0/1 ints) decoded wrong: %v %v", users[0].Admin, users[1].Admin)
	}
	if !users[4].Deactivated || users[3].Deactivated {
		t.Errorf("deactivated flags decoded wrong")
	}
	if users[1].CreationTS != 1795330502000 || users[1].DisplayName == nil || *users[1].DisplayName != "Alice Liddell" {
		t.Errorf("alice = %+v", users[1])
	}
	reqs := f.seen()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for i, from := range []string{"", "2", "4"} {
		r := reqs[i]
		if r.Auth != "Bearer "+testAdminToken {
			t.Errorf("request %d Authorization = %q", i, r.Auth)
		}
		for _, p := range []string{"deactivated=true", "locked=true", "limit=2"} {
			if !strings.Contains(r.URI, p) {
				t.Errorf("request %d %s lacks %s", i, r.URI, p)
			}
		}
		if hasFrom := strings.Contains(r.URI, "from="+from); from != "" && !hasFrom || from == "" && strings.Contains(r.URI, "from=") {
			t.Errorf("request %d %s: want from=%q", i, r.URI, from)
		}
	}
}

func TestListUsersPages(t *testing.T) {
	f := newFake(t)
	f.serveFixture("admin_v2_users_limit2")
	f.serveFixture("admin_v2_users_limit2_page3")
	c, _ := newTestClient(t, f)
	p1, err := c.Admin().ListUsers(ctxT(t), ListUsersOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p1.NextToken != "2" || p1.Total != 5 || len(p1.Users) != 2 {
		t.Errorf("page 1 = next %q total %d users %d", p1.NextToken, p1.Total, len(p1.Users))
	}
	p3, err := c.Admin().ListUsers(ctxT(t), ListUsersOptions{Limit: 2, From: "4"})
	if err != nil {
		t.Fatal(err)
	}
	if p3.NextToken != "" || len(p3.Users) != 1 || p3.Users[0].Name != "@dave:synapse.test" {
		t.Errorf("last page = %+v", p3)
	}
}

func TestListRoomsNextBatchIsAnInt(t *testing.T) {
	f := newFake(t)
	f.serveFixture("admin_v1_rooms_limit2")
	all := fixtures.Load(t, "admin_v1_rooms")
	// Page 2 is built from the recorded full list: rooms[2:], offset 2, no next_batch.
	rooms := rawList(t, all.Response.Body, "rooms")
	page2, _ := json.Marshal(map[string]any{"offset": 2, "total_rooms": len(rooms), "rooms": rooms[2:], "prev_batch": 0})
	f.handle("GET", "/_synapse/admin/v1/rooms?limit=2&from=2", respond(200, page2))
	// Expected raw bytes: what was served (page 1 as recorded, page 2 as marshalled).
	p1rec := fixtures.Load(t, "admin_v1_rooms_limit2")
	rooms = append(rawList(t, p1rec.Response.Body, "rooms"), rawList(t, page2, "rooms")...)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.PageSize = 2 })

	p1, err := c.Admin().ListRooms(ctxT(t), ListRoomsOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p1.NextBatch == nil || *p1.NextBatch != 2 || len(p1.Rooms) != 2 {
		t.Fatalf("page 1: next_batch %v, %d rooms", p1.NextBatch, len(p1.Rooms))
	}
	if p1.Rooms[0].Name != nil || p1.Rooms[0].JoinRules != nil || p1.Rooms[0].StateEvents != 7 {
		t.Errorf("room d (no local members) should have null name/join_rules: %+v", p1.Rooms[0])
	}
	got, err := c.Admin().AllRooms(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rooms) {
		t.Fatalf("AllRooms = %d rooms, want %d", len(got), len(rooms))
	}
	for i, r := range got {
		var want struct {
			RoomID  string `json:"room_id"`
			Version string `json:"version"`
		}
		json.Unmarshal(rooms[i], &want)
		if r.RoomID != want.RoomID || r.Version != want.Version || string(r.Raw) != string(rooms[i]) {
			t.Errorf("room %d = %s v%s, want %s v%s", i, r.RoomID, r.Version, want.RoomID, want.Version)
		}
	}
}

func TestSearchUsersBareListWithHash(t *testing.T) {
	f := newFake(t)
	rec := f.serveFixture("admin_v1_search_users")
	c, _ := newTestClient(t, f)
	users, err := c.Admin().SearchUsers(ctxT(t), "ali")
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Name != "@alice:synapse.test" || !strings.HasPrefix(users[0].PasswordHash, "$2b$12$") {
		t.Fatalf("users = %v", users)
	}
	if got := f.seen()[0].URI; got != rec.Request.Path {
		t.Errorf("URI = %s, want %s", got, rec.Request.Path)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, users[0]); strings.Contains(s, users[0].PasswordHash) || strings.Contains(s, "$2b$") {
			t.Errorf("%s prints the password hash: %s", format, s)
		}
	}
}

func TestLoginAsUser(t *testing.T) {
	f := newFake(t)
	rec := f.serveFixture("admin_v1_user_login_as_alice")
	c, _ := newTestClient(t, f)
	tok, err := c.Admin().LoginAsUser(ctxT(t), "@alice:synapse.test", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if tok != "syt_YWxpY2U_iJfcSShVVSQdtizniKqY_3Z55IH" {
		t.Errorf("token = %q", tok)
	}
	r := f.seen()[0]
	if r.URI != rec.Request.Path || string(r.Body) != "{}" || r.Method != "POST" {
		t.Errorf("request = %s %s %s", r.Method, r.URI, r.Body)
	}
	if _, err := c.Admin().LoginAsUser(ctxT(t), "@alice:synapse.test", time.UnixMilli(1800000000123)); err != nil {
		t.Fatal(err)
	}
	if got := string(f.seen()[1].Body); got != `{"valid_until_ms":1800000000123}` {
		t.Errorf("body = %s", got)
	}
}

func TestLoginAsSelfRefusedLocally(t *testing.T) {
	f := newFake(t)
	f.serveFixture("admin_v1_user_login_as_self")
	c, _ := newTestClient(t, f)
	_, err := c.Admin().LoginAsUser(ctxT(t), testAdminID, time.Time{})
	if !errors.Is(err, ErrLoginAsSelf) {
		t.Fatalf("err = %v, want ErrLoginAsSelf", err)
	}
	if n := len(f.seen()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestLoginAsSelfFoundViaWhoAmI(t *testing.T) {
	f := newFake(t)
	f.serveFixture("admin_v1_user_login_as_self")
	who := fixtures.Load(t, "client_whoami_puppet")
	body := strings.Replace(string(who.Response.Body), "@alice:synapse.test", testAdminID, 1)
	f.handle("GET", "/_matrix/client/v3/account/whoami", respond(200, []byte(body)))
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.AdminUserID = "" })
	for range 2 {
		if _, err := c.Admin().LoginAsUser(ctxT(t), testAdminID, time.Time{}); !errors.Is(err, ErrLoginAsSelf) {
			t.Fatalf("err = %v, want ErrLoginAsSelf", err)
		}
	}
	if n := f.count("/_matrix/client/v3/account/whoami"); n != 1 {
		t.Errorf("whoami asked %d times, want 1 (cached)", n)
	}
	if n := f.count("/_synapse/admin/v1/users/"); n != 0 {
		t.Errorf("login-as sent %d times, want 0", n)
	}
}

func TestLoginAsSelfServerRefusal(t *testing.T) {
	f := newFake(t)
	f.serveFixture("admin_v1_user_login_as_self")
	// The client believes the admin is someone else, so the request reaches Synapse, which says 400.
	c, sl := newTestClient(t, f, func(cfg *Config) { cfg.AdminUserID = "@root:synapse.test" })
	_, err := c.Admin().LoginAsUser(ctxT(t), testAdminID, time.Time{})
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.ErrCode != "M_UNKNOWN" || e.Message != "Cannot use admin API to login as self" {
		t.Fatalf("err = %#v", err)
	}
	if !errors.Is(err, ErrLoginAsSelf) {
		t.Errorf("server's 400 should match ErrLoginAsSelf")
	}
	if e.Endpoint != "POST /_synapse/admin/v1/users/{userId}/login" {
		t.Errorf("endpoint = %q", e.Endpoint)
	}
	if len(f.seen()) != 1 || len(sl.get()) != 0 {
		t.Errorf("a 400 must not be retried")
	}
}

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

func TestFetchEventAndRoomMessagesOnNewServer(t *testing.T) {
	f := newFake(t)
	ev := fixtures.Load(t, "fed_event_a_latest")
	pdu := rawList(t, ev.Response.Body, "pdus")[0]
	fetchBody := []byte(`{"event": ` + string(pdu) + `}`)
	const eventID = "$gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0"
	f.handle("GET", "/_synapse/admin/v1/fetch_event/%24gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0", respond(200, fetchBody))
	bf := fixtures.Load(t, "fed_backfill_a")
	pdus := rawList(t, bf.Response.Body, "pdus")
	msgBody, _ := json.Marshal(map[string]any{"chunk": pdus[:5], "start": "t1", "end": "t2"})
	pdus = rawList(t, msgBody, "chunk") // the bytes as served
	f.handle("GET", "/_synapse/admin/v1/rooms/%21FxOZIdiZlcgPsSDLHo%3Asynapse.test/messages?raw=true&dir=b&limit=5", func(w http.ResponseWriter, r *http.Request) {
		respond(200, msgBody)(w, r)
	})
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.ServerVersion = "1.140.0rc1" })
	p, err := c.Admin().FetchEvent(ctxT(t), eventID)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Raw) != string(pdu) || p.Depth != 264 || p.Type != "m.room.message" {
		t.Errorf("fetched %s depth %d", p.Type, p.Depth)
	}
	page, err := c.Admin().RoomMessages(ctxT(t), "!FxOZIdiZlcgPsSDLHo:synapse.test", MessagesOptions{Dir: "b", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Chunk) != 5 || page.End != "t2" || string(page.Chunk[4].Raw) != string(pdus[4]) || page.Chunk[0].Depth != 264 {
		t.Errorf("page = %d events, end %q", len(page.Chunk), page.End)
	}
}

func TestUserMediaDecodesNullsAndSQLiteBooleans(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/_synapse/admin/v1/users/%40a%3Asynapse.test/media", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("order_by") != "created_ts" || r.URL.Query().Get("dir") != "f" {
			t.Errorf("query %s: want oldest first", r.URL.RawQuery)
		}
		io.WriteString(w, `{"media":[
			{"media_id":"AAAAAAAAAAAAAAAAAAAAAAAA","media_type":"image/png","media_length":12,"upload_name":null,"created_ts":5,"last_access_ts":null,"quarantined_by":null,"safe_from_quarantine":1},
			{"media_id":"BBBBBBBBBBBBBBBBBBBBBBBB","media_type":"text/plain","media_length":3,"upload_name":"a.txt","created_ts":6,"last_access_ts":7,"quarantined_by":"@admin:synapse.test","safe_from_quarantine":false,"sha256":"ab","authenticated":true}
		],"total":2}`)
	})
	c, _ := newTestClient(t, f)
	got, err := c.Admin().AllUserMedia(t.Context(), "@a:synapse.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []LocalMedia{
		{MediaID: "AAAAAAAAAAAAAAAAAAAAAAAA", MediaType: "image/png", MediaLength: 12, CreatedTS: 5, SafeFromQuarantine: true},
		{MediaID: "BBBBBBBBBBBBBBBBBBBBBBBB", MediaType: "text/plain", MediaLength: 3, UploadName: "a.txt", CreatedTS: 6, LastAccessTS: 7, QuarantinedBy: "@admin:synapse.test"},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}
