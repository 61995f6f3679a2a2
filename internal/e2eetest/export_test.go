package e2eetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDropDeviceKeys: the device's keys leave the user file, the other device's stay, and the
// manifest's sha256 and size follow the new file; a device without keys is an error.
func TestDropDeviceKeys(t *testing.T) {
	dir := t.TempDir()
	user := `{"uid":"@alice:hs.test","e2e":{"device_keys":{"A":{"device_id":"A"},"B":{"device_id":"B"}}}}`
	if err := os.MkdirAll(filepath.Join(dir, "users"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users", "alice.json"), []byte(user), 0o600); err != nil {
		t.Fatal(err)
	}
	man := `{"format_version":1,"files":{"users/alice.json":{"kind":"user","id":"@alice:hs.test","sha256":"x","size":1}}}`
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(man), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := DropDeviceKeys(dir, "@alice:hs.test", "A"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "users", "alice.json"))
	if err != nil {
		t.Fatal(err)
	}
	var u struct {
		E2E struct {
			DeviceKeys map[string]json.RawMessage `json:"device_keys"`
		} `json:"e2e"`
	}
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.E2E.DeviceKeys["A"]; ok || u.E2E.DeviceKeys["B"] == nil {
		t.Errorf("device keys after dropping A: %s", b)
	}
	m, err := readJSON(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	ent := m["files"].(map[string]any)["users/alice.json"].(map[string]any)
	sum := sha256.Sum256(b)
	if ent["sha256"] != hex.EncodeToString(sum[:]) || ent["size"] != json.Number(jsonInt(len(b))) {
		t.Errorf("manifest entry %v, want sha256 %x and size %d", ent, sum, len(b))
	}
	if m["format_version"] != json.Number("1") {
		t.Errorf("manifest lost its other fields: %v", m)
	}
	if err := DropDeviceKeys(dir, "@alice:hs.test", "A"); !errors.Is(err, ErrNoSuchDeviceKeys) {
		t.Errorf("dropping A again: %v, want %v", err, ErrNoSuchDeviceKeys)
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }
