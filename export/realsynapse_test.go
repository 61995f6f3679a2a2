//go:build synapse

package export_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/export"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/synapseclient"
	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// refuseLoginAs is a proxy in front of Synapse that answers login-as as a Synapse does that hands
// its logins to the Matrix Authentication Service: the servlet is not registered, so 404
// M_UNRECOGNIZED. Everything else passes through unchanged.
func refuseLoginAs(t *testing.T, target string) (string, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		if r.Method == "POST" && strings.HasPrefix(p, "/_synapse/admin/v1/users/") && strings.HasSuffix(p, "/login") {
			refused.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &refused
}

// TestExportWithoutLoginAsMatchesLoginAs exports a seeded real Synapse twice, once with login-as
// and once through a proxy that refuses it with Synapse's database read instead, and compares
// every user file field by field.
func TestExportWithoutLoginAsMatchesLoginAs(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			s := synapsetest.Start(t, synapsetest.Options{Postgres: backend == "postgres"})
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			rec, err := synapsetest.Seed(ctx, s, synapsetest.SeedOptions{Messages: 5})
			if err != nil {
				t.Fatal(err)
			}
			waitDeactivationsParted(ctx, t, s, rec)
			scfg := func(url string) synapseclient.Config {
				return synapseclient.Config{BaseURL: url, AdminToken: s.AdminToken, ServerName: s.ServerName, Identity: s.Identity()}
			}
			dsn := s.DatabaseDSN
			if dsn == "" {
				dsn = s.DatabasePath
			}
			db, err := synapsedb.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			// The reference export uses login-as; the database only serves the locked account,
			// whose client API Synapse refuses even to a login-as token.
			withDir := t.TempDir()
			sumWith, err := export.Run(ctx, export.Config{Dir: withDir, Synapse: scfg(s.BaseURL), SynapseDB: db})
			if err != nil {
				t.Fatal(err)
			}
			locked := 0
			for _, u := range rec.Users {
				if u.Locked {
					locked++
				}
			}
			if sumWith.LoginTokens == 0 || sumWith.FromSynapseDB != int64(locked) {
				t.Fatalf("the reference export made %d login-as tokens and read %d users from the database (want the %d locked)", sumWith.LoginTokens, sumWith.FromSynapseDB, locked)
			}

			proxy, refused := refuseLoginAs(t, s.BaseURL)
			// Without Synapse's database the export refuses, naming the fix.
			_, err = export.Run(ctx, export.Config{Dir: t.TempDir(), Synapse: scfg(proxy)})
			if err == nil || !strings.Contains(err.Error(), "-synapse-db") || !strings.Contains(err.Error(), "M_UNRECOGNIZED") {
				t.Fatalf("export through the refusing proxy without -synapse-db: %v", err)
			}

			withoutDir := t.TempDir()
			sumWithout, err := export.Run(ctx, export.Config{Dir: withoutDir, Synapse: scfg(proxy), SynapseDB: db})
			if err != nil {
				t.Fatal(err)
			}
			if sumWithout.LoginTokens != 0 || refused.Load() == 0 {
				t.Fatalf("export without login-as made %d tokens; the proxy refused %d requests", sumWithout.LoginTokens, refused.Load())
			}
			if want := int64(sumWith.Users - 1); sumWithout.FromSynapseDB != want { // the admin reads its own data with its token
				t.Errorf("%d users read from the database, want %d", sumWithout.FromSynapseDB, want)
			}
			compareUserFiles(t, withDir, withoutDir, rec)
		})
	}
}

// waitDeactivationsParted waits until Synapse's background task has taken every deactivated
// account out of its rooms (it runs after the deactivation answered), so both exports see one state.
func waitDeactivationsParted(ctx context.Context, t *testing.T, s *synapsetest.Server, rec *synapsetest.Record) {
	t.Helper()
	for _, u := range rec.Users {
		if !u.Deactivated {
			continue
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var out struct {
				Total int `json:"total"`
			}
			if err := s.Do(ctx, "GET", "/_synapse/admin/v1/users/"+synapsetest.PathEscape(u.UserID)+"/joined_rooms", s.AdminToken, nil, &out); err != nil {
				t.Fatal(err)
			}
			if out.Total == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("deactivated %s is still in %d rooms after 2 minutes", u.UserID, out.Total)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// compareUserFiles decodes both exports' user files and reports every field that differs (except
// client_api_as, which says how each was read).
func compareUserFiles(t *testing.T, a, b string, rec *synapsetest.Record) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(a, "users", "*.json"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no user files in %s (%v)", a, err)
	}
	other, _ := filepath.Glob(filepath.Join(b, "users", "*.json"))
	if len(other) != len(names) {
		t.Fatalf("%d user files with login-as, %d without", len(names), len(other))
	}
	var withE2E, withBackup, withTags, withRules, differing int
	for _, name := range names {
		var x, y map[string]any
		for i, p := range []string{name, filepath.Join(b, "users", filepath.Base(name))} {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dst := &x
			if i == 1 {
				dst = &y
			}
			if err := json.Unmarshal(data, dst); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
		uid := x["uid"].(string)
		if x["client_api_as"] == "login_as" && y["client_api_as"] != "synapse_db" {
			t.Errorf("%s: client_api_as %v without login-as", uid, y["client_api_as"])
		}
		delete(x, "client_api_as")
		delete(y, "client_api_as")
		var diffs []string
		diff("", x, y, &diffs)
		for _, d := range diffs {
			t.Errorf("%s: %s", uid, d)
		}
		if len(diffs) > 0 {
			differing++
		}
		e2e := x["e2e"].(map[string]any)
		if len(e2e["device_keys"].(map[string]any)) > 0 && e2e["master_key"] != nil {
			withE2E++
		}
		if e2e["key_backup"] != nil {
			withBackup++
		}
		ad := x["account_data"].(map[string]any)
		for _, r := range ad["rooms"].(map[string]any) {
			if _, ok := r.(map[string]any)["m.tag"]; ok {
				withTags++
			}
		}
		if u := rec.Users[uid]; u != nil && u.PushRuleID != "" && strings.Contains(fmt.Sprint(ad["global"].(map[string]any)["m.push_rules"]), u.PushRuleID) {
			withRules++
		}
	}
	// The comparison means something only if the seeded world holds what the database path reads.
	if withE2E == 0 || withBackup == 0 || withTags == 0 || withRules == 0 {
		t.Errorf("compared files hold too little: %d users with device and cross-signing keys, %d with a backup, %d tagged rooms, %d with the seeded push rule",
			withE2E, withBackup, withTags, withRules)
	}
	t.Logf("%d of %d user files identical field by field (%d with E2EE keys, %d with a backup, %d tagged rooms)", len(names)-differing, len(names), withE2E, withBackup, withTags)
}

// diff appends a line for every path where a and b differ.
func diff(path string, a, b any, out *[]string) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			av, ain := am[k]
			bv, bin := bm[k]
			switch {
			case !ain:
				*out = append(*out, fmt.Sprintf("%s.%s: only without login-as: %s", path, k, short(bv)))
			case !bin:
				*out = append(*out, fmt.Sprintf("%s.%s: only with login-as: %s", path, k, short(av)))
			default:
				diff(path+"."+k, av, bv, out)
			}
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, fmt.Sprintf("%s: with login-as %s, without %s", path, short(a), short(b)))
	}
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
