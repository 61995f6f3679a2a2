package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testSeed = "nBUDYVmGp4ez3/hZi8DaOJeXvNlJ2RZ8vIqr0CM6QMQ"

func writeFile(t *testing.T, dir, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDirectKey(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "keys/hs.key", "ed25519 a_Test "+testSeed+"\n", 0o600)
	writeFile(t, dir, "token", "syt_admin_secret\n", 0o600)
	path := writeFile(t, dir, "shim.yaml", `
server_name: ${NAME}
signing_key_path: keys/hs.key
synapse:
  url: http://127.0.0.1:8008
  admin_token_file: token
listen: 127.0.0.1:9448
allow_cidrs: [127.0.0.1/32, "::1"]
log: {level: debug, format: json}
`, 0o600)
	c, err := Load(path, env(map[string]string{"NAME": "hs.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "hs.example" || c.Identity.ServerName != "hs.example" || c.Identity.SigningKey().ID != "ed25519:a_Test" {
		t.Fatalf("identity %+v", c.Identity)
	}
	if c.Synapse.AdminToken != "syt_admin_secret" {
		t.Fatal("admin token not read from file")
	}
	if c.FederationURL() != "http://127.0.0.1:8008" {
		t.Fatalf("federation_url should default to synapse.url, got %q", c.FederationURL())
	}
	if c.Cache.Path != "shim-cache" || c.Log.Level != "debug" {
		t.Fatalf("defaults/overrides wrong: %+v", c)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("warnings for 0600 files: %v", c.Warnings)
	}
	if err := c.Require("synapse.url", "synapse.admin_token", "listen"); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(c.Synapse)
	if strings.Contains(string(out), "syt_admin_secret") || strings.Contains(fmt.Sprint(c.Synapse), "syt_admin_secret") {
		t.Fatalf("secret shown: %s", out)
	}
}

func TestLoadFromSynapseConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "synapse/hs.example.signing.key", "ed25519 a_New "+testSeed+"\n", 0o644)
	writeFile(t, dir, "synapse/homeserver.yaml", `
server_name: "hs.example"
old_signing_keys:
  "ed25519:a_Old": { key: "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI", expired_ts: 1600000000000 }
database: {name: sqlite3}
`, 0o600)
	path := writeFile(t, dir, "shim.yaml", "synapse_config: synapse/homeserver.yaml\n", 0o600)
	c, err := Load(path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	id := c.Identity
	if id.ServerName != "hs.example" || id.SigningKey().ID != "ed25519:a_New" || len(id.OldKeys) != 1 || id.OldKeys[0].ExpiredTS != 1600000000000 {
		t.Fatalf("identity %+v", id)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "hs.example.signing.key") {
		t.Fatalf("want a warning for the 0644 key file, got %v", c.Warnings)
	}

	// An explicit signing_key_path is relative to homeserver.yaml's folder.
	writeFile(t, dir, "synapse/keys/other.key", "ed25519 a_Rel "+testSeed+"\n", 0o600)
	writeFile(t, dir, "synapse/homeserver.yaml", "server_name: hs.example\nsigning_key_path: keys/other.key\n", 0o600)
	c, err = Load(path, env(nil))
	if err != nil || c.Identity.SigningKey().ID != "ed25519:a_Rel" {
		t.Fatalf("relative signing_key_path: %v", err)
	}

	// media_store_path comes from homeserver.yaml (relative to its folder) unless ours names one.
	writeFile(t, dir, "synapse/homeserver.yaml", "server_name: hs.example\nsigning_key_path: keys/other.key\nmedia_store_path: media\n", 0o600)
	if c, err = Load(path, env(nil)); err != nil || c.MediaStorePath() != filepath.Join(dir, "synapse", "media") {
		t.Fatalf("media_store_path from homeserver.yaml: %q, %v", c.MediaStorePath(), err)
	}
	path3 := writeFile(t, dir, "shim3.yaml", "synapse_config: synapse/homeserver.yaml\nsynapse:\n  media_store_path: /srv/media\n", 0o600)
	if c, err = Load(path3, env(nil)); err != nil || c.MediaStorePath() != "/srv/media" {
		t.Fatalf("our media_store_path wins: %q, %v", c.MediaStorePath(), err)
	}

	// server_name in our config must agree with Synapse's.
	path2 := writeFile(t, dir, "shim2.yaml", "synapse_config: synapse/homeserver.yaml\nserver_name: other.example\n", 0o600)
	if _, err := Load(path2, env(nil)); err == nil || !strings.Contains(err.Error(), `server_name: "other.example" differs`) {
		t.Fatalf("mismatched server_name: %v", err)
	}
}

func TestEveryProblemReportedAtOnce(t *testing.T) {
	_, err := Parse([]byte(`
server_name: "bad/name"
signing_key_path: x.key
synapse_config: homeserver.yaml
synapse:
  url: ftp://nope
  federation_url: "::"
  admin_token: syt_${MISSING_TOKEN}
  admin_token_file: token
  colour: blue
listen: "8448"
tls: {cert: c.pem}
allow_cidrs: [10.0.0.0/33, 127.0.0.1]
cache: {path: ""}
log: {level: loud, format: xml}
metrics: {listen: "9090"}
unknown_top: 1
`), ".", env(nil))
	if err == nil {
		t.Fatal("accepted a broken config")
	}
	for _, want := range []string{
		"server_name:", "signing_key_path: set either", "synapse.url: want an http", "synapse.federation_url:",
		"synapse.admin_token: environment variable MISSING_TOKEN is not set", "synapse.admin_token: set either",
		"synapse.colour: unknown key (line 10)", "listen: want host:port", "tls: set both", "allow_cidrs[0]", "cache.path: required",
		"log.level: want", "log.format: want", `metrics.listen: want host:port, got "9090"`, "unknown_top: unknown key",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "allow_cidrs[1]") {
		t.Errorf("a plain address is a valid allow_cidrs entry: %v", err)
	}
}

func TestResolveReportsAllFileProblems(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "shim.yaml", "server_name: hs.example\nsigning_key_path: missing.key\nsynapse: {admin_token_file: nope}\n", 0o600)
	_, err := Load(path, env(nil))
	if err == nil || !strings.Contains(err.Error(), "signing_key_path:") || !strings.Contains(err.Error(), "synapse.admin_token_file:") {
		t.Fatalf("err = %v", err)
	}
	writeFile(t, dir, "bad.key", "ed25519 a_x short\n", 0o600)
	path = writeFile(t, dir, "shim.yaml", "server_name: hs.example\nsigning_key_path: bad.key\n", 0o600)
	_, err = Load(path, env(nil))
	if err == nil || !strings.Contains(err.Error(), "bad.key:1: key seed is") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse([]byte("server_name: [unclosed"), ".", env(nil)); err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml"), env(nil)); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("err = %v", err)
	}
	c := Default()
	if err := c.Require("synapse.url", "synapse.admin_token"); err == nil || !strings.Contains(err.Error(), "synapse.url: required") || !strings.Contains(err.Error(), "synapse.admin_token (or") {
		t.Fatalf("Require: %v", err)
	}
}

func TestMetricsListen(t *testing.T) {
	const base = "server_name: hs.example\nsigning_key_path: k.key\nlisten: 127.0.0.1:8448\n"
	c, err := Parse([]byte(base), ".", env(nil))
	if err != nil || c.Metrics.Listen != "" {
		t.Fatalf("default: metrics off, got %q (%v)", c.Metrics.Listen, err)
	}
	for _, ok := range []string{"127.0.0.1:9464", ":9464", "[::1]:9464", "127.0.0.2:8448", "${METRICS}"} {
		c, err := Parse([]byte(base+"metrics:\n  listen: \""+ok+"\"\n"), ".", env(map[string]string{"METRICS": "localhost:9100"}))
		if err != nil {
			t.Errorf("metrics.listen %s: %v", ok, err)
		} else if c.Metrics.Listen == "" || strings.Contains(c.Metrics.Listen, "$") {
			t.Errorf("metrics.listen %s: parsed %q", ok, c.Metrics.Listen)
		}
	}
	for _, c := range []struct{ yaml, want string }{
		{"metrics: {listen: \"9464\"}", `metrics.listen: want host:port, got "9464"`},
		{"metrics: {listen: \"localhost:\"}", `metrics.listen: want host:port, got "localhost:"`},
		{"metrics: {listen: \"http://127.0.0.1:9464\"}", "metrics.listen: want host:port"},
		{"metrics: {listen: 127.0.0.1:8448}", `metrics.listen: "127.0.0.1:8448" clashes with listen "127.0.0.1:8448"`},
		{"metrics: {listen: \":8448\"}", `metrics.listen: ":8448" clashes with listen`},
		{"metrics: {listen: 0.0.0.0:8448}", "metrics.listen: \"0.0.0.0:8448\" clashes"},
		{"metrics: {port: 9464}", "metrics.port: unknown key (line 4)"},
		{"metrics: {listen: \"${UNSET}\"}", "metrics.listen: environment variable UNSET is not set"},
	} {
		_, err := Parse([]byte(base+c.yaml+"\n"), ".", env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.yaml, err, c.want)
		}
	}
}

func TestTarget(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "hs.key", "ed25519 a_Test "+testSeed+"\n", 0o600)
	writeFile(t, dir, "as-token", "as_secret_token\n", 0o640)
	path := writeFile(t, dir, "shim.yaml", "server_name: hs.example\nsigning_key_path: hs.key\ntarget: {url: \"http://127.0.0.1:6167\", token_file: as-token}\n", 0o600)
	c, err := Load(path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Target.URL != "http://127.0.0.1:6167" || c.Target.Token != "as_secret_token" {
		t.Fatalf("target %+v", c.Target)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "target token file") {
		t.Fatalf("want a warning for the 0640 token file, got %v", c.Warnings)
	}
	if err := c.Require("target.url", "target.token"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmt.Sprint(c.Target), "as_secret_token") {
		t.Fatal("target token shown")
	}
	if err := c.OverrideTargetURL("https://conduit.internal:8448"); err != nil || c.Target.URL != "https://conduit.internal:8448" {
		t.Fatalf("override: %v, %q", err, c.Target.URL)
	}
	if err := c.OverrideTargetURL(""); err != nil || c.Target.URL != "https://conduit.internal:8448" {
		t.Fatalf("an empty flag must keep the URL: %v, %q", err, c.Target.URL)
	}
	if err := c.OverrideTargetURL("conduit:6167"); err == nil || !strings.Contains(err.Error(), "-target: want an http") {
		t.Fatalf("bad override: %v", err)
	}

	_, err = Parse([]byte("server_name: hs.example\nsigning_key_path: k\ntarget: {url: \"ftp://x\", token: a, token_file: b, tokn: c}\n"), ".", env(nil))
	for _, want := range []string{"target.url: want an http", "target.token: set either", "target.tokn: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	missing := Default()
	err = missing.Require("target.url", "target.token")
	if err == nil || !strings.Contains(err.Error(), "target.url (or the -target flag): required") || !strings.Contains(err.Error(), "target.token (or target.token_file): required") {
		t.Fatalf("Require: %v", err)
	}
	writeFile(t, dir, "empty", "\n", 0o600)
	path = writeFile(t, dir, "shim.yaml", "server_name: hs.example\nsigning_key_path: hs.key\ntarget: {token_file: empty}\n", 0o600)
	if _, err := Load(path, env(nil)); err == nil || !strings.Contains(err.Error(), "target.token_file:") || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty token file: %v", err)
	}
}

func TestMediaStorePath(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "hs.key", "ed25519 a_Test "+testSeed+"\n", 0o600)
	path := writeFile(t, dir, "shim.yaml", "server_name: hs.example\nsigning_key_path: hs.key\nsynapse: {media_store_path: synapse/media}\n", 0o600)
	c, err := Load(path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.MediaStorePath() != filepath.Join(dir, "synapse/media") {
		t.Errorf("relative media_store_path resolved to %q", c.MediaStorePath())
	}
	if err := c.Require("synapse.media_store_path"); err != nil {
		t.Fatal(err)
	}
	c.Synapse.MediaStorePath = "/srv/media"
	if c.MediaStorePath() != "/srv/media" {
		t.Errorf("absolute path changed: %q", c.MediaStorePath())
	}
	unset := Default()
	if unset.MediaStorePath() != "" {
		t.Errorf("unset path resolved to %q", unset.MediaStorePath())
	}
	if err := unset.Require("synapse.media_store_path"); err == nil || !strings.Contains(err.Error(), "synapse.media_store_path: required") {
		t.Errorf("Require on an unset path: %v", err)
	}
}

func TestMASDelegationFromSynapseConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "hs.example.signing.key", "ed25519 a_New "+testSeed+"\n", 0o600)
	path := writeFile(t, dir, "shim.yaml", "synapse_config: homeserver.yaml\n", 0o600)
	for _, tc := range []struct {
		name, yaml string
		want       MASDelegation
	}{
		{"none", "server_name: hs.example\n", MASDelegation{}},
		{"disabled", "server_name: hs.example\nmatrix_authentication_service: {enabled: false, endpoint: http://mas:8080}\n", MASDelegation{}},
		{"1.136 and later", "server_name: hs.example\nmatrix_authentication_service:\n  enabled: true\n  endpoint: http://mas:8080/\n  secret_path: /x\n",
			MASDelegation{Enabled: true, Key: "matrix_authentication_service", Endpoint: "http://mas:8080/"}},
		{"msc3861 before 1.136", "server_name: hs.example\nexperimental_features:\n  msc3861: {enabled: true, issuer: https://auth.example/, client_id: x}\n",
			MASDelegation{Enabled: true, Key: "experimental_features.msc3861", Endpoint: "https://auth.example/"}},
	} {
		writeFile(t, dir, "homeserver.yaml", tc.yaml, 0o600)
		c, err := Load(path, env(nil))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.MAS != tc.want {
			t.Errorf("%s: MAS = %+v, want %+v", tc.name, c.MAS, tc.want)
		}
	}
}

// TestBrokenFileIsReportedWhole: one file with every kind of mistake is reported in one Load, each
// problem naming its key: unknown keys (top level and in a section), a missing key file, a missing
// token file, an unset variable, a wrong type, out-of-range ports, a bad URL, CIDR and log level,
// and TLS files that do not exist.
func TestBrokenFileIsReportedWhole(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "shim.yaml", `
server_name: hs.example
signing_key_path: keys/missing.key
synapse:
  url: ftp://synapse
  admin_token_file: missing_token
  admn_token: typo
lisen: 127.0.0.1:8448
listen: 127.0.0.1:99999
metrics:
  listen: localhost:70000
tls:
  cert: missing.crt
  key: missing.key
allow_cidrs: [10.0.0.0/33]
target:
  url: ${TARGET_URL}
cache:
  path: [not, a, string]
log:
  level: loud
`, 0o600)
	_, err := Load(path, env(nil))
	if err == nil {
		t.Fatal("a broken file loaded")
	}
	msg := err.Error()
	for _, want := range []string{
		"lisen: unknown key (line 8)",
		"synapse.admn_token: unknown key (line 7)",
		"signing_key_path: ",
		"missing.key",
		"synapse.admin_token_file: ",
		"target.url: environment variable TARGET_URL is not set",
		"cache.path",
		`listen: port "99999" of "127.0.0.1:99999" is not a number from 0 to 65535`,
		`metrics.listen: port "70000"`,
		"synapse.url: want an http:// or https:// URL",
		"allow_cidrs[0]: ",
		"log.level: ",
		"tls.cert: ",
		"tls.key: ",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the report lacks %q; it says:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 13 {
		t.Errorf("want one line for each of the 13 problems, got %d:\n%s", n, msg)
	}
}

func TestListenPortRange(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:8448": true, ":0": true, "[::1]:65535": true, "localhost:9090": true,
		"127.0.0.1:65536": false, "127.0.0.1:-1": false, "127.0.0.1:http": false, "127.0.0.1": false, "a b:80": false} {
		if err := checkListen(addr); (err == nil) != ok {
			t.Errorf("checkListen(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}
