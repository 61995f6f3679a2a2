// Package conduit reads and writes Conduit's key-value database (the SQLite backend, conduit.db):
// the trees that hold the server's signing key, accounts, devices, sessions, E2EE keys, account
// data, pushers and media. The layout and the source paths it follows are in docs/conduit.md.
package conduit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // Conduit's SQLite backend, pure Go
)

// FileName is the database file Conduit's SQLite backend keeps in its database_path
// (src/database/abstraction/sqlite.rs).
const FileName = "conduit.db"

// Database versions this package knows (global["version"], src/database/mod.rs).
const (
	Version09   = 16 // Conduit 0.9.x: media in mediaid_file
	Version0100 = 17 // Conduit 0.10.0: content-addressed media
	Version010  = 18 // Conduit 0.10.1 … 0.10.12 and next d058dab7
)

// KnownVersions lists the database versions Open accepts.
var KnownVersions = []uint64{Version09, Version0100, Version010}

// Refusals of Open; each is wrapped with the details.
var (
	ErrNoDatabase          = errors.New("no Conduit database")
	ErrInUse               = errors.New("Conduit database in use") //nolint:staticcheck // names the program
	ErrUnknownVersion      = errors.New("unknown Conduit database version")
	ErrNotCreatedByConduit = errors.New("database not created by Conduit for this server name")
	ErrReadOnly            = errors.New("Conduit database opened read-only") //nolint:staticcheck // names the program
)

// Options says how to open a database.
type Options struct {
	// ServerName is Conduit's server_name; required for writing.
	ServerName string
	// MediaPath is Conduit's media directory; default <dir>/media (Conduit's default).
	MediaPath string
	// ReadOnly opens without the exclusive lock and refuses Update.
	ReadOnly bool
}

// MediaLayout is how a database version stores media.
type MediaLayout int

const (
	// MediaContentAddressed is Conduit ≥ 0.10 (database 17, 18): files named by their sha256.
	MediaContentAddressed MediaLayout = iota + 1
	// MediaLegacy is Conduit 0.9 (database 16): mediaid_file rows, files named by the row key.
	MediaLegacy
)

func (l MediaLayout) String() string {
	switch l {
	case MediaContentAddressed:
		return "content-addressed (Conduit ≥ 0.10)"
	case MediaLegacy:
		return "mediaid_file (Conduit 0.9)"
	}
	return "unknown"
}

// DB is an open Conduit database. Writing holds SQLite's exclusive lock until Close, so Conduit
// cannot start meanwhile. A DB is safe for use by one goroutine at a time per call; calls serialise.
type DB struct {
	mu         sync.Mutex
	sql        *sql.DB
	conn       *sql.Conn
	dir        string
	mediaPath  string
	serverName string
	readOnly   bool
	version    uint64
	tables     map[string]bool
	stmts      map[string]*sql.Stmt
}

// Open opens <dir>/conduit.db. For writing it takes SQLite's exclusive lock (refusing with ErrInUse
// while Conduit has the database open) and checks that Conduit created the database for
// opts.ServerName at a known version, writing nothing when it refuses.
func Open(dir string, opts Options) (*DB, error) {
	path := filepath.Join(dir, FileName)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			hint := "start Conduit once with database_backend = \"sqlite\" and database_path = " + dir + ", then stop it"
			if _, e := os.Stat(filepath.Join(dir, "IDENTITY")); e == nil {
				hint = "the directory holds a RocksDB database, which this build does not write; use Conduit's sqlite backend"
			}
			return nil, fmt.Errorf("%w at %s: %s", ErrNoDatabase, path, hint)
		}
		return nil, fmt.Errorf("%w: %v", ErrNoDatabase, err)
	}
	if !opts.ReadOnly && opts.ServerName == "" {
		return nil, errors.New("conduit: Options.ServerName is required for writing")
	}
	mode := "rw"
	if opts.ReadOnly {
		mode = "ro"
	}
	// busy_timeout 0: a database Conduit holds must fail at once, not after a wait.
	dsn := "file:" + escapeURIPath(path) + "?mode=" + mode + "&_pragma=busy_timeout(0)&_pragma=synchronous(NORMAL)"
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("conduit: open %s: %w", path, err)
	}
	sdb.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := sdb.Conn(ctx)
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("conduit: open %s: %w", path, err)
	}
	db := &DB{sql: sdb, conn: conn, dir: dir, serverName: opts.ServerName, readOnly: opts.ReadOnly, stmts: map[string]*sql.Stmt{}}
	db.mediaPath = opts.MediaPath
	if db.mediaPath == "" {
		db.mediaPath = filepath.Join(dir, "media")
	}
	if !opts.ReadOnly {
		if err := db.lock(ctx, path); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := db.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// lock takes the exclusive lock for the life of the connection: locking_mode=EXCLUSIVE keeps
// every lock once taken, and BEGIN EXCLUSIVE fails with "database is locked" while another
// process (Conduit) has the database open in WAL mode.
func (db *DB) lock(ctx context.Context, path string) error {
	if _, err := db.conn.ExecContext(ctx, "PRAGMA locking_mode=EXCLUSIVE"); err != nil {
		return fmt.Errorf("conduit: %s: %w", path, err)
	}
	if _, err := db.conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		if isBusy(err) {
			return fmt.Errorf("%w: %s is open in another process (stop Conduit first): %v", ErrInUse, path, err)
		}
		return fmt.Errorf("conduit: lock %s: %w", path, err)
	}
	if _, err := db.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("conduit: lock %s: %w", path, err)
	}
	return nil
}

func isBusy(err error) bool {
	s := err.Error()
	return strings.Contains(s, "database is locked") || strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database table is locked")
}

// escapeURIPath escapes the characters an SQLite URI filename gives a meaning to.
func escapeURIPath(p string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return r.Replace(p)
}

// check refuses a database Conduit did not create for this server name, listing every problem.
func (db *DB) check(ctx context.Context) error {
	rows, err := db.conn.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		if isBusy(err) {
			return fmt.Errorf("%w: %v", ErrInUse, err)
		}
		return fmt.Errorf("%w: not an SQLite database: %v", ErrNotCreatedByConduit, err)
	}
	db.tables = map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		db.tables[name] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if !db.tables["global"] {
		return fmt.Errorf("%w: no global table (%d tables found)", ErrNotCreatedByConduit, len(db.tables))
	}
	v, ok, err := db.get(ctx, "global", []byte("version"))
	if err != nil {
		return err
	}
	switch {
	case !ok:
		return fmt.Errorf("%w: no global[\"version\"]", ErrNotCreatedByConduit)
	case len(v) != 8:
		return fmt.Errorf("%w: global[\"version\"] is %d bytes, not 8", ErrNotCreatedByConduit, len(v))
	}
	db.version = binary.BigEndian.Uint64(v)
	if !slices.Contains(KnownVersions, db.version) {
		fix := "a newer Conduit (or a fork) wrote it: run a transition-matrix that knows this version, or add it as docs/conduit.md \"Adding a database version\" says, before importing"
		if db.version < KnownVersions[0] {
			fix = "an older Conduit wrote it: start Conduit 0.9 or later on it once (it migrates the database on start), stop it, then import"
		}
		return fmt.Errorf("%w: %d (known: 16 = Conduit 0.9, 17 = Conduit 0.10.0, 18 = Conduit 0.10.1–0.10.12 and next; 19 is continuwuity, 17 with extra markers conduwuit/tuwunel): %s", ErrUnknownVersion, db.version, fix)
	}
	var problems []string
	var missing []string
	columns, err := db.columns(ctx)
	if err != nil {
		return err
	}
	want := []string{"key BLOB notnull=0 pk=1", "value BLOB notnull=1 pk=0"}
	for _, t := range db.expectedTables() {
		if !db.tables[t] {
			missing = append(missing, t)
			continue
		}
		if !slices.Equal(columns[t], want) {
			problems = append(problems, fmt.Sprintf("table %s has columns %v, not Conduit's (key BLOB PRIMARY KEY, value BLOB NOT NULL)", t, columns[t]))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d of Conduit's tables missing: %s", len(missing), strings.Join(missing, " ")))
	}
	if c, ok, err := db.get(ctx, "global", []byte("c")); err != nil {
		return err
	} else if !ok {
		problems = append(problems, `no global["c"] counter`)
	} else if len(c) != 8 {
		problems = append(problems, fmt.Sprintf(`global["c"] is %d bytes, not 8`, len(c)))
	} else if binary.BigEndian.Uint64(c) == 0 {
		problems = append(problems, `global["c"] is 0`)
	}
	if kp, ok, err := db.get(ctx, "global", []byte("keypair")); err != nil {
		return err
	} else if i := bytes.IndexByte(kp, 0xFF); !ok || i <= 0 || !isASCII(kp[:i]) {
		problems = append(problems, `no valid global["keypair"] (<version> 0xFF <PKCS#8>)`)
	}
	if db.serverName != "" && len(missing) == 0 {
		problems = append(problems, db.checkServer(ctx)...)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrNotCreatedByConduit, strings.Join(problems, "; "))
	}
	return nil
}

// checkServer checks what Conduit's first start writes for its server name: the server user, the
// admin room alias and the server user's push rules (src/service/admin/mod.rs::create_admin_room,
// src/database/mod.rs::set_emergency_access).
func (db *DB) checkServer(ctx context.Context) []string {
	var problems []string
	server := db.ServerUser()
	if _, ok, err := db.get(ctx, "userid_password", []byte(server)); err != nil {
		return []string{err.Error()}
	} else if !ok {
		p := fmt.Sprintf("no server user %s in userid_password", server)
		if others := db.otherServerUsers(ctx); len(others) > 0 {
			p += " (the database holds " + strings.Join(others, ", ") + ": created for another server name?)"
		}
		problems = append(problems, p)
	}
	if _, ok, err := db.get(ctx, "alias_roomid", []byte("admins")); err != nil {
		return []string{err.Error()}
	} else if !ok {
		problems = append(problems, `no admin room (alias_roomid["admins"])`)
	}
	if u, ok, err := db.get(ctx, "alias_userid", []byte("admins")); err != nil {
		return []string{err.Error()}
	} else if ok && string(u) != server {
		problems = append(problems, fmt.Sprintf(`alias_userid["admins"] is %q, not %q`, u, server))
	}
	if _, ok, err := db.get(ctx, "roomusertype_roomuserdataid", accountDataTypeKey("", server, "m.push_rules")); err != nil {
		return []string{err.Error()}
	} else if !ok {
		problems = append(problems, fmt.Sprintf("no m.push_rules account data of %s (Conduit never finished a start)", server))
	}
	return problems
}

func (db *DB) otherServerUsers(ctx context.Context) []string {
	var out []string
	_ = db.scan(ctx, "userid_password", []byte("@conduit:"), func(k, _ []byte) error {
		out = append(out, string(k))
		if len(out) >= 3 {
			return errStop
		}
		return nil
	})
	return out
}

// columns describes every table's columns in one query.
func (db *DB) columns(ctx context.Context) (map[string][]string, error) {
	rows, err := db.conn.QueryContext(ctx, `SELECT m.name, p.name, p.type, p."notnull", p.pk FROM sqlite_master AS m, pragma_table_info(m.name) AS p WHERE m.type = 'table' ORDER BY m.name, p.cid`)
	if err != nil {
		return nil, fmt.Errorf("conduit: read the schema: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var table, name, typ string
		var notNull, pk int
		if err := rows.Scan(&table, &name, &typ, &notNull, &pk); err != nil {
			return nil, err
		}
		out[table] = append(out[table], fmt.Sprintf("%s %s notnull=%d pk=%d", name, strings.ToUpper(typ), notNull, pk))
	}
	return out, rows.Err()
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// expectedTables are the tables Conduit opens at the database's version.
func (db *DB) expectedTables() []string { return TablesFor(db.version) }

// TablesFor returns the tables Conduit creates at a database version (nil for an unknown one).
func TablesFor(version uint64) []string {
	switch version {
	case Version09:
		return tables16
	case Version0100, Version010:
		return tables18
	}
	return nil
}

// Version is the database version (global["version"]).
func (db *DB) Version() uint64 { return db.version }

// ServerName is the server name the database was opened for.
func (db *DB) ServerName() string { return db.serverName }

// ServerUser is Conduit's own user, @conduit:<server name>.
func (db *DB) ServerUser() string { return "@conduit:" + db.serverName }

// MediaPath is the media directory files are written to and read from.
func (db *DB) MediaPath() string { return db.mediaPath }

// MediaLayout says how the database's version stores media.
func (db *DB) MediaLayout() MediaLayout {
	if db.version == Version09 {
		return MediaLegacy
	}
	return MediaContentAddressed
}

// Close releases the lock and the database.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, s := range db.stmts {
		s.Close()
	}
	db.stmts = nil
	var err error
	if db.conn != nil {
		err = db.conn.Close()
		db.conn = nil
	}
	if db.sql != nil {
		if e := db.sql.Close(); err == nil {
			err = e
		}
		db.sql = nil
	}
	return err
}
