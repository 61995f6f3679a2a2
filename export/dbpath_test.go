package export

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/synapsedb"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
)

// proxyAnswering puts a proxy in front of sim that answers the requests answer picks itself.
func proxyAnswering(t *testing.T, sim *synapsesim.Server, answer func(r *http.Request) (int, string, bool)) string {
	t.Helper()
	u, err := url.Parse(sim.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, body, ok := answer(r); ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func isLoginAs(r *http.Request) bool {
	p := r.URL.EscapedPath()
	return r.Method == "POST" && strings.HasPrefix(p, "/_synapse/admin/v1/users/") && strings.HasSuffix(p, "/login")
}

func TestExportRefusesWithoutLoginAsOrDatabase(t *testing.T) {
	sim := synapsesim.Start(t, synapsesim.Options{World: testWorld(t, smallWorld)})
	cfg := exportConfig(sim, t.TempDir())
	cfg.Synapse.BaseURL = proxyAnswering(t, sim, func(r *http.Request) (int, string, bool) {
		return 404, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`, isLoginAs(r)
	})
	_, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrLoginAsRefused) {
		t.Fatalf("err = %v, want ErrLoginAsRefused", err)
	}
	for _, m := range []string{"HTTP 404 M_UNRECOGNIZED", "Matrix Authentication Service", "-synapse-db"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("message lacks %q: %v", m, err)
		}
	}
}

func TestExportRefusesALockedAccountWithoutDatabase(t *testing.T) {
	w := testWorld(t, smallWorld)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	cfg := exportConfig(sim, t.TempDir())
	admin := "Bearer " + sim.AdminToken()
	// Synapse ≥ 1.93 answers a locked account's client requests with 401 M_USER_LOCKED, login-as
	// tokens included; here every user but the admin is locked that way.
	cfg.Synapse.BaseURL = proxyAnswering(t, sim, func(r *http.Request) (int, string, bool) {
		locked := strings.HasPrefix(r.URL.Path, "/_matrix/client/") && r.Header.Get("Authorization") != admin &&
			!strings.HasSuffix(r.URL.Path, "/logout")
		return 401, `{"errcode":"M_USER_LOCKED","error":"User account has been locked"}`, locked
	})
	cfg.MaxFailures = 100
	cfg.ItemAttempts = 1
	_, err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "is locked") || !strings.Contains(err.Error(), "-synapse-db") {
		t.Fatalf("err = %v, want the locked account named with the fix", err)
	}
}

// TestExportFallsBackPerUserWhenLoginAsIsRefused: login-as works, but a proxy refuses it for one
// user; with Synapse's database that user is read from it, the others still through login-as.
func TestExportFallsBackPerUserWhenLoginAsIsRefused(t *testing.T) {
	w := testWorld(t, smallWorld)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	var victim string
	for _, u := range w.Users[1:] {
		if !u.Deactivated && !u.Locked {
			victim = u.ID
			break
		}
	}
	cfg := exportConfig(sim, t.TempDir())
	cfg.Synapse.BaseURL = proxyAnswering(t, sim, func(r *http.Request) (int, string, bool) {
		return 403, `{"errcode":"M_FORBIDDEN","error":"login-as is blocked for this account"}`,
			isLoginAs(r) && strings.Contains(r.URL.Path, victim)
	})
	cfg.SynapseDB = openWorldDB(t, w)
	s := runExport(t, cfg)
	if s.FromSynapseDB != 1 || s.LoginTokens == 0 {
		t.Fatalf("%d users from the database (want 1), %d login-as tokens", s.FromSynapseDB, s.LoginTokens)
	}
	var u exportfmt.UserFile
	data, err := readExported(mustOpen(t, cfg.Dir), "users/"+exportfmt.Encode(victim)+".json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &u); err != nil {
		t.Fatal(err)
	}
	if u.ClientAPIAs != exportfmt.AsSynapseDB || u.AccountData.Global["m.push_rules"] == nil {
		t.Errorf("%s: client_api_as %q, push rules %s", victim, u.ClientAPIAs, u.AccountData.Global["m.push_rules"])
	}
}

func openWorldDB(t *testing.T, w *world.World) *synapsedb.DB {
	t.Helper()
	db, err := synapsedb.Open(context.Background(), synapsedbtest.WriteSQLite(t, w))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustOpen(t *testing.T, dir string) FS {
	t.Helper()
	fsys, closer, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })
	return fsys
}
