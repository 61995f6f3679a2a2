package synapsesim

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestUserMediaStatisticsPagesLikeSynapse(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	want := s.LocalMedia()
	if len(want) < 2 {
		t.Fatalf("world has media for %d users; the test needs at least 2", len(want))
	}
	for id, items := range want {
		if a := w.User(id).Profile.AvatarURL; a != "" && !strings.HasPrefix(a, "mxc://"+w.ServerName+"/"+items[0].MediaID) {
			t.Errorf("%s: media %v is not its avatar %s", id, items, w.User(id).Profile.AvatarURL)
		}
	}
	seen := map[string]int64{}
	from := ""
	for page := 0; ; page++ {
		uri := "/_synapse/admin/v1/statistics/users/media?limit=1"
		if from != "" {
			uri += "&from=" + from
		}
		r := do(t, s, "GET", uri, s.AdminToken(), nil)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", uri, r.status, r.body)
		}
		users := gjson.GetBytes(r.body, "users").Array()
		if len(users) != 1 || gjson.GetBytes(r.body, "total").Int() != int64(len(want)) {
			t.Fatalf("page %d: %s", page, r.body)
		}
		u := users[0]
		if u.Get("media_count").Int() != int64(len(want[u.Get("user_id").String()])) || !u.Get("displayname").Exists() {
			t.Errorf("entry %s", u.Raw)
		}
		seen[u.Get("user_id").String()] = u.Get("media_length").Int()
		next := gjson.GetBytes(r.body, "next_token")
		if page == len(want)-1 {
			if next.Exists() {
				t.Fatalf("last page has next_token: %s", r.body)
			}
			break
		}
		if next.Type != gjson.Number {
			t.Fatalf("next_token is not an int: %s", r.body)
		}
		from = next.Raw
	}
	for id, items := range want {
		var n int64
		for _, m := range items {
			n += m.Length
		}
		if seen[id] != n {
			t.Errorf("%s: media_length %d, want %d", id, seen[id], n)
		}
	}
	r := do(t, s, "GET", "/_synapse/admin/v1/statistics/users/media", loginAs(t, s, "@alice:"+w.ServerName), nil)
	if r.status != 403 {
		t.Errorf("non-admin: %d %s", r.status, r.body)
	}
}

func TestFederationDomainWhitelistDeniesOwnName(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w, FederationDomainWhitelist: []string{"other.example"}})
	r := fed(t, s, "GET", "/_matrix/federation/v1/query/profile?user_id="+esc("@alice:"+w.ServerName), nil)
	if r.status != 403 || r.json(t)["errcode"] != "M_FORBIDDEN" || r.json(t)["error"] != "Federation denied with "+w.ServerName+"." {
		t.Fatalf("denied request: %d %s", r.status, r.body)
	}
	if r := fed(t, s, "GET", "/_matrix/federation/v1/version", nil); r.status != 200 {
		t.Errorf("unauthenticated /version: %d", r.status)
	}
	ok := Start(t, Options{World: w, FederationDomainWhitelist: []string{w.ServerName}})
	if r := fed(t, ok, "GET", "/_matrix/federation/v1/query/profile?user_id="+esc("@alice:"+w.ServerName), nil); r.status != 200 {
		t.Errorf("listed origin: %d %s", r.status, r.body)
	}
}
