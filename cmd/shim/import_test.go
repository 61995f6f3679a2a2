package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/importer"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/mediastore/mediastoretest"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
)

// importSetup exports a simulated Synapse with the export command and creates a fresh Conduit
// database; it returns the config path, the export directory and the database directory.
func importSetup(t *testing.T) (cfgPath, out, db string, sim *synapsesim.Server) {
	t.Helper()
	cfgPath, sim = exportSetup(t, "  admin_token: ${ADMIN_TOKEN}\n")
	out = filepath.Join(t.TempDir(), "export")
	if code, stdout, stderr := runShim(t, map[string]string{"ADMIN_TOKEN": sim.AdminToken()}, "export", "-config", cfgPath, "-out", out); code != 0 {
		t.Fatalf("export: exit %d\n%s\n%s", code, stdout, stderr)
	}
	db = conduittest.FreshDB(t, sim.World().ServerName, conduit.Version010)
	return cfgPath, out, db, sim
}

// dirBytes returns every file under dir with its bytes.
func dirBytes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		}
		return nil
	})
	return out
}

func TestImportCommand(t *testing.T) {
	cfgPath, out, db, sim := importSetup(t)
	w := sim.World()
	env := map[string]string{"ADMIN_TOKEN": sim.AdminToken()}
	secrets := func(s string) {
		t.Helper()
		for _, u := range w.Users {
			if u.PasswordHash != "" && strings.Contains(s, u.PasswordHash) {
				t.Errorf("the password hash of %s was printed", u.ID)
			}
			for _, d := range u.Devices {
				if strings.Contains(s, d.AccessToken) {
					t.Errorf("an access token of %s was printed", u.ID)
				}
			}
		}
	}

	before := dirBytes(t, db)
	code, stdout, stderr := runShim(t, env, "import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-dry-run")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"DRY RUN, nothing written", "rows that would change by tree", "userid_password", "need a password reset on an unpatched one", "must log in again"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, stdout)
		}
	}
	secrets(stdout + stderr)
	after := dirBytes(t, db)
	if len(after) != len(before) {
		t.Errorf("dry run: %d files before, %d after", len(before), len(after))
	}
	for p, b := range before {
		if after[p] != b {
			t.Errorf("dry run changed %s", p)
		}
	}

	report := filepath.Join(t.TempDir(), "report.json")
	code, stdout, stderr = runShim(t, env, "import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-j", "2", "-report", report)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, ": done") || !strings.Contains(stdout, "rows changed by tree") {
		t.Errorf("summary:\n%s", stdout)
	}
	secrets(stdout + stderr)
	st, err := os.Stat(report)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("report file: %v, mode %v", err, st.Mode())
	}
	var r importer.Report
	data, _ := os.ReadFile(report)
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Imported != len(w.Users) || r.Users != len(w.Users) || r.Rows.Total() == 0 {
		t.Errorf("report: imported %d of %d, rows %d", r.Imported, len(w.Users), r.Rows.Total())
	}
	secrets(string(data))

	cdb, err := conduit.Open(db, conduit.Options{ServerName: w.ServerName, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range w.Users {
		got, ok, err := cdb.User(u.ID)
		if err != nil || !ok {
			t.Errorf("%s not in Conduit: %v", u.ID, err)
		} else if u.PasswordHash != "" && got.PasswordHash != u.PasswordHash {
			t.Errorf("%s: password hash not carried", u.ID)
		}
	}
	cdb.Close()

	code, stdout, _ = runShim(t, env, "import", "conduit", "-config", cfgPath, "-export", out, "-db", db)
	if code != 0 || !strings.Contains(stdout, "rows changed by tree: 0\n") {
		t.Errorf("second run: exit %d\n%s", code, stdout)
	}
}

func TestImportCommandErrors(t *testing.T) {
	cfgPath, out, db, sim := importSetup(t)
	env := map[string]string{"ADMIN_TOKEN": sim.AdminToken()}
	// A tampered copy of the export.
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.CopyFS(bad, os.DirFS(out)); err != nil {
		t.Fatal(err)
	}
	var m exportfmt.Manifest
	data, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	json.Unmarshal(data, &m)
	var victim string
	for p, e := range m.Files {
		if e.Kind == "user" {
			victim = p
			break
		}
	}
	vb, _ := os.ReadFile(filepath.Join(bad, victim))
	os.WriteFile(filepath.Join(bad, victim), vb[:len(vb)-10], 0o600)
	// A database of a version nobody knows.
	unknown := conduittest.FreshDB(t, "synapse.test", conduit.Version010)
	setVersion(t, unknown, 19)

	// Conduit configuration files: the backend and path come from them.
	other := conduit.BackendSQLite
	if conduittest.BackendOf(db) == conduit.BackendSQLite {
		other = conduit.BackendRocksDB
	}
	conduitConfig := func(body string) string {
		p := filepath.Join(t.TempDir(), "conduit.toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noBackend := conduitConfig("[global]\nserver_name = \"synapse.test\"\ndatabase_path = \"" + db + "\"\n")
	otherServer := conduitConfig("[global]\nserver_name = \"other.example\"\ndatabase_backend = \"" + conduittest.BackendOf(db) + "\"\ndatabase_path = \"" + db + "\"\n")
	good := conduitConfig("[global]\nserver_name = \"synapse.test\"\ndatabase_backend = \"" + conduittest.BackendOf(db) + "\"\ndatabase_path = \"" + db + "\"\n")

	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"import"}, 2, "the target is missing"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-backend", "mysql"}, 2, "-backend must be sqlite or rocksdb"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-backend", other}, 1, "no Conduit database"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-conduit-config", noBackend}, 1, "no global.database_backend"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-conduit-config", otherServer}, 1, `server_name "other.example"`},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-conduit-config", good, "-backend", other}, 1, "database_backend"},
		{[]string{"import", "dendrite"}, 2, `unknown target "dendrite"`},
		{[]string{"import", "conduit", "-export", out, "-db", db}, 2, "-config is required"},
		{[]string{"import", "conduit", "-config", cfgPath, "-db", db}, 2, "-export is required"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out}, 2, "-db (or -conduit-config) is required"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-j", "0"}, 2, "-j must be at least 1"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", bad, "-db", db}, 1, victim},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-db", unknown}, 1, "unknown Conduit database version"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-db", filepath.Join(t.TempDir(), "none")}, 1, "no Conduit database"},
		{[]string{"import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-age-identity", "/nonexistent"}, 1, "-age-identity"},
	}
	for _, c := range cases {
		code, _, stderr := runShim(t, env, c.args...)
		if code != c.code || !strings.Contains(stderr, c.err) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.err)
		}
	}
	// Conduit's configuration file names the backend and the path; a dry run through it works.
	if code, stdout, stderr := runShim(t, env, "import", "conduit", "-config", cfgPath, "-export", out, "-conduit-config", good, "-dry-run"); code != 0 || !strings.Contains(stdout, conduittest.BackendOf(db)+" backend") {
		t.Errorf("-conduit-config dry run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, _ := runShim(t, nil, "import", "conduit", "-h")
	if code != 0 || !strings.Contains(stdout, "-synapse-db") || !strings.Contains(stdout, "-dry-run") {
		t.Errorf("import conduit -h: exit %d\n%s", code, stdout)
	}
}

// setVersion overwrites global["version"] of a Conduit database.
func setVersion(t *testing.T, dir string, v uint64) {
	t.Helper()
	conduittest.SetRaw(t, dir, "global", []byte("version"), binary.BigEndian.AppendUint64(nil, v))
}

// TestImportCommandSessionsAndMedia imports with Synapse's database (SQLite) and media store:
// devices stay logged in and every upload is in Conduit.
func TestImportCommandSessionsAndMedia(t *testing.T) {
	cfgPath, out, db, sim := importSetup(t)
	w := sim.World()
	env := map[string]string{"ADMIN_TOKEN": sim.AdminToken()}
	sdb := synapsedbtest.WriteSQLite(t, w)
	store := mediastoretest.Write(t, w)
	code, stdout, stderr := runShim(t, env, "import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-synapse-db", sdb, "-media-store", store)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"(devices stay logged in)", "one-time keys", "fallback keys not carried", "media skipped: 1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	c, err := conduit.Open(db, conduit.Options{ServerName: w.ServerName, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tokens, media := 0, 0
	for _, u := range w.Users {
		got, err := c.AccessTokens(u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range u.Devices {
			if d.AccessTokenValidUntilMS == 0 && got[d.ID] != d.AccessToken {
				t.Errorf("%s device %s: token not carried", u.ID, d.ID)
			}
		}
		tokens += len(got)
		for _, m := range u.Media {
			mf, ok, err := c.Media(w.ServerName, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if m.QuarantinedBy == "" && (!ok || string(mf.Content) != string(m.Bytes)) {
				t.Errorf("%s: media %s not carried", u.ID, m.ID)
			}
			if ok {
				media++
			}
		}
	}
	if tokens == 0 || media == 0 {
		t.Errorf("%d tokens, %d media found", tokens, media)
	}
	// A PostgreSQL DSN that cannot connect: the error names the database, never the password.
	code, _, stderr = runShim(t, env, "import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-synapse-db", "postgres://synapse:s3cr3tpw@127.0.0.1:1/synapse?connect_timeout=2")
	if code != 1 || strings.Contains(stderr, "s3cr3tpw") || !strings.Contains(stderr, "127.0.0.1") {
		t.Errorf("bad DSN: exit %d, stderr %q", code, stderr)
	}
}
