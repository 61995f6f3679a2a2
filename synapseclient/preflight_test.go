package synapseclient

import (
	"errors"
	"testing"
)

func TestLocalMediaTotalsFollowsIntNextToken(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/_synapse/admin/v1/statistics/users/media?limit=2", respond(200, []byte(
		`{"users":[{"displayname":"A","media_count":2,"media_length":100,"user_id":"@a:synapse.test"},`+
			`{"displayname":null,"media_count":1,"media_length":34,"user_id":"@b:synapse.test"}],"next_token":2,"total":3}`)))
	f.handle("GET", "/_synapse/admin/v1/statistics/users/media?from=2&limit=2", respond(200, []byte(
		`{"users":[{"displayname":"C","media_count":5,"media_length":1000,"user_id":"@c:synapse.test"}],"total":3}`)))
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.PageSize = 2 })
	got, err := c.Admin().LocalMediaTotals(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if *got != (MediaTotals{Users: 3, Count: 8, Bytes: 1134}) {
		t.Errorf("totals = %+v", *got)
	}
	if n := f.count("/_synapse/admin/v1/statistics/users/media"); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
	page, err := c.Admin().UserMediaStatistics(ctxT(t), 0, 2)
	if err != nil || page.NextToken == nil || *page.NextToken != 2 || page.Users[1].DisplayName != nil {
		t.Errorf("page = %+v, %v", page, err)
	}
}

func TestLocalMediaTotalsRejectsAStuckToken(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/_synapse/admin/v1/statistics/users/media", respond(200, []byte(
		`{"users":[{"media_count":1,"media_length":1,"user_id":"@a:synapse.test"}],"next_token":0,"total":9}`)))
	c, _ := newTestClient(t, f)
	if _, err := c.Admin().LocalMediaTotals(ctxT(t)); err == nil {
		t.Fatal("a next_token that does not advance was accepted")
	}
}

func TestQueryProfileIsSignedAndTyped(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/_matrix/federation/v1/query/profile?user_id=%40alice%3Asynapse.test&field=displayname",
		respond(200, []byte(`{"displayname":"Alice"}`)))
	f.handle("GET", "/_matrix/federation/v1/query/profile?user_id=%40nobody%3Asynapse.test",
		respond(404, []byte(`{"errcode":"M_NOT_FOUND","error":"Profile was not found"}`)))
	f.handle("GET", "/_matrix/federation/v1/query/profile?user_id=%40denied%3Asynapse.test",
		respond(403, []byte(`{"errcode":"M_FORBIDDEN","error":"Federation denied with synapse.test."}`)))
	c, _ := newTestClient(t, f)
	p, err := c.Federation().QueryProfile(ctxT(t), "@alice:synapse.test", "displayname")
	if err != nil || p.DisplayName == nil || *p.DisplayName != "Alice" || string(p.Raw) != `{"displayname":"Alice"}` {
		t.Fatalf("profile = %+v, %v", p, err)
	}
	if _, err := c.Federation().QueryProfile(ctxT(t), "@nobody:synapse.test", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	_, err = c.Federation().QueryProfile(ctxT(t), "@denied:synapse.test", "")
	var e *Error
	if !errors.Is(err, ErrForbidden) || !errors.As(err, &e) || e.Message != "Federation denied with synapse.test." {
		t.Errorf("denied: %v", err)
	}
	f.assertSigned()
}
