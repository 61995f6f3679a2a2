package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestInlineTokenInAReadableFileIsWarnedAbout(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "hs.key", "ed25519 a_Test "+testSeed+"\n", 0o600)
	const text = `
server_name: hs.example
signing_key_path: hs.key
synapse: {url: "http://127.0.0.1:8008", admin_token: syt_inline_secret}
target: {url: "http://127.0.0.1:6167", token: "${AS_TOKEN}"}
`
	for _, c := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o640, true}, {0o600, false}} {
		path := writeFile(t, dir, fmt.Sprintf("shim-%o.yaml", c.mode), text, c.mode)
		os.Chmod(path, c.mode) // past the umask
		cfg, err := Load(path, env(map[string]string{"AS_TOKEN": "as_secret"}))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(cfg.Warnings, "\n")
		if c.warn != strings.Contains(got, "synapse.admin_token is written in "+path) {
			t.Errorf("mode %04o: warnings %q", c.mode, got)
		}
		if strings.Contains(got, "target.token") || strings.Contains(got, "syt_inline_secret") {
			t.Errorf("mode %04o: a ${VAR} token warned about, or the secret shown: %q", c.mode, got)
		}
	}
}

func TestLimits(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "hs.key", "ed25519 a_Test "+testSeed+"\n", 0o600)
	base := "server_name: hs.example\nsigning_key_path: hs.key\n"
	c, err := Parse([]byte(base+`limits:
  max_header_bytes: 32768
  max_body_bytes: 262144
  header_read_timeout: 5s
  body_read_timeout: 20s
  max_body_readers: 2
  request_timeout: 90s
  idle_timeout: 1m
`), dir, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MaxHeaderBytes: 32768, MaxBodyBytes: 262144, HeaderReadTimeout: 5 * time.Second, BodyReadTimeout: 20 * time.Second,
		MaxBodyReaders: 2, RequestTimeout: 90 * time.Second, IdleTimeout: time.Minute}
	if c.Limits != want {
		t.Fatalf("limits %+v, want %+v", c.Limits, want)
	}
	_, err = Parse([]byte(base+"limits: {body_read_timeout: 30, max_body_readers: -1, request_timeout: -5s, size: 1}\n"), dir, env(nil))
	for _, msg := range []string{"limits.body_read_timeout: 30 has no unit", "limits.max_body_readers: want a positive number",
		"limits.request_timeout: want a positive duration", "limits.size: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("error %v does not say %q", err, msg)
		}
	}
}
