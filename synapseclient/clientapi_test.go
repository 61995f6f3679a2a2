package synapseclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
)

const puppetToken = "syt_YWxpY2U_puppet_secret"

func TestUserClientAgainstFixtures(t *testing.T) {
	f := newFake(t)
	names := []string{"client_profile_alice", "client_sync_global_and_room_account_data", "client_devices", "client_pushers",
		"client_pushrules", "client_room_a_tags", "client_keys_query", "client_room_keys_version", "client_room_keys_keys", "client_whoami_puppet"}
	recs := map[string]*fixtures.Recording{}
	for _, n := range names {
		recs[n] = f.serveFixture(n)
	}
	f.handle("GET", "/_matrix/client/v3/account/3pid", respond(200, []byte(`{"threepids":[{"medium":"email","address":"alice@example.org","validated_at":1,"added_at":2}]}`)))
	c, _ := newTestClient(t, f)
	u := c.User(puppetToken)
	ctx := ctxT(t)
	const alice = "@alice:synapse.test"

	who, err := u.WhoAmI(ctx)
	if err != nil || who.UserID != alice || who.DeviceID != "" {
		t.Errorf("whoami = %+v, %v", who, err)
	}
	prof, err := u.Profile(ctx, alice)
	if err != nil || prof.DisplayName == nil || *prof.DisplayName != "Alice Liddell" || !bytes.Equal(prof.Raw, recs["client_profile_alice"].Response.Body) {
		t.Errorf("profile = %+v, %v", prof, err)
	}
	sync, err := u.SyncAccountData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, e := range sync.Global {
		types[e.Type] = true
	}
	if !types["m.push_rules"] || !types["m.direct"] || !types["org.example.custom"] {
		t.Errorf("global account data types = %v", types)
	}
	if len(sync.Rooms) != 2 || len(sync.Rooms[roomA]) != 2 || sync.Rooms[roomA][0].Type != "m.tag" {
		t.Errorf("room account data = %+v", sync.Rooms)
	}
	devs, err := u.Devices(ctx)
	if err != nil || len(devs) != 2 || devs[0].LastSeenUserAgent != nil {
		t.Errorf("devices = %+v, %v", devs, err)
	}
	ps, err := u.Pushers(ctx)
	if err != nil || len(ps) != 1 {
		t.Errorf("pushers = %+v, %v", ps, err)
	}
	rules, err := u.PushRules(ctx)
	if err != nil || !bytes.Equal(rules, recs["client_pushrules"].Response.Body) {
		t.Errorf("push rules differ: %v", err)
	}
	tags, err := u.RoomTags(ctx, alice, roomA)
	var fav bytes.Buffer
	json.Compact(&fav, tags["m.favourite"])
	if err != nil || fav.String() != `{"order":0.25}` || tags["u.work"] == nil {
		t.Errorf("tags = %s, %v", tags, err)
	}
	tp, err := u.ThreePIDs(ctx)
	if err != nil || len(tp) != 1 || tp[0].Address != "alice@example.org" {
		t.Errorf("3pids = %+v, %v", tp, err)
	}
	keys, err := u.QueryKeys(ctx, alice)
	if err != nil || keys.DeviceKeys[alice]["ALICELAPTOP"] == nil || keys.MasterKeys == nil {
		t.Errorf("keys = %+v, %v", keys, err)
	}
	bv, err := u.RoomKeysVersion(ctx)
	if err != nil || bv == nil || bv.Version != "1" || bv.ETag != "1" || bv.Count != 1 || !strings.Contains(string(bv.AuthData), "public_key") {
		t.Errorf("backup = %+v, %v", bv, err)
	}
	rk, err := u.RoomKeys(ctx, "1")
	if err != nil || rk.Rooms["!STKJGUaaLthAaOOGaq:synapse.test"]["FAKESESSIONID0123456789abcdefghijklmnopqrstu"] == nil {
		t.Errorf("room keys = %+v, %v", rk, err)
	}

	byURI := map[string]seenRequest{}
	for _, r := range f.seen() {
		byURI[r.URI] = r
		if r.Auth != "Bearer "+puppetToken {
			t.Errorf("%s: Authorization %q", r.URI, r.Auth)
		}
	}
	for _, n := range names {
		rec := recs[n]
		r, ok := byURI[rec.Request.Path]
		if !ok {
			t.Errorf("%s: no request with the recorded URI %s", n, rec.Request.Path)
			continue
		}
		if len(rec.Request.Body) > 0 && string(rec.Request.Body) != "null" {
			var a, b any
			json.Unmarshal(r.Body, &a)
			json.Unmarshal(rec.Request.Body, &b)
			ab, _ := json.Marshal(a)
			bb, _ := json.Marshal(b)
			if string(ab) != string(bb) {
				t.Errorf("%s: body %s, recorded %s", n, ab, bb)
			}
		}
	}
}

func TestRoomKeysVersionNoBackup(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/_matrix/client/v3/room_keys/version", respond(404, []byte(`{"errcode":"M_NOT_FOUND","error":"No backup found"}`)))
	c, _ := newTestClient(t, f)
	bv, err := c.User(puppetToken).RoomKeysVersion(ctxT(t))
	if err != nil || bv != nil {
		t.Fatalf("no backup: %+v, %v", bv, err)
	}
}

func TestRoomKeysMissingVersion(t *testing.T) {
	f := newFake(t)
	rec := f.serveFixture("client_room_keys_keys_no_version")
	c, _ := newTestClient(t, f)
	if _, err := c.User(puppetToken).RoomKeys(ctxT(t), ""); err == nil || len(f.seen()) != 0 {
		t.Errorf("empty version should be refused locally: %v", err)
	}
	// The recorded 400 decodes as a typed error.
	e := newError("GET x", rec.Response.Status, rec.Response.Body, 0)
	if e.ErrCode != "M_MISSING_PARAM" {
		t.Errorf("errcode %q", e.ErrCode)
	}
}

func TestTokensNeverInErrors(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/_matrix/client/v3/devices", respond(401, []byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token passed."}`)))
	c, _ := newTestClient(t, f)
	_, err := c.User(puppetToken).Devices(ctxT(t))
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), puppetToken) || strings.Contains(err.Error(), "Bearer") {
		t.Errorf("error leaks the token: %q", err)
	}
	var e *Error
	if errors.As(err, &e) && (bytes.Contains(e.Body, []byte(puppetToken)) || e.Endpoint != "GET /_matrix/client/v3/devices") {
		t.Errorf("error = %+v", e)
	}
}

func TestAdminAsUserUsesAdminToken(t *testing.T) {
	f := newFake(t)
	f.serveFixture("client_profile_alice")
	c, _ := newTestClient(t, f)
	if _, err := c.AdminAsUser().Profile(ctxT(t), "@alice:synapse.test"); err != nil {
		t.Fatal(err)
	}
	if got := f.seen()[0].Auth; got != "Bearer "+testAdminToken {
		t.Errorf("Authorization = %q", got)
	}
}
