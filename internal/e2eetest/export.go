package e2eetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNoSuchDeviceKeys means the export holds no device keys for that user and device.
var ErrNoSuchDeviceKeys = errors.New("e2eetest: the export has no such device keys")

// DropDeviceKeys removes one device's keys (e2e.device_keys[deviceID]) from userID's file in
// a `shim export` directory and updates that file's sha256 and size in manifest.json, so the
// import takes the export as whole. It is the test's way to leave a device's keys out of the
// import; the device itself and its access token stay.
func DropDeviceKeys(exportDir, userID, deviceID string) error {
	manPath := filepath.Join(exportDir, "manifest.json")
	man, err := readJSON(manPath)
	if err != nil {
		return err
	}
	files, _ := man["files"].(map[string]any)
	for rel, v := range files {
		ent, _ := v.(map[string]any)
		if ent["kind"] != "user" || ent["id"] != userID {
			continue
		}
		path := filepath.Join(exportDir, filepath.FromSlash(rel))
		user, err := readJSON(path)
		if err != nil {
			return err
		}
		e2e, _ := user["e2e"].(map[string]any)
		keys, _ := e2e["device_keys"].(map[string]any)
		if _, ok := keys[deviceID]; !ok {
			return fmt.Errorf("%w: %s in %s has device keys for %d devices, not %s", ErrNoSuchDeviceKeys, userID, rel, len(keys), deviceID)
		}
		delete(keys, deviceID)
		b, err := writeJSON(path, user)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ent["sha256"], ent["size"] = hex.EncodeToString(sum[:]), len(b)
		_, err = writeJSON(manPath, man)
		return err
	}
	return fmt.Errorf("%w: no user file for %s in %s", ErrNoSuchDeviceKeys, userID, manPath)
}

func readJSON(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("e2eetest: %s: %w", path, err)
	}
	return m, nil
}

func writeJSON(path string, v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	return b, os.WriteFile(path, b, 0o600)
}
