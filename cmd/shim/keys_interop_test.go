//go:build interop

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeysInteropWithSynapseTooling generates a key with Synapse's own library (signedjson), runs
// `shim keys` on it, and checks the results there: the key document's signature with signedjson,
// the Conduit DER with OpenSSL. Needs Debian's python3-signedjson and python3-cryptography.
func TestKeysInteropWithSynapseTooling(t *testing.T) {
	py := "/usr/bin/python3"
	script, _ := filepath.Abs("testdata/interop/synapse_keys.py")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "interop.test.signing.key")
	if out, err := exec.Command(py, script, "generate", keyFile, "a_PyGn").CombinedOutput(); err != nil {
		t.Fatalf("signedjson key generation: %v\n%s", err, out)
	}
	os.Chmod(keyFile, 0o600)
	// Reach the key through a homeserver.yaml, as an operator would.
	hs := "server_name: interop.test\nsigning_key_path: " + filepath.Base(keyFile) + "\n"
	os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(hs), 0o600)
	cfg := filepath.Join(dir, "shim.yaml")
	os.WriteFile(cfg, []byte("synapse_config: homeserver.yaml\n"), 0o600)

	code, doc, errOut := runShim(t, nil, "keys", "-config", cfg)
	if code != 0 {
		t.Fatalf("shim keys: %s", errOut)
	}
	code, conduit, errOut := runShim(t, nil, "keys", "-config", cfg, "-conduit")
	if code != 0 {
		t.Fatalf("shim keys -conduit: %s", errOut)
	}
	docPath, conduitPath := filepath.Join(dir, "doc.json"), filepath.Join(dir, "conduit.json")
	os.WriteFile(docPath, []byte(doc), 0o600)
	os.WriteFile(conduitPath, []byte(conduit), 0o600)
	out, err := exec.Command(py, script, "check", keyFile, docPath, conduitPath, "interop.test").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok ed25519:a_PyGn") {
		t.Fatalf("Synapse's tooling rejects our output: %v\n%s", err, out)
	}
}
