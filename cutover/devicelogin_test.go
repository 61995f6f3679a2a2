package cutover

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestRoomReadsGoThroughAnAppserviceDevice: like real Conduit 0.10.12, the fake answers 500 to
// /messages and /state from the appservice token alone; verify logs each member in through the
// appservice once, reads with that device, and Close logs every such device out.
func TestRoomReadsGoThroughAnAppserviceDevice(t *testing.T) {
	var mu sync.Mutex
	logins, logouts := map[string]int{}, map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		auth := r.Header.Get("Authorization")
		switch {
		case r.URL.Path == "/_matrix/client/v3/login" && auth == "Bearer as-token":
			var body struct {
				Type       string            `json:"type"`
				DeviceID   string            `json:"device_id"`
				Identifier map[string]string `json:"identifier"`
			}
			json.NewDecoder(r.Body).Decode(&body)
			if body.Type != "m.login.application_service" || body.DeviceID != DefaultDeviceID {
				t.Errorf("login %+v", body)
			}
			logins[body.Identifier["user"]]++
			w.Write([]byte(`{"access_token":"dev-` + body.Identifier["user"] + `","device_id":"` + body.DeviceID + `"}`))
		case r.URL.Path == "/_matrix/client/v3/logout" && auth == "Bearer dev-"+alice:
			logouts[alice]++
			w.Write([]byte(`{}`))
		case auth == "Bearer as-token":
			w.WriteHeader(500) // Conduit: "user is authenticated" panics without a device
		case auth == "Bearer dev-"+alice && r.URL.Query().Get("user_id") == "" && r.URL.Path == "/_matrix/client/v3/rooms/!r:example.org/messages":
			w.Write([]byte(`{"chunk":[{"event_id":"$a","type":"m.room.create","state_key":""}],"start":"s"}`))
		case auth == "Bearer dev-"+alice && r.URL.Path == "/_matrix/client/v3/rooms/!r:example.org/state":
			w.Write([]byte(`[{"event_id":"$a","type":"m.room.create","state_key":""}]`))
		default:
			t.Errorf("unexpected %s %s with %q", r.Method, r.URL, auth)
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	tg := &Client{BaseURL: srv.URL, Token: "as-token", Attempts: 1}
	for range 2 {
		if p, err := tg.Messages(ctx, "!r:example.org", alice, "", 100); err != nil || len(p.Chunk) != 1 {
			t.Fatalf("messages %+v %v", p, err)
		}
	}
	if st, err := tg.State(ctx, "!r:example.org", alice); err != nil || len(st) != 1 {
		t.Fatalf("state %+v %v", st, err)
	}
	if err := tg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if logins[alice] != 1 || logouts[alice] != 1 {
		t.Errorf("logins %v, logouts %v: want one of each", logins, logouts)
	}
}
