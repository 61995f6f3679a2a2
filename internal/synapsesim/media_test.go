package synapsesim

import (
	"strconv"
	"testing"

	"github.com/tidwall/gjson"
)

func TestUserMediaListsTheWorldsUploads(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	alice := w.User("@alice:" + w.ServerName)
	if len(alice.Media) < 3 {
		t.Fatalf("alice has %d uploads; the test needs 3", len(alice.Media))
	}
	uri := "/_synapse/admin/v1/users/" + esc(alice.ID) + "/media"
	// Default order: newest first; pages of 2 with an int next_token.
	var got []gjson.Result
	from := ""
	for range len(alice.Media) + 1 {
		u := uri + "?limit=2"
		if from != "" {
			u += "&from=" + from
		}
		r := do(t, s, "GET", u, s.AdminToken(), nil)
		if r.status != 200 || gjson.GetBytes(r.body, "total").Int() != int64(len(alice.Media)) {
			t.Fatalf("%s: %d %s", u, r.status, r.body)
		}
		got = append(got, gjson.GetBytes(r.body, "media").Array()...)
		next := gjson.GetBytes(r.body, "next_token")
		if !next.Exists() {
			break
		}
		if next.Type != gjson.Number {
			t.Fatalf("next_token is not an int: %s", r.body)
		}
		from = next.Raw
	}
	if len(got) != len(alice.Media) {
		t.Fatalf("%d items over all pages, want %d", len(got), len(alice.Media))
	}
	for i, item := range got {
		m := alice.Media[len(alice.Media)-1-i] // the world keeps upload order
		if item.Get("media_id").String() != m.ID || item.Get("media_length").Int() != int64(len(m.Bytes)) ||
			item.Get("media_type").String() != m.ContentType || item.Get("created_ts").Int() != m.CreatedTS ||
			item.Get("upload_name").String() != m.UploadName || item.Get("safe_from_quarantine").Type != gjson.False {
			t.Errorf("item %d: %s, want %s", i, item.Raw, m.ID)
		}
		for _, k := range []string{"last_access_ts", "quarantined_by", "upload_name"} {
			if !item.Get(k).Exists() {
				t.Errorf("item %d lacks %s (null, not absent, in Synapse): %s", i, k, item.Raw)
			}
		}
	}
	r := do(t, s, "GET", uri+"?order_by=media_length&dir=f", s.AdminToken(), nil)
	items := gjson.GetBytes(r.body, "media").Array()
	for i := 1; i < len(items); i++ {
		if items[i-1].Get("media_length").Int() > items[i].Get("media_length").Int() {
			t.Errorf("order_by=media_length: %s", r.body)
		}
	}
	bob := w.User("@bob:" + w.ServerName)
	r = do(t, s, "GET", "/_synapse/admin/v1/users/"+esc(bob.ID)+"/media", s.AdminToken(), nil)
	quarantined := 0
	for _, item := range gjson.GetBytes(r.body, "media").Array() {
		if item.Get("quarantined_by").String() == w.Users[0].ID {
			quarantined++
		}
	}
	if quarantined != 1 {
		t.Errorf("bob's media: %d quarantined, want 1: %s", quarantined, r.body)
	}
	dave := w.User("@dave:" + w.ServerName)
	r = do(t, s, "GET", "/_synapse/admin/v1/users/"+esc(dave.ID)+"/media", s.AdminToken(), nil)
	if r.status != 200 || string(r.body) != `{"media":[],"total":0}` {
		t.Errorf("user without media: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		uri, token string
		status     int
		errcode    string
	}{
		{uri, loginAs(t, s, alice.ID), 403, "M_FORBIDDEN"},
		{"/_synapse/admin/v1/users/" + esc("@x:other.example") + "/media", s.AdminToken(), 400, "M_UNKNOWN"},
		{"/_synapse/admin/v1/users/" + esc("@nobody:"+w.ServerName) + "/media", s.AdminToken(), 404, "M_NOT_FOUND"},
		{uri + "?order_by=size", s.AdminToken(), 400, "M_INVALID_PARAM"},
		{uri + "?limit=-1", s.AdminToken(), 400, "M_INVALID_PARAM"},
	} {
		r := do(t, s, "GET", c.uri, c.token, nil)
		if r.status != c.status || gjson.GetBytes(r.body, "errcode").String() != c.errcode {
			t.Errorf("%s: %d %s, want %d %s", c.uri, r.status, r.body, c.status, c.errcode)
		}
	}
	if n := s.Stats()["admin.user_media"]; n < 3 {
		t.Errorf("stats count %d requests, want at least 3 (%s)", n, strconv.Itoa(n))
	}
}
