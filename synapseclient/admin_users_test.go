package synapseclient

import (
	"errors"
	"fmt"
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
