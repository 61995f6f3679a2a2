package importer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/transition-matrix/transition-matrix/exportfmt"
)

// writeExport writes an export directory holding users and rooms the way shim export does (one
// compact JSON file each, a manifest with their SHA-256 and size), encrypted to rcpt when set.
// It lets tests and the benchmark build exports without a simulated Synapse.
func writeExport(t testing.TB, dir, serverName string, keys map[string]exportfmt.PublicKey, users []*exportfmt.UserFile, rooms []*exportfmt.RoomFile, rcpt *age.X25519Recipient) *exportfmt.Manifest {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "users"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "rooms"), 0o700); err != nil {
		t.Fatal(err)
	}
	finished := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := &exportfmt.Manifest{
		Format: exportfmt.Format, FormatVersion: exportfmt.FormatVersion, ServerName: serverName, SynapseVersion: "1.67.0",
		PublicKeys: keys, StartedAt: finished.Add(-time.Minute), FinishedAt: &finished, Complete: true,
		Files: map[string]exportfmt.FileEntry{}, Skipped: []exportfmt.Skipped{}, Failed: []exportfmt.Skipped{},
	}
	for id := range keys {
		if keys[id].ExpiredTS == nil {
			m.SigningKeyID = id
		}
	}
	suffix := ".json"
	if rcpt != nil {
		s := rcpt.String()
		m.EncryptedTo = &s
		suffix = ".json.age"
	}
	put := func(kind, id, sub string, v any) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		if rcpt != nil {
			var out bytes.Buffer
			w, err := age.Encrypt(&out, rcpt)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			data = out.Bytes()
		}
		p := sub + "/" + exportfmt.Encode(id) + suffix
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		m.Files[p] = exportfmt.FileEntry{Kind: kind, ID: id, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	}
	for _, u := range users {
		put("user", u.UID, "users", u)
		m.Counts.Users++
		m.Counts.UserFiles++
	}
	for _, r := range rooms {
		put("room", r.RoomID, "rooms", r)
		m.Counts.Rooms++
		m.Counts.RoomFiles++
	}
	writeManifest(t, dir, m)
	return m
}

func writeManifest(t testing.TB, dir string, m *exportfmt.Manifest) {
	t.Helper()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, exportfmt.ManifestName), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readManifestFile(t testing.TB, dir string) *exportfmt.Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, exportfmt.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m := &exportfmt.Manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		t.Fatal(err)
	}
	return m
}
