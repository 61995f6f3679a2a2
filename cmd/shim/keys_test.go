package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
)

const testConfig = "testdata/keys/shim.yaml"

func TestKeysPrintsSignedDocument(t *testing.T) {
	code, out, errOut := runShim(t, nil, "keys", "-config", testConfig)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	keys, _, err := signing.ReadKeyFile("testdata/keys/example.org.signing.key")
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte(strings.TrimSpace(out))
	if err := signing.VerifyJSON("example.org", keys[0].ID, keys[0].PublicKey(), doc); err != nil {
		t.Fatalf("document does not verify: %v\n%s", err, doc)
	}
	var parsed struct {
		ServerName   string `json:"server_name"`
		ValidUntilTS int64  `json:"valid_until_ts"`
	}
	if err := json.Unmarshal(doc, &parsed); err != nil || parsed.ServerName != "example.org" {
		t.Fatalf("document %s (%v)", doc, err)
	}
	until := time.UnixMilli(parsed.ValidUntilTS)
	if until.Before(time.Now().Add(23*time.Hour)) || until.After(time.Now().Add(25*time.Hour)) {
		t.Fatalf("valid_until_ts %v, want about a day ahead", until)
	}
}

func TestKeysConduitForm(t *testing.T) {
	code, out, errOut := runShim(t, nil, "keys", "-config", testConfig, "-conduit")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Keypair           string          `json:"keypair"`
		ServerSigningKeys json.RawMessage `json:"server_signingkeys"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(got.Keypair)
	if err != nil {
		t.Fatal(err)
	}
	version, der, ok := bytes.Cut(raw, []byte{0xff})
	if !ok || string(version) != "a_DeMo" {
		t.Fatalf("keypair %q", raw)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	keys, _, _ := signing.ReadKeyFile("testdata/keys/example.org.signing.key")
	if !priv.(ed25519.PrivateKey).Equal(keys[0].PrivateKey()) {
		t.Fatal("the DER holds another key")
	}
	if !strings.Contains(string(got.ServerSigningKeys), signing.EncodeBase64(keys[0].PublicKey())) {
		t.Fatalf("server_signingkeys lacks the public key: %s", got.ServerSigningKeys)
	}
}

func TestKeysReportsConfigProblems(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shim.yaml")
	os.WriteFile(cfg, []byte("signing_key_path: nope.key\nlog: {level: loud}\n"), 0o600)
	code, out, errOut := runShim(t, nil, "keys", "-config", cfg)
	if code != 2 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"server_name: required", "log.level: want"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %s", want, errOut)
		}
	}
}

func TestKeysWarnsAboutReadableKey(t *testing.T) {
	dir := t.TempDir()
	key, _ := os.ReadFile("testdata/keys/example.org.signing.key")
	os.WriteFile(filepath.Join(dir, "k.key"), key, 0o644)
	os.WriteFile(filepath.Join(dir, "shim.yaml"), []byte("server_name: example.org\nsigning_key_path: k.key\n"), 0o600)
	code, out, errOut := runShim(t, nil, "keys", "-config", filepath.Join(dir, "shim.yaml"))
	if code != 0 || !strings.Contains(errOut, "warning: signing key file") || strings.Contains(out, "warning") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if strings.Contains(out+errOut, strings.Fields(string(key))[2]) {
		t.Fatal("the seed was printed")
	}
}
