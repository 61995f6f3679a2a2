package signing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	seedA = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	seedB = "nBUDYVmGp4ez3/hZi8DaOJeXvNlJ2RZ8vIqr0CM6QMQ"
)

func TestParseKeyFileVariants(t *testing.T) {
	cases := map[string]struct {
		text string
		ids  []KeyID
	}{
		"one key, unpadded":         {"ed25519 a_AbCd " + seedA + "\n", []KeyID{"ed25519:a_AbCd"}},
		"padded base64":             {"ed25519 a_AbCd " + seedA + "=\n", []KeyID{"ed25519:a_AbCd"}},
		"no trailing newline":       {"ed25519 a_AbCd " + seedA, []KeyID{"ed25519:a_AbCd"}},
		"auto version":              {"ed25519 auto " + seedA + "\n", []KeyID{"ed25519:auto"}},
		"blank lines and CRLF":      {"\n\r\ned25519 a_AbCd " + seedA + "\r\n\n  \ned25519 a_Efgh " + seedB + "\n\n", []KeyID{"ed25519:a_AbCd", "ed25519:a_Efgh"}},
		"several keys, first signs": {"ed25519 a_Efgh " + seedB + "\ned25519 a_AbCd " + seedA + "\n", []KeyID{"ed25519:a_Efgh", "ed25519:a_AbCd"}},
		"tabs between fields":       {"ed25519\ta_AbCd\t" + seedA + "\n", []KeyID{"ed25519:a_AbCd"}},
		"byte order mark":           {"\ufeffed25519 a_AbCd " + seedA + "\n", []KeyID{"ed25519:a_AbCd"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			keys, err := ParseKeyFile(strings.NewReader(c.text), "test.key")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(c.ids) {
				t.Fatalf("got %d keys, want %d", len(keys), len(c.ids))
			}
			for i, k := range keys {
				if k.ID != c.ids[i] || len(k.Seed) != 32 {
					t.Fatalf("key %d = %s (%d-byte seed)", i, k.ID, len(k.Seed))
				}
			}
		})
	}
	keys, _ := ParseKeyFile(strings.NewReader("ed25519 a_AbCd "+seedA), "k")
	if EncodeBase64(keys[0].PublicKey()) != specPublicKey {
		t.Fatal("seed decoded to the wrong key")
	}
}

func TestParseKeyFileErrors(t *testing.T) {
	cases := map[string]struct{ text, want string }{
		"empty file":          {"", "test.key: no signing key"},
		"only blank lines":    {"\n\n  \n", "no signing key"},
		"two fields":          {"ed25519 " + seedA, "test.key:1: want"},
		"four fields":         {"ed25519 a b " + seedA, "test.key:1: want"},
		"other algorithm":     {"\ncurve25519 a_x " + seedA, "test.key:2: unsupported key algorithm \"curve25519\""},
		"bad base64":          {"ed25519 a_x not*base64", "test.key:1: key seed is not base64"},
		"short seed":          {"ed25519 a_x AAAA", "test.key:1: key seed is 3 bytes, want 32"},
		"bad version":         {"ed25519 a-x " + seedA, "test.key:1: key version \"a-x\""},
		"duplicate key id":    {"ed25519 a_x " + seedA + "\ned25519 a_x " + seedB, "test.key:2: key ed25519:a_x already defined on line 1"},
		"legacy bare seed":    {seedA, "test.key:1: want"},
		"error on later line": {"ed25519 a_x " + seedA + "\n\nbroken", "test.key:3: want"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKeyFile(strings.NewReader(c.text), "test.key")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), seedA) || strings.Contains(err.Error(), seedB) {
				t.Fatal("error message leaks the seed")
			}
		})
	}
}

func TestReadKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hs.signing.key")
	if err := os.WriteFile(path, []byte("ed25519 a_AbCd "+seedA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, warnings, err := ReadKeyFile(path)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("0600 file: warnings %v, err %v", warnings, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	keys, warnings, err := ReadKeyFile(path)
	if err != nil || len(keys) != 1 {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "readable by group or others") || !strings.Contains(warnings[0], path) {
		t.Fatalf("0644 file: warnings %v", warnings)
	}
	if _, _, err := ReadKeyFile(filepath.Join(dir, "missing.key")); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestFormatKeyFileRoundTrip(t *testing.T) {
	keys, err := ParseKeyFile(strings.NewReader("ed25519 a_AbCd "+seedA+"\ned25519 a_Efgh "+seedB+"="), "k")
	if err != nil {
		t.Fatal(err)
	}
	out := FormatKeyFile(keys)
	// The spec's seed has non-zero trailing bits, so its canonical spelling ends in 0, not 1.
	if string(out) != "ed25519 a_AbCd "+seedA[:42]+"0\ned25519 a_Efgh "+seedB+"\n" {
		t.Fatalf("formatted %q", out)
	}
	again, err := ParseKeyFile(strings.NewReader(string(out)), "k")
	if err != nil || string(again[0].Seed) != string(keys[0].Seed) || string(again[1].Seed) != string(keys[1].Seed) {
		t.Fatalf("round trip changed the keys: %v", err)
	}
	if s := keys[0].String(); strings.Contains(s, seedA) || !strings.Contains(s, specPublicKey) {
		t.Fatalf("Key.String() = %q: must show the public key and never the seed", s)
	}
}

func TestParseOldSigningKeys(t *testing.T) {
	old, err := ParseOldSigningKeys(map[string]any{
		"ed25519:a_old2": map[string]any{"key": specPublicKey, "expired_ts": 1700000000000},
		"ed25519:a_old1": map[string]any{"key": specPublicKey + "=", "expired_ts": int64(1600000000000)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != 2 || old[0].ID != "ed25519:a_old1" || old[0].ExpiredTS != 1600000000000 || EncodeBase64(old[1].Public) != specPublicKey {
		t.Fatalf("got %+v", old)
	}
	_, err = ParseOldSigningKeys(map[string]any{
		"ed25519:a": map[string]any{"key": "short"},
		"rsa:b":     map[string]any{"key": specPublicKey, "expired_ts": 1},
		"ed25519:c": "not a map",
		"ed25519:d": map[string]any{"key": specPublicKey},
	})
	for _, want := range []string{"old_signing_keys.ed25519:a.key", "old_signing_keys.rsa:b", "old_signing_keys.ed25519:c", "old_signing_keys.ed25519:d.expired_ts"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want every problem reported, missing %q in %v", want, err)
		}
	}
}
