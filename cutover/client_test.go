package cutover

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestClient(t *testing.T) {
	var failures atomic.Int32
	failures.Store(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer as-token" {
			w.WriteHeader(401)
			w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown access token."}`))
			return
		}
		user := r.URL.Query().Get("user_id")
		switch {
		case r.URL.Path == "/_matrix/client/v3/account/whoami":
			w.Write([]byte(`{"user_id":"@transition:example.org"}`))
		case r.URL.EscapedPath() == "/_matrix/client/v3/rooms/%21r%2Fx:example.org/messages":
			if user != alice || r.URL.Query().Get("dir") != "b" || r.URL.Query().Get("limit") != "100" {
				t.Errorf("messages query %q", r.URL.RawQuery)
			}
			if failures.Add(-1) >= 0 {
				w.WriteHeader(502)
				return
			}
			if r.URL.Query().Get("from") == "" {
				w.Write([]byte(`{"chunk":[{"event_id":"$b","type":"m.room.message"},{"event_id":"$a","type":"m.room.create","state_key":""}],"start":"s","end":"t1"}`))
			} else {
				w.Write([]byte(`{"chunk":[],"start":"t1"}`))
			}
		case r.URL.Path == "/_matrix/client/v3/rooms/!gone:example.org/state":
			w.WriteHeader(403)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"not in room"}`))
		case r.URL.Path == "/_matrix/client/v3/room_keys/version":
			w.WriteHeader(404)
			w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"No backup found"}`))
		case r.URL.Path == "/_matrix/client/v3/keys/query" && r.Method == "POST":
			w.Write([]byte(`{"device_keys":{"@alice:example.org":{"AAA":{"device_id":"AAA"}}},"master_keys":{"@alice:example.org":{"usage":["master"]}},"failures":{}}`))
		case r.URL.EscapedPath() == "/_matrix/client/v3/user/@alice:example.org/rooms/%21r%2Fx:example.org/account_data/m.tag":
			w.Write([]byte(`{"tags":{}}`))
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"errcode":"M_UNRECOGNIZED"}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	tg := &Client{BaseURL: srv.URL + "/", Token: "as-token", Attempts: 2}
	if err := tg.Check(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := tg.Messages(ctx, "!r/x:example.org", alice, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Chunk) != 2 || p.Chunk[1].EventID != "$a" || *p.Chunk[1].StateKey != "" || p.End != "t1" {
		t.Errorf("page %+v", p)
	}
	if p, err = tg.Messages(ctx, "!r/x:example.org", alice, "t1", 100); err != nil || p.End != "" || len(p.Chunk) != 0 {
		t.Errorf("last page %+v, %v", p, err)
	}
	if _, err := tg.State(ctx, "!gone:example.org", alice); !errors.Is(err, ErrForbidden) {
		t.Errorf("state of a room not joined: %v", err)
	}
	if b, err := tg.KeyBackup(ctx, alice); b != nil || err != nil {
		t.Errorf("no backup: %v %v", b, err)
	}
	k, err := tg.QueryKeys(ctx, alice)
	if err != nil || string(k.DeviceKeys["AAA"]) != `{"device_id":"AAA"}` || !present(k.MasterKey) || present(k.SelfSigningKey) {
		t.Errorf("keys %+v %v", k, err)
	}
	if d, err := tg.AccountData(ctx, alice, "!r/x:example.org", "m.tag"); err != nil || string(d) != `{"tags":{}}` {
		t.Errorf("room account data %s %v", d, err)
	}
	if _, err := tg.AccountData(ctx, alice, "", "m.direct"); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent account data: %v", err)
	}
	bad := &Client{BaseURL: srv.URL, Token: "wrong", Attempts: 1}
	err = bad.Check(ctx)
	if err == nil || strings.Contains(err.Error(), "wrong") || !strings.Contains(err.Error(), "M_UNKNOWN_TOKEN") {
		t.Errorf("wrong token: %v", err)
	}
}
