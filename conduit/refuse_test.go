package conduit_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
)

func dump(t *testing.T, dir string) string { return conduittest.Dump(t, dir) }

// snapshot is the bytes of every file in the database directory, to prove a refusal wrote nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func sameFiles(t *testing.T, before, after map[string]string) {
	t.Helper()
	for name, b := range before {
		if a, ok := after[name]; !ok || a != b {
			t.Errorf("%s changed (%d → %d bytes, present %v)", name, len(b), len(a), ok)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s was created", name)
		}
	}
}

func TestOpenRefusesMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	_, err := conduit.Open(dir, conduit.Options{ServerName: server})
	if !errors.Is(err, conduit.ErrNoDatabase) {
		t.Fatalf("err = %v, want ErrNoDatabase", err)
	}
	if !strings.Contains(err.Error(), "start Conduit once") {
		t.Errorf("error does not say what to do: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("refusal created %v", entries)
	}
}

func TestOpenRefusals(t *testing.T) {
	set := func(tree, key string, value []byte) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { conduittest.SetRaw(t, dir, tree, []byte(key), value) }
	}
	del := func(tree string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { conduittest.DeleteRaw(t, dir, tree, nil) }
	}
	drop := func(trees ...string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			for _, tr := range trees {
				conduittest.DropTree(t, dir, tr)
			}
		}
	}
	sqlOnly := func(stmts ...string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if conduittest.BackendOf(dir) != conduit.BackendSQLite {
				t.Skip("SQLite storage only: a RocksDB column family holds bytes, with no column types")
			}
			db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, conduit.FileName))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, s := range stmts {
				if _, err := db.Exec(s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
		}
	}
	none := func(*testing.T, string) {}
	cases := []struct {
		name    string
		version int
		server  string
		change  func(t *testing.T, dir string)
		want    error
		mention string
	}{
		{"unknown version 19 (continuwuity)", 18, server, set("global", "version", []byte{0, 0, 0, 0, 0, 0, 0, 0x13}), conduit.ErrUnknownVersion, "19"},
		{"newer version 20 (a newer Conduit): the fix is named", 18, server, set("global", "version", []byte{0, 0, 0, 0, 0, 0, 0, 0x14}), conduit.ErrUnknownVersion, `docs/conduit.md "Adding a database version"`},
		{"older version 15: the fix is named", 16, server, set("global", "version", []byte{0, 0, 0, 0, 0, 0, 0, 0x0F}), conduit.ErrUnknownVersion, "start Conduit 0.9 or later on it once"},
		{"unknown version 15", 16, server, set("global", "version", []byte{0, 0, 0, 0, 0, 0, 0, 0x0F}), conduit.ErrUnknownVersion, "known: 16"},
		{"version of wrong width", 18, server, set("global", "version", []byte{0x12}), conduit.ErrNotCreatedByConduit, "1 bytes"},
		{"no global table", 18, server, drop("global"), conduit.ErrNotCreatedByConduit, "no global table"},
		{"missing tables", 17, server, drop("keyid_key", "filehash_metadata"), conduit.ErrNotCreatedByConduit, "filehash_metadata keyid_key"},
		{"table of another shape", 18, server, sqlOnly(`DROP TABLE senderkey_pusher`, `CREATE TABLE senderkey_pusher (key TEXT PRIMARY KEY, value TEXT)`), conduit.ErrNotCreatedByConduit, "senderkey_pusher"},
		{"another server name", 18, "other.example", none, conduit.ErrNotCreatedByConduit, "@conduit:example.org"},
		{"no admin room", 18, server, del("alias_roomid"), conduit.ErrNotCreatedByConduit, "admin room"},
		{"counter of wrong width", 18, server, set("global", "c", []byte{0, 0, 0, 0x10}), conduit.ErrNotCreatedByConduit, `global["c"] is 4 bytes`},
		{"counter stored as TEXT", 18, server, sqlOnly(`DELETE FROM global WHERE key = CAST('c' AS BLOB)`, `INSERT INTO global VALUES ('c', X'0000000000000010')`), conduit.ErrNotCreatedByConduit, `no global["c"]`},
		{"start never finished", 16, server, del("roomusertype_roomuserdataid"), conduit.ErrNotCreatedByConduit, "m.push_rules"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := conduittest.FreshDB(t, server, c.version)
			c.change(t, dir)
			before := snapshot(t, dir)
			_, err := conduit.Open(dir, conduit.Options{ServerName: c.server})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
			sameFiles(t, before, snapshot(t, dir))
		})
	}
}

func TestOpenRequiresServerNameForWriting(t *testing.T) {
	dir := conduittest.FreshDB(t, server, 18)
	if _, err := conduit.Open(dir, conduit.Options{}); err == nil || !strings.Contains(err.Error(), "ServerName") {
		t.Fatalf("err = %v", err)
	}
	db, err := conduit.Open(dir, conduit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Update(func(*conduit.Tx) error { return nil }); !errors.Is(err, conduit.ErrReadOnly) {
		t.Fatalf("Update on a read-only DB: %v", err)
	}
}

// holderEnv makes the test binary act as a second process on a database (see TestHelperProcess).
const holderEnv = "CONDUIT_TEST_HOLDER"

// TestHelperProcess is not a test: run by the tests below as a separate process, it either holds a
// database open in WAL mode as Conduit does ("hold") or tries to open it as Conduit's start does
// ("start"), and reports on stdout.
func TestHelperProcess(t *testing.T) {
	spec := os.Getenv(holderEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	mode, path, _ := strings.Cut(spec, ":")
	// Conduit's prepare_conn: WAL, synchronous NORMAL, no autocheckpoint; rusqlite's 5 s busy
	// timeout shortened to keep the test quick.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(100)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(0)")
	if err == nil {
		db.SetMaxOpenConns(1)
		switch mode {
		case "hold":
			var n int
			if err = db.QueryRow("SELECT count(*) FROM global").Scan(&n); err == nil {
				fmt.Println("ready")
				io.Copy(io.Discard, os.Stdin) // hold until the parent closes stdin
			}
		case "start":
			_, err = db.Exec(`CREATE TABLE IF NOT EXISTS global ( "key" BLOB PRIMARY KEY, "value" BLOB NOT NULL )`)
			if err == nil {
				_, err = db.Exec(`INSERT OR REPLACE INTO global VALUES (X'75', X'0000000000000001')`)
			}
		}
	}
	if err != nil {
		fmt.Println("error:", err)
	} else {
		fmt.Println("ok")
	}
	db.Close()
}

type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startHelper(t *testing.T, mode, path string) *helper {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), holderEnv+"="+mode+":"+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *helper) line(t *testing.T) string {
	t.Helper()
	l, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("helper process: %v", err)
	}
	return strings.TrimSpace(l)
}

func (h *helper) stop() {
	if h.stdin != nil {
		h.stdin.Close()
		h.stdin = nil
		io.Copy(io.Discard, h.out)
		h.cmd.Wait()
	}
}

func TestOpenRefusesDatabaseInUse(t *testing.T) {
	dir := conduittest.FreshDB(t, server, 18)
	if conduittest.BackendOf(dir) == conduit.BackendSQLite {
		testInUseSQLite(t, dir)
		return
	}
	before := dump(t, dir)
	release := conduittest.HoldOpen(t, dir) // Conduit running: RocksDB's LOCK held by another process
	files := snapshot(t, dir)
	_, err := conduit.Open(dir, conduit.Options{ServerName: server})
	if !errors.Is(err, conduit.ErrInUse) {
		t.Fatalf("err = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), "stop Conduit") || !strings.Contains(err.Error(), "LOCK") {
		t.Errorf("error does not say what to do: %v", err)
	}
	sameFiles(t, files, snapshot(t, dir))
	// The reader still works next to a running Conduit (shim verify).
	ro, err := conduit.Open(dir, conduit.Options{ServerName: server, ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open next to Conduit: %v", err)
	}
	if users, err := ro.Users(); err != nil || len(users) != 1 {
		t.Fatalf("users %v %v", users, err)
	}
	ro.Close()
	release()
	if after := dump(t, dir); after != before {
		t.Fatal("the refused open changed the database")
	}

	// Once Conduit is gone the import opens, and holds the database: Conduit cannot start meanwhile.
	db, err := conduit.Open(dir, conduit.Options{ServerName: server})
	if err != nil {
		t.Fatal(err)
	}
	if err := conduittest.StartLike(t, dir); err == nil || !strings.Contains(err.Error(), "LOCK") {
		t.Fatalf("Conduit-like start while the import holds the database: %v, want the LOCK refusal", err)
	}
	db.Close()
	if err := conduittest.StartLike(t, dir); err != nil {
		t.Fatalf("Conduit-like start after Close: %v", err)
	}

	// A dry run holds the lock too, and leaves every file as it was.
	files = snapshot(t, dir)
	dry, err := conduit.Open(dir, conduit.Options{ServerName: server, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dry.DryRunContext(context.Background(), func(tx *conduit.Tx) error {
		return tx.PutUser(conduit.User{ID: "@dry:" + server, PasswordHash: "$2b$12$x"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := dry.Update(func(*conduit.Tx) error { return nil }); !errors.Is(err, conduit.ErrReadOnly) {
		t.Errorf("Update on a DryRun database: %v", err)
	}
	if err := conduittest.StartLike(t, dir); err == nil || !strings.Contains(err.Error(), "LOCK") {
		t.Fatalf("Conduit-like start during a dry run: %v, want the LOCK refusal", err)
	}
	dry.Close()
	sameFiles(t, files, snapshot(t, dir))
}

func testInUseSQLite(t *testing.T, dir string) {
	path := filepath.Join(dir, conduit.FileName)
	before := dump(t, dir)
	conduitLike := startHelper(t, "hold", path)
	if l := conduitLike.line(t); l != "ready" {
		t.Fatalf("holder: %s", l)
	}
	_, err := conduit.Open(dir, conduit.Options{ServerName: server})
	if !errors.Is(err, conduit.ErrInUse) {
		t.Fatalf("err = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), "stop Conduit") {
		t.Errorf("error does not say what to do: %v", err)
	}
	// The reader still works next to a running Conduit (shim verify).
	ro, err := conduit.Open(dir, conduit.Options{ServerName: server, ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open next to Conduit: %v", err)
	}
	if users, err := ro.Users(); err != nil || len(users) != 1 {
		t.Fatalf("users %v %v", users, err)
	}
	ro.Close()
	conduitLike.stop()
	if after := dump(t, dir); after != before {
		t.Fatal("the refused open changed the database")
	}

	// Once Conduit is gone the import opens, and holds the database: Conduit cannot start meanwhile.
	db, err := conduit.Open(dir, conduit.Options{ServerName: server})
	if err != nil {
		t.Fatal(err)
	}
	start := startHelper(t, "start", path)
	if l := start.line(t); !strings.Contains(l, "database is locked") {
		t.Fatalf("Conduit-like start while the import holds the database: %q, want database is locked", l)
	}
	start.stop()
	db.Close()
	start = startHelper(t, "start", path)
	if l := start.line(t); l != "ok" {
		t.Fatalf("Conduit-like start after Close: %q", l)
	}
}

// TestAllRowsAreBlobs checks that every key and value the writer stored is a BLOB: Conduit binds
// &[u8], and a TEXT row would be invisible to it (research conduit-join-and-spec-vectors §2).
func TestAllRowsAreBlobs(t *testing.T) {
	if conduittest.Backend(t) != conduit.BackendSQLite {
		t.Skip("SQLite storage classes only: RocksDB holds bytes")
	}
	for _, version := range []int{16, 18} {
		db, dir := openFresh(t, version)
		if _, err := db.Update(importAlice); err != nil {
			t.Fatal(err)
		}
		db.Close()
		var bad []string
		for _, line := range strings.Split(dump(t, dir), "\n") {
			if line != "" && strings.Count(line, "blob:") != 2 {
				bad = append(bad, line)
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Fatalf("version %d: rows not stored as BLOB:\n%s", version, strings.Join(bad, "\n"))
		}
	}
}
