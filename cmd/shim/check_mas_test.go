package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/preflight"
)

// TestCheckCommandCompromisedESSKeyAndMAS: homeserver.yaml names the Element Server Suite key in
// old_signing_keys and enables MAS; shim check exits 1 with the key as a blocker and MAS as a
// warning saying what is carried.
func TestCheckCommandCompromisedESSKeyAndMAS(t *testing.T) {
	w := checkWorld(t, false)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "synapse.signing.key"), []byte(w.SigningKey.SynapseKeyFile()), 0o600); err != nil {
		t.Fatal(err)
	}
	hs := "server_name: " + w.ServerName + "\nsigning_key_path: synapse.signing.key\n" +
		"old_signing_keys:\n  \"ed25519:ess\": {key: \"l/O9hxMVKB6Lg+3Hqf0FQQZhVESQcMzbPN1Cz2nM3og\", expired_ts: 1750000000000}\n" +
		"matrix_authentication_service:\n  enabled: true\n  endpoint: http://127.0.0.1:1/\n  secret_path: /nonexistent\n"
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(hs), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "shim.yaml")
	if err := os.WriteFile(cfg, []byte("synapse_config: homeserver.yaml\ncache:\n  path: cache\nsynapse:\n  url: "+sim.URL+"\n  admin_token: "+sim.AdminToken()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, text, codeJSON, rep, stderr := checkBoth(t, "-config", cfg)
	if code != 1 || codeJSON != 1 || rep.ExitStatus != 1 {
		t.Fatalf("exit %d / %d (report %d), want 1\n%s\n%s", code, codeJSON, rep.ExitStatus, text, stderr)
	}
	// The simulated Synapse publishes only its current key: the configured old key is what names it.
	assertBlockers(t, text, rep, map[string]string{preflight.CodeCompromisedKey: "ed25519:ess"})
	var mas *preflight.Finding
	for i, f := range rep.Findings {
		if f.Code == preflight.CodeMASDeployment {
			mas = &rep.Findings[i]
		}
		if f.Code == preflight.CodeCompromisedKey {
			for _, m := range []string{"old_signing_keys", "ignored_keys", "generate_signing_key"} {
				if !strings.Contains(f.Message, m) {
					t.Errorf("blocker message lacks the fix %q: %s", m, f.Message)
				}
			}
		}
	}
	if mas == nil || mas.Severity != preflight.Warning || !strings.Contains(mas.Message, "matrix_authentication_service") || !strings.Contains(mas.Message, "-mas-db") {
		t.Errorf("MAS finding %+v", mas)
	}
	if !strings.Contains(text, "compromised_signing_key") || !strings.Contains(text, "mas_deployment") {
		t.Errorf("table lacks the findings:\n%s", text)
	}
}
