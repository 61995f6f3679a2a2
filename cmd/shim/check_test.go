package main

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/preflight"
	"github.com/transition-matrix/transition-matrix/signing"
)

var (
	checkWorldsMu sync.Mutex
	checkWorlds   = map[bool]*world.World{}
)

// checkWorld is a small world with (or without) its version 1 room, generated once per binary.
func checkWorld(t *testing.T, withV1 bool) *world.World {
	t.Helper()
	checkWorldsMu.Lock()
	defer checkWorldsMu.Unlock()
	if w := checkWorlds[withV1]; w != nil {
		return w
	}
	w, err := world.Generate(world.Options{Seed: 21, Users: 1, Rooms: 1, MessagesPerRoom: 4, NoV1Room: !withV1})
	if err != nil {
		t.Fatal(err)
	}
	checkWorlds[withV1] = w
	return w
}

// checkConfig writes a configuration with keyFile as the signing key (Synapse's own when "") and
// the given admin token, pointing at url; it returns the configuration's path.
func checkConfig(t *testing.T, w *world.World, url, token, keyFile string) string {
	t.Helper()
	dir := t.TempDir()
	if keyFile == "" {
		keyFile = w.SigningKey.SynapseKeyFile()
	}
	if err := os.WriteFile(filepath.Join(dir, "signing.key"), []byte(keyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "server_name: " + w.ServerName + "\nsigning_key_path: signing.key\ncache:\n  path: cache\n" +
		"synapse:\n  url: " + url + "\n  admin_token: " + token + "\n"
	path := filepath.Join(dir, "shim.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkBoth runs shim check with a table and with -json and returns the exit statuses, the text,
// and the decoded report.
func checkBoth(t *testing.T, args ...string) (code int, text string, codeJSON int, rep preflight.Report, stderr string) {
	t.Helper()
	base := append([]string{"check", "-out", t.TempDir()}, args...)
	code, text, stderr = runShim(t, nil, base...)
	codeJSON, out, _ := runShim(t, nil, append(base, "-json")...)
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-json output is not a report: %v\n%s", err, out)
	}
	return code, text, codeJSON, rep, stderr
}

// assertBlockers checks that the JSON report holds exactly the wanted blockers (code and subject)
// and that the table names each of them too.
func assertBlockers(t *testing.T, text string, rep preflight.Report, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, f := range rep.Findings {
		if f.Severity == preflight.Blocker {
			got[f.Code] = f.Subject
			if !strings.Contains(text, f.Code) || (f.Subject != "" && !strings.Contains(text, f.Subject)) {
				t.Errorf("the table does not name blocker %s (%s):\n%s", f.Code, f.Subject, text)
			}
		}
	}
	if len(got) != len(want) || rep.Blockers != len(want) {
		t.Errorf("blockers %v (count %d), want %v", got, rep.Blockers, want)
	}
	for code, subject := range want {
		if s, ok := got[code]; !ok || (subject != "" && s != subject) {
			t.Errorf("blocker %s: subject %q, want %q", code, s, subject)
		}
	}
}

func TestCheckCommandCleanWorld(t *testing.T) {
	w := checkWorld(t, false)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	cfg := checkConfig(t, w, sim.URL, sim.AdminToken(), "")
	code, text, codeJSON, rep, stderr := checkBoth(t, "-config", cfg)
	if code != 0 || codeJSON != 0 || rep.ExitStatus != 0 {
		t.Fatalf("exit %d / %d (report %d)\n%s\n%s", code, codeJSON, rep.ExitStatus, text, stderr)
	}
	assertBlockers(t, text, rep, nil)
	for _, s := range []string{"Synapse 1.67.0", "ready to migrate", "room_no_local_member", "federation_self_accepted", "ADMIN ENDPOINT"} {
		if !strings.Contains(text, s) {
			t.Errorf("table lacks %q:\n%s", s, text)
		}
	}
	if rep.Users == nil || rep.Users.Total != len(w.Users) || rep.Rooms == nil || rep.Rooms.Total != len(w.Rooms) || len(rep.Disk) != 2 {
		t.Errorf("report counts: users %+v, rooms %+v, disk %+v", rep.Users, rep.Rooms, rep.Disk)
	}
	if strings.Contains(text+stderr, sim.AdminToken()) {
		t.Error("the admin token was printed")
	}
	if strings.Contains(text, "\x1b[") {
		t.Error("colours written to a non-terminal")
	}
}

func TestCheckCommandV1RoomAndAccept(t *testing.T) {
	w := checkWorld(t, true)
	v1 := w.RoomsOfKind(world.KindV1)[0].ID
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	cfg := checkConfig(t, w, sim.URL, sim.AdminToken(), "")
	code, text, codeJSON, rep, _ := checkBoth(t, "-config", cfg)
	if code != 1 || codeJSON != 1 || rep.ExitStatus != 1 || !strings.Contains(text, "not ready") {
		t.Fatalf("exit %d / %d\n%s", code, codeJSON, text)
	}
	assertBlockers(t, text, rep, map[string]string{preflight.CodeRoomVersionUnsupported: v1})

	code, text, codeJSON, rep, _ = checkBoth(t, "-config", cfg, "-accept", v1)
	if code != 0 || codeJSON != 0 || !strings.Contains(text, "ACCEPTED") {
		t.Fatalf("with -accept: exit %d / %d\n%s", code, codeJSON, text)
	}
	assertBlockers(t, text, rep, nil)
	if rep.Rooms.Accepted != 1 {
		t.Errorf("accepted rooms %d", rep.Rooms.Accepted)
	}
}

func TestCheckCommandWrongKey(t *testing.T) {
	w := checkWorld(t, false)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 9
	other := string(signing.FormatKeyFile([]signing.Key{{ID: "ed25519:a_Nope", Seed: seed}}))
	cfg := checkConfig(t, w, sim.URL, sim.AdminToken(), other)
	code, text, codeJSON, rep, _ := checkBoth(t, "-config", cfg)
	if code != 1 || codeJSON != 1 {
		t.Fatalf("exit %d / %d\n%s", code, codeJSON, text)
	}
	assertBlockers(t, text, rep, map[string]string{
		preflight.CodeSigningKeyMismatch:    "ed25519:a_Nope",
		preflight.CodeFederationSelfRefused: "GET /_matrix/federation/v1/query/profile",
	})
}

func TestCheckCommandFederationRefused(t *testing.T) {
	w := checkWorld(t, false)
	sim := synapsesim.Start(t, synapsesim.Options{World: w, FederationDomainWhitelist: []string{"friend.example"}})
	cfg := checkConfig(t, w, sim.URL, sim.AdminToken(), "")
	code, text, codeJSON, rep, _ := checkBoth(t, "-config", cfg)
	if code != 1 || codeJSON != 1 {
		t.Fatalf("exit %d / %d\n%s", code, codeJSON, text)
	}
	assertBlockers(t, text, rep, map[string]string{preflight.CodeFederationSelfRefused: ""})
	if !strings.Contains(text, "federation_domain_whitelist") {
		t.Errorf("no advice in the table:\n%s", text)
	}
}

func TestCheckCommandNonAdminToken(t *testing.T) {
	w := checkWorld(t, false)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	alice := w.User("@alice:" + w.ServerName)
	cfg := checkConfig(t, w, sim.URL, alice.Devices[0].AccessToken, "")
	code, text, codeJSON, rep, _ := checkBoth(t, "-config", cfg)
	if code != 1 || codeJSON != 1 {
		t.Fatalf("exit %d / %d\n%s", code, codeJSON, text)
	}
	assertBlockers(t, text, rep, map[string]string{preflight.CodeNoAdminAccess: "synapse.admin_token"})
	if !strings.Contains(text, alice.ID) || rep.Users != nil {
		t.Errorf("the table should name %s and the report have no counts:\n%s", alice.ID, text)
	}
}

func TestCheckCommandCannotRun(t *testing.T) {
	w := checkWorld(t, false)
	dead := httptest.NewServer(nil)
	deadURL := dead.URL
	dead.Close()
	unreachable := checkConfig(t, w, deadURL, "syt_x", "")

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("server_name: \"has space\"\nsynapse:\n  url: ftp://nowhere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noToken := filepath.Join(t.TempDir(), "notoken.yaml")
	if err := os.WriteFile(noToken, []byte("server_name: example.org\nsigning_key_path: "+
		filepath.Join(filepath.Dir(unreachable), "signing.key")+"\nsynapse:\n  url: http://127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, config, check string
		stderr              []string
	}{
		{"unreachable", unreachable, "reach", []string{deadURL, "connection refused"}},
		{"bad config", bad, "config", []string{"server_name", "signing_key_path", "synapse.url"}},
		{"no admin token", noToken, "config", []string{"synapse.admin_token (or synapse.admin_token_file): required"}},
		{"missing file", filepath.Join(t.TempDir(), "nope.yaml"), "config", []string{"nope.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, text, codeJSON, rep, stderr := checkBoth(t, "-config", c.config)
			if code != 2 || codeJSON != 2 || rep.ExitStatus != 2 {
				t.Fatalf("exit %d / %d (report %d)\nstdout %s\nstderr %s", code, codeJSON, rep.ExitStatus, text, stderr)
			}
			if len(rep.Errors) != 1 || rep.Errors[0].Check != c.check {
				t.Errorf("errors %+v, want one from %q", rep.Errors, c.check)
			}
			for _, s := range c.stderr {
				if !strings.Contains(stderr, s) || !strings.Contains(rep.Errors[0].Error, s) {
					t.Errorf("stderr %q / JSON error %q lacks %q", stderr, rep.Errors[0].Error, s)
				}
			}
			if text != "" {
				t.Errorf("a table was printed: %s", text)
			}
		})
	}
}

func TestCheckCommandUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string
		err  string
	}{
		{[]string{"check"}, 2, "", "-config is required"},
		{[]string{"check", "-config", "x", "-accept", "#alias:example.org"}, 2, "", "is not a room ID"},
		{[]string{"check", "-config", "x", "-timeout", "0s"}, 2, "", "-timeout must be positive"},
		{[]string{"check", "-h"}, 0, `"exit_status"`, ""},
		{[]string{"help", "check"}, 0, "room_version_unsupported", ""},
		{[]string{"help"}, 0, "check", ""},
	}
	for _, c := range cases {
		code, out, errOut := runShim(t, nil, c.args...)
		if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.err) {
			t.Errorf("shim %v: exit %d\nstdout %s\nstderr %s", c.args, code, out, errOut)
		}
	}
}
