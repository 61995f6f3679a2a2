package synapseclient

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestProbeLoginAs(t *testing.T) {
	loginSelf := "/_synapse/admin/v1/users/" + escape(testAdminID) + "/login"
	for _, tc := range []struct {
		name      string
		status    int
		body      string
		available bool
		wantErr   string
	}{
		{"offered (Synapse refuses login as self)", 400, `{"errcode":"M_UNKNOWN","error":"Cannot use admin API to login as self"}`, true, ""},
		{"MAS deployment (servlet not registered)", 404, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`, false, ""},
		{"a proxy refuses it", 403, `{"errcode":"M_FORBIDDEN","error":"blocked"}`, false, ""},
		{"a token for the admin itself", 200, `{"access_token":"syt_x"}`, false, "something between the shim and Synapse"},
		{"server error", 400, `{"errcode":"M_UNKNOWN","error":"other"}`, false, "HTTP 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.handle("POST", loginSelf, respond(tc.status, []byte(tc.body)))
			c, _ := newTestClient(t, f)
			got, err := c.Admin().ProbeLoginAs(ctxT(t))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Available != tc.available || (got.Refusal == nil) == !tc.available {
				t.Fatalf("got %+v, want available=%v", got, tc.available)
			}
		})
	}
}

func TestAuthIssuer(t *testing.T) {
	f := newFake(t)
	c, _ := newTestClient(t, f)
	// Neither endpoint offered: Synapse handles logins itself.
	f.handle("GET", "/_matrix/client/v1/auth_metadata", respond(404, []byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)))
	f.handle("GET", "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer", respond(404, []byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)))
	if iss, err := c.Admin().AuthIssuer(ctxT(t)); err != nil || iss != "" {
		t.Fatalf("no delegation: %q, %v", iss, err)
	}
	f2 := newFake(t)
	c2, _ := newTestClient(t, f2)
	f2.handle("GET", "/_matrix/client/v1/auth_metadata", respond(404, []byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)))
	f2.handle("GET", "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer", respond(200, []byte(`{"issuer":"https://auth.example/"}`)))
	if iss, err := c2.Admin().AuthIssuer(ctxT(t)); err != nil || iss != "https://auth.example/" {
		t.Fatalf("msc2965: %q, %v", iss, err)
	}
	f3 := newFake(t)
	c3, _ := newTestClient(t, f3)
	f3.handle("GET", "/_matrix/client/v1/auth_metadata", respond(200, []byte(`{"issuer":"https://mas.example/","authorization_endpoint":"x"}`)))
	if iss, err := c3.Admin().AuthIssuer(ctxT(t)); err != nil || iss != "https://mas.example/" {
		t.Fatalf("auth_metadata: %q, %v", iss, err)
	}
	if n := f3.count("/_matrix/client/unstable/"); n != 0 {
		t.Errorf("unstable endpoint asked %d times after v1 answered", n)
	}
	var he *Error
	f4 := newFake(t)
	c4, _ := newTestClient(t, f4)
	f4.handle("GET", "/_matrix/client/v1/auth_metadata", respond(403, []byte(`{"errcode":"M_FORBIDDEN","error":"no"}`)))
	if _, err := c4.Admin().AuthIssuer(ctxT(t)); !errors.As(err, &he) || he.Status != 403 {
		t.Fatalf("403: %v", err)
	}
}

// The admin API's media list of Synapse 1.163.2 on SQLite (recorded): authenticated is 0/1 there.
func TestLocalMediaAuthenticatedAndSHA256(t *testing.T) {
	const recorded = `{"media":[{"media_id":"vIQvyvyjOPsKzwChHZbotkqg","media_type":"text/plain","media_length":11,"upload_name":"a.txt","created_ts":1796162257641,"url_cache":null,"last_access_ts":null,"quarantined_by":null,"safe_from_quarantine":false,"user_id":"@alice:mas.test","authenticated":1,"sha256":"d28d2954ff97ac68052c4beff8c84ad0960d1408540fc486256cdd7cd68dd1fe"}],"total":1}`
	var page LocalMediaPage
	if err := json.Unmarshal([]byte(recorded), &page); err != nil {
		t.Fatal(err)
	}
	m := page.Media[0]
	if !bool(m.Authenticated) || m.SHA256 != "d28d2954ff97ac68052c4beff8c84ad0960d1408540fc486256cdd7cd68dd1fe" {
		t.Fatalf("%+v", m)
	}
}
