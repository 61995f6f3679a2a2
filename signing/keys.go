// Package signing holds a Synapse server's signing identity and everything that must be byte-exact
// with Synapse: its key files, canonical JSON signatures, X-Matrix request authentication, the
// published key document, and the forms Conduit stores the key in.
package signing

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// KeyID names a key as "<algorithm>:<version>", e.g. "ed25519:a_AbCd".
type KeyID string

// Version is the part of the key ID after the algorithm.
func (id KeyID) Version() string {
	_, v, _ := strings.Cut(string(id), ":")
	return v
}

// Key is one Ed25519 signing key of the server.
type Key struct {
	ID   KeyID
	Seed []byte // the 32-byte Ed25519 seed, as stored in Synapse's key file
}

// PrivateKey expands the seed to a full Ed25519 private key.
func (k Key) PrivateKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(k.Seed) }

// PublicKey derives the Ed25519 public key.
func (k Key) PublicKey() ed25519.PublicKey {
	return k.PrivateKey().Public().(ed25519.PublicKey)
}

// String never shows the seed, so a Key can be logged safely.
func (k Key) String() string { return string(k.ID) + " (public " + EncodeBase64(k.PublicKey()) + ")" }

// OldKey is a retired public key that the server still publishes so its old signatures verify.
type OldKey struct {
	ID        KeyID
	Public    ed25519.PublicKey
	ExpiredTS int64 // milliseconds since the epoch
}

// Identity is a server name with its signing keys; Keys[0] signs, every key is published.
type Identity struct {
	ServerName string
	Keys       []Key
	OldKeys    []OldKey
}

// SigningKey returns the key that signs everything (the first line of Synapse's key file).
func (id *Identity) SigningKey() Key { return id.Keys[0] }

// PublicKey returns the public key for keyID among current and old keys, and whether it is current.
func (id *Identity) PublicKey(keyID KeyID) (pub ed25519.PublicKey, current bool, ok bool) {
	for _, k := range id.Keys {
		if k.ID == keyID {
			return k.PublicKey(), true, true
		}
	}
	for _, k := range id.OldKeys {
		if k.ID == keyID {
			return k.Public, false, true
		}
	}
	return nil, false, false
}

// EncodeBase64 is unpadded standard base64, the encoding Matrix uses for keys and signatures.
func EncodeBase64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// DecodeBase64 accepts standard or URL-safe base64, padded or not, as Synapse's readers do.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// ReadKeyFile reads a Synapse signing key file. Warnings (such as a key file readable by others)
// are returned beside the keys; they do not stop the caller.
func ReadKeyFile(path string) (keys []Key, warnings []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("signing key file: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		warnings = append(warnings, fmt.Sprintf("signing key file %s is readable by group or others (mode %04o): run chmod 600 on it", path, st.Mode().Perm()))
	}
	keys, err = ParseKeyFile(f, path)
	return keys, warnings, err
}

// ParseKeyFile parses lines of "ed25519 <version> <base64 seed>"; blank lines are skipped and every
// error names the file and line. A version of "auto" is kept as is, as old Synapse servers use it.
func ParseKeyFile(r io.Reader, name string) ([]Key, error) {
	var keys []Key
	seen := map[KeyID]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
		if text == "" {
			continue
		}
		fields := strings.Fields(text)
		where := fmt.Sprintf("%s:%d", name, line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s: want \"ed25519 <version> <base64 seed>\", got %d fields", where, len(fields))
		}
		if fields[0] != "ed25519" {
			return nil, fmt.Errorf("%s: unsupported key algorithm %q (only ed25519)", where, fields[0])
		}
		if !validKeyVersion(fields[1]) {
			return nil, fmt.Errorf("%s: key version %q may hold only letters, digits and _", where, fields[1])
		}
		seed, err := DecodeBase64(fields[2])
		if err != nil {
			return nil, fmt.Errorf("%s: key seed is not base64: %v", where, err)
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("%s: key seed is %d bytes, want %d", where, len(seed), ed25519.SeedSize)
		}
		id := KeyID("ed25519:" + fields[1])
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("%s: key %s already defined on line %d", where, id, prev)
		}
		seen[id] = line
		keys = append(keys, Key{ID: id, Seed: seed})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no signing key in the file", name)
	}
	return keys, nil
}

func validKeyVersion(v string) bool {
	if v == "" {
		return false
	}
	for _, c := range v {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// FormatKeyFile writes keys in Synapse's key file format (unpadded base64 seeds).
func FormatKeyFile(keys []Key) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "ed25519 %s %s\n", k.ID.Version(), EncodeBase64(k.Seed))
	}
	return b.Bytes()
}

// ParseOldSigningKeys reads homeserver.yaml's old_signing_keys value,
// {"ed25519:id": {"key": "<base64 public key>", "expired_ts": <ms>}}, sorted by key ID.
func ParseOldSigningKeys(raw map[string]any) ([]OldKey, error) {
	var errs []error
	var out []OldKey
	for id, v := range raw {
		m, ok := v.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("old_signing_keys.%s: want a mapping with key and expired_ts", id))
			continue
		}
		if !strings.HasPrefix(id, "ed25519:") || !validKeyVersion(strings.TrimPrefix(id, "ed25519:")) {
			errs = append(errs, fmt.Errorf("old_signing_keys.%s: key ID must look like ed25519:<version>", id))
			continue
		}
		keyStr, _ := m["key"].(string)
		pub, err := DecodeBase64(keyStr)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			errs = append(errs, fmt.Errorf("old_signing_keys.%s.key: want a base64 Ed25519 public key", id))
			continue
		}
		ts, ok := toInt64(m["expired_ts"])
		if !ok {
			errs = append(errs, fmt.Errorf("old_signing_keys.%s.expired_ts: want a timestamp in milliseconds", id))
			continue
		}
		out = append(out, OldKey{ID: KeyID(id), Public: pub, ExpiredTS: ts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case uint64:
		return int64(n), n < 1<<63
	case float64:
		return int64(n), n == float64(int64(n))
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}
