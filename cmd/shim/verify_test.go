package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/eventcache"
)

// verifySetup writes a configuration (server example.org, the given extra keys) and an empty,
// complete export of serverName; it returns the config path and the export directory.
func verifySetup(t *testing.T, serverName, extra string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	key := "ed25519 a_test " + strings.Repeat("A", 43) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "signing.key"), []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "server_name: example.org\nsigning_key_path: signing.key\ncache:\n  path: cache.db\nlog:\n  level: error\n" + extra
	cfgPath := filepath.Join(dir, "shim.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	exp := filepath.Join(dir, "export")
	manifest := `{"format":"transition-matrix-export","format_version":1,"server_name":"` + serverName +
		`","complete":true,"files":{},"started_at":"2026-01-01T00:00:00Z"}`
	if err := os.MkdirAll(exp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(exp, "manifest.json"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, exp
}

// closedURL is an http:// URL nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestVerifyCommandErrors(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer as-token" {
			w.WriteHeader(401)
			w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown access token."}`))
			return
		}
		w.Write([]byte(`{"user_id":"@transition:example.org"}`))
	}))
	defer target.Close()
	good := "target:\n  url: " + target.URL + "\n  token: as-token\n"
	cfg, exp := verifySetup(t, "example.org", good)
	other, otherExp := verifySetup(t, "other.test", good)
	noTarget, _ := verifySetup(t, "example.org", "")
	wrongToken, _ := verifySetup(t, "example.org", "target:\n  url: "+target.URL+"\n  token: nope\n")
	synapseDown, _ := verifySetup(t, "example.org", good+"synapse:\n  url: "+closedURL(t)+"\n  admin_token: adm\n")
	out := filepath.Join(t.TempDir(), "report")

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no export", []string{"-config", cfg}, 2, "-export is required"},
		{"no target", []string{"-config", noTarget, "-export", exp}, 2, "target.url (or the -target flag): required"},
		{"bad -target", []string{"-config", cfg, "-export", exp, "-target", "conduit:6167"}, 2, "-target: want an http"},
		{"no manifest", []string{"-config", cfg, "-export", t.TempDir()}, 2, "no manifest"},
		{"other server", []string{"-config", other, "-export", otherExp}, 2, "is of other.test, the configuration of example.org"},
		{"synapse down", []string{"-config", synapseDown, "-export", exp, "-out", out}, 2, "rerun with -offline"},
		{"target down", []string{"-config", cfg, "-export", exp, "-target", closedURL(t), "-out", out}, 2, "the target at http://127.0.0.1:"},
		{"wrong token", []string{"-config", wrongToken, "-export", exp, "-out", out}, 2, "M_UNKNOWN_TOKEN"},
		{"nothing to compare", []string{"-config", synapseDown, "-export", exp, "-offline", "-out", out}, 0, "Everything arrived: 0 events in 0 rooms, 0 users."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runShim(t, nil, append([]string{"verify"}, c.args...)...)
			if code != c.code || !strings.Contains(stdout+stderr, c.want) {
				t.Fatalf("exit %d (want %d)\nstdout %s\nstderr %s\nwant %q", code, c.code, stdout, stderr, c.want)
			}
			if strings.Contains(stdout+stderr, "as-token") || strings.Contains(stdout+stderr, "adm\n") {
				t.Error("a token was printed")
			}
		})
	}
	if _, err := os.Stat(filepath.Join(out, "report.json")); err != nil {
		t.Errorf("the successful run wrote no report.json: %v", err)
	}
}

// TestVerifyCacheHeldWithoutServe: when another process holds the cache and no serve answers
// beside it, verify stops with exit 2 naming -scratch-cache, and writes nothing to $TMPDIR.
func TestVerifyCacheHeldWithoutServe(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"user_id":"@transition:example.org"}`))
	}))
	defer target.Close()
	cfg, exp := verifySetup(t, "example.org", "target:\n  url: "+target.URL+"\n  token: as-token\n")
	held, err := eventcache.Open(filepath.Join(filepath.Dir(cfg), "cache.db"), eventcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	code, _, errOut := runShim(t, nil, "verify", "-config", cfg, "-export", exp, "-offline", "-out", filepath.Join(t.TempDir(), "r"))
	if code != exitCannotRun || !strings.Contains(errOut, "is held by another process") || !strings.Contains(errOut, "-scratch-cache DIR") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("verify wrote to $TMPDIR: %v", entries)
	}
}
