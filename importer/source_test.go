package importer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/transition-matrix/transition-matrix/exportfmt"
)

const testServer = "synapse.test"

func smallExport(t *testing.T, rcpt *age.X25519Recipient) (string, *exportfmt.Manifest) {
	t.Helper()
	dir := t.TempDir()
	users := []*exportfmt.UserFile{synthUser(testServer, 1, 2, 3), synthUser(testServer, 2, 1, 0)}
	rooms := []*exportfmt.RoomFile{{RoomID: "!a:" + testServer, RoomVersion: "10", StateFormat: exportfmt.StateFederation}}
	m := writeExport(t, dir, testServer, map[string]exportfmt.PublicKey{"ed25519:a_key": {Key: "pub"}}, users, rooms, rcpt)
	return dir, m
}

func TestOpenExportAcceptsAnIntactExport(t *testing.T) {
	dir, _ := smallExport(t, nil)
	before := snapshotDir(t, dir)
	x, err := OpenExport(dir, testServer, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if len(x.Users) != 2 || x.Users[0].ID != "@user00001:"+testServer {
		t.Fatalf("users = %+v", x.Users)
	}
	u, err := x.ReadUser(x.Users[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Devices) != 2 || u.E2E.KeyBackup == nil || u.E2E.KeyBackup.Count != 3 {
		t.Fatalf("user read back wrong: %d devices, backup %+v", len(u.Devices), u.E2E.KeyBackup)
	}
	if after := snapshotDir(t, dir); !equalSnapshots(before, after) {
		t.Fatal("verifying the export changed the directory")
	}
}

func TestOpenExportEncrypted(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := smallExport(t, id.Recipient())
	_, err = OpenExport(dir, testServer, nil)
	if err == nil || !strings.Contains(err.Error(), "-age-identity") {
		t.Fatalf("no identity: err = %v, want a hint at -age-identity", err)
	}
	other, _ := age.GenerateX25519Identity()
	_, err = OpenExport(dir, testServer, []age.Identity{other})
	if err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("wrong identity: err = %v", err)
	}
	x, err := OpenExport(dir, testServer, []age.Identity{id})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	u, err := x.ReadUser(x.Users[1])
	if err != nil || u.UID != "@user00002:"+testServer {
		t.Fatalf("ReadUser = %v, %v", u, err)
	}
}

// TestOpenExportRefuses damages an export in every way the importer must notice and checks that
// the refusal names the file and what differs.
func TestOpenExportRefuses(t *testing.T) {
	user1 := "users/" + exportfmt.Encode("@user00001:"+testServer) + ".json"
	room := "rooms/" + exportfmt.Encode("!a:"+testServer) + ".json"
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string, m *exportfmt.Manifest)
		server string
		want   []string
	}{
		{"truncated file", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			p := filepath.Join(dir, user1)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)/2], 0o600)
		}, "", []string{user1, "bytes, the manifest says", "truncated"}},
		{"tampered file", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			p := filepath.Join(dir, user1)
			data, _ := os.ReadFile(p)
			data[10] ^= 1
			os.WriteFile(p, data, 0o600)
		}, "", []string{user1, "sha256", "manifest says {sha}"}},
		{"missing file", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			os.Remove(filepath.Join(dir, room))
		}, "", []string{room, "missing"}},
		{"unlisted file", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			os.WriteFile(filepath.Join(dir, "users", "%40eve%3asynapse.test.json"), []byte("{}\n"), 0o600)
		}, "", []string{"users/%40eve%3asynapse.test.json", "not listed in the manifest"}},
		{"unknown format version", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			m.FormatVersion = 2
			writeManifest(t, dir, m)
		}, "", []string{"manifest.json", "format version 2"}},
		{"other server", nil, "other.test", []string{"manifest.json", `export of "synapse.test"`, "other.test"}},
		{"incomplete export", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			m.Complete, m.FinishedAt = false, nil
			writeManifest(t, dir, m)
		}, "", []string{"not complete"}},
		{"no manifest", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			os.Remove(filepath.Join(dir, exportfmt.ManifestName))
		}, "", []string{"manifest.json", "not an export directory"}},
		{"garbled manifest", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			os.WriteFile(filepath.Join(dir, exportfmt.ManifestName), []byte("{\"format\":"), 0o600)
		}, "", []string{"manifest.json", "not a valid manifest"}},
		{"file swapped for another user's", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			// Both file and manifest entry rewritten consistently, but the file holds another user.
			other := "users/" + exportfmt.Encode("@user00002:"+testServer) + ".json"
			data, _ := os.ReadFile(filepath.Join(dir, other))
			os.WriteFile(filepath.Join(dir, user1), data, 0o600)
			e := m.Files[user1]
			e.SHA256, e.Size = m.Files[other].SHA256, m.Files[other].Size
			m.Files[user1] = e
			writeManifest(t, dir, m)
		}, "", []string{user1, `holds user "@user00002:synapse.test"`}},
		{"path outside users/", func(t *testing.T, dir string, m *exportfmt.Manifest) {
			m.Files["users/../../x.json"] = m.Files[user1]
			writeManifest(t, dir, m)
		}, "", []string{"outside users/"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, m := smallExport(t, nil)
			if c.damage != nil {
				c.damage(t, dir, m)
			}
			server := testServer
			if c.server != "" {
				server = c.server
			}
			before := snapshotDir(t, dir)
			x, err := OpenExport(dir, server, nil)
			if err == nil {
				x.Close()
				t.Fatal("damaged export accepted")
			}
			var ee *ExportError
			if !errors.As(err, &ee) {
				t.Fatalf("err %T %v is not an *ExportError", err, err)
			}
			for _, w := range c.want {
				w = strings.ReplaceAll(w, "{sha}", m.Files[user1].SHA256)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if after := snapshotDir(t, dir); !equalSnapshots(before, after) {
				t.Error("refusing the export changed the directory")
			}
		})
	}
}

// snapshotDir returns every file under dir (slash path → bytes and mode), for before/after checks.
func snapshotDir(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return out
	}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if info.IsDir() {
			out[filepath.ToSlash(rel)+"/"] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = info.Mode().String() + " " + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalSnapshots(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
