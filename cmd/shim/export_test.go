package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// exportSetup writes a config for a simulated Synapse and returns its path.
func exportSetup(t *testing.T, extra string) (string, *synapsesim.Server) {
	t.Helper()
	w, err := world.Generate(world.Options{Seed: 11, Users: 1, Rooms: 1, MessagesPerRoom: 5})
	if err != nil {
		t.Fatal(err)
	}
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "signing.key"), []byte(w.SigningKey.SynapseKeyFile()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "server_name: " + w.ServerName + "\nsigning_key_path: signing.key\nsynapse:\n  url: " + sim.URL + "\n" + extra
	path := filepath.Join(dir, "shim.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, sim
}

func TestExportCommand(t *testing.T) {
	path, sim := exportSetup(t, "  admin_token: ${ADMIN_TOKEN}\n")
	w := sim.World()
	out := filepath.Join(t.TempDir(), "export")
	env := map[string]string{"ADMIN_TOKEN": sim.AdminToken()}
	code, stdout, stderr := runShim(t, env, "export", "-config", path, "-out", out, "-j", "2")
	if code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, ": complete") || !strings.Contains(stdout, "login-as tokens") {
		t.Errorf("summary: %s", stdout)
	}
	if strings.Contains(stdout+stderr, sim.AdminToken()) {
		t.Error("the admin token was printed")
	}
	var m exportfmt.Manifest
	data, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if !m.Complete || len(m.Files) != len(w.Users)+len(w.Rooms) {
		t.Fatalf("manifest: complete %v, %d files", m.Complete, len(m.Files))
	}
	// A rerun keeps everything.
	code, stdout, _ = runShim(t, env, "export", "-config", path, "-out", out)
	if code != 0 || !strings.Contains(stdout, "kept from an earlier run") {
		t.Errorf("rerun: exit %d, %s", code, stdout)
	}
}

func TestExportCommandErrors(t *testing.T) {
	path, _ := exportSetup(t, "")
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"export", "-out", "x"}, 2, "-config is required"},
		{[]string{"export", "-config", path}, 2, "-out is required"},
		{[]string{"export", "-config", path, "-out", "x", "-j", "0"}, 2, "-j must be at least 1"},
		{[]string{"export", "-config", path, "-out", t.TempDir()}, 2, "synapse.admin_token (or synapse.admin_token_file): required"},
	}
	for _, c := range cases {
		code, _, stderr := runShim(t, nil, c.args...)
		if code != c.code || !strings.Contains(stderr, c.err) {
			t.Errorf("shim %v: exit %d, stderr %q", c.args, code, stderr)
		}
	}
}
