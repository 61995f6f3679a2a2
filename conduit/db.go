// Package conduit reads and writes Conduit's key-value database (the SQLite backend's conduit.db
// or the RocksDB backend's directory): the trees that hold the server's signing key, accounts,
// devices, sessions, E2EE keys, account data, pushers and media. The layout and the source paths
// it follows are in docs/conduit.md, the RocksDB backend in docs/rocksdb.md.
package conduit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// FileName is the database file Conduit's SQLite backend keeps in its database_path
// (src/database/abstraction/sqlite.rs).
const FileName = "conduit.db"

// Backends are Conduit's database_backend values this package reads and writes.
const (
	BackendSQLite  = "sqlite"
	BackendRocksDB = "rocksdb"
)

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
	ErrBackend             = errors.New("unknown or ambiguous Conduit database backend")
)

// Options says how to open a database.
type Options struct {
	// ServerName is Conduit's server_name; required for writing.
	ServerName string
	// MediaPath is Conduit's media directory; default <dir>/media (Conduit's default).
	MediaPath string
	// ReadOnly opens without the exclusive lock and refuses Update.
	ReadOnly bool
	// Backend is Conduit's database_backend, "sqlite" or "rocksdb" ("" = the one whose files dir
	// holds: conduit.db, or RocksDB's CURRENT).
	Backend string
	// DryRun opens for DryRunContext only: the same checks and lock as for writing, but nothing is
	// ever written (RocksDB: a read-only open that holds the LOCK); Update is refused.
	DryRun bool
	// RocksDBHelper is the shim-rocksdb binary for the RocksDB backend ("" = rocksdbkv.FindHelper).
	RocksDBHelper string
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
	store      kvStore
	backend    string
	dir        string
	mediaPath  string
	serverName string
	readOnly   bool
	dryRunOnly bool
	version    uint64
	tables     map[string]bool
}

// Open opens Conduit's database in dir (its database_path), on the SQLite or the RocksDB backend.
// For writing it takes the backend's lock (refusing with ErrInUse while Conduit has the database
// open) and checks that Conduit created the database for opts.ServerName at a known version,
// writing nothing when it refuses.
func Open(dir string, opts Options) (*DB, error) {
	backend, err := detectBackend(dir, opts.Backend)
	if err != nil {
		return nil, err
	}
	if !opts.ReadOnly && opts.ServerName == "" {
		return nil, errors.New("conduit: Options.ServerName is required for writing")
	}
	db := &DB{dir: dir, backend: backend, serverName: opts.ServerName, readOnly: opts.ReadOnly, dryRunOnly: opts.DryRun && !opts.ReadOnly}
	db.mediaPath = opts.MediaPath
	if db.mediaPath == "" {
		db.mediaPath = filepath.Join(dir, "media")
	}
	ctx := context.Background()
	switch {
	case backend == BackendRocksDB && db.dryRunOnly:
		// A dry run only reads: a read-only open that holds the LOCK as a writer would.
		db.store, err = openRocksDB(dir, opts.RocksDBHelper, true, true)
	case backend == BackendRocksDB:
		if !opts.ReadOnly {
			// Check on a read-only open first: a refused database is left as it was, byte for
			// byte (opening RocksDB for writing rewrites its MANIFEST and OPTIONS files).
			ro, err := openRocksDB(dir, opts.RocksDBHelper, true, false)
			if err != nil {
				return nil, err
			}
			probe := &DB{dir: dir, backend: backend, serverName: opts.ServerName, readOnly: true, store: ro, mediaPath: db.mediaPath}
			err = probe.check(ctx)
			probe.Close()
			if err != nil {
				return nil, err
			}
		}
		db.store, err = openRocksDB(dir, opts.RocksDBHelper, opts.ReadOnly, false)
	default:
		db.store, err = openSQLite(filepath.Join(dir, FileName), opts.ReadOnly)
	}
	if err != nil {
		return nil, err
	}
	if err := db.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// detectBackend returns the backend to open: the one asked for, or the one whose files dir holds.
func detectBackend(dir, want string) (string, error) {
	sqlitePath := filepath.Join(dir, FileName)
	_, errSQLite := os.Stat(sqlitePath)
	_, errRocks := os.Stat(filepath.Join(dir, "CURRENT"))
	hasSQLite, hasRocks := errSQLite == nil, errRocks == nil
	switch want {
	case BackendSQLite:
		if !hasSQLite {
			hint := "start Conduit once with database_backend = \"sqlite\" and database_path = " + dir + ", then stop it"
			if hasRocks {
				hint = "the directory holds a RocksDB database: import with the rocksdb backend (-backend rocksdb)"
			}
			return "", fmt.Errorf("%w at %s: %s", ErrNoDatabase, sqlitePath, hint)
		}
		return BackendSQLite, nil
	case BackendRocksDB:
		if !hasRocks {
			hint := "start Conduit once with database_backend = \"rocksdb\" and database_path = " + dir + ", then stop it"
			if hasSQLite {
				hint = "the directory holds Conduit's SQLite database: import with the sqlite backend (-backend sqlite)"
			}
			return "", fmt.Errorf("%w: no RocksDB database (CURRENT) in %s: %s", ErrNoDatabase, dir, hint)
		}
		return BackendRocksDB, nil
	case "":
		switch {
		case hasSQLite && hasRocks:
			return "", fmt.Errorf("%w: %s holds both %s and a RocksDB database: name the one Conduit's database_backend uses (-backend sqlite or -backend rocksdb)", ErrBackend, dir, FileName)
		case hasSQLite:
			return BackendSQLite, nil
		case hasRocks:
			return BackendRocksDB, nil
		}
		return "", fmt.Errorf("%w in %s (neither %s nor RocksDB's CURRENT): start Conduit once with this database_path, then stop it", ErrNoDatabase, dir, FileName)
	}
	return "", fmt.Errorf("%w: %q (Conduit's database_backend is \"sqlite\" or \"rocksdb\")", ErrBackend, want)
}

// check refuses a database Conduit did not create for this server name, listing every problem.
func (db *DB) check(ctx context.Context) error {
	var err error
	if db.tables, err = db.store.trees(ctx); err != nil {
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
	var missing, present []string
	for _, t := range db.expectedTables() {
		if !db.tables[t] {
			missing = append(missing, t)
		} else {
			present = append(present, t)
		}
	}
	problems, err := db.store.shape(ctx, present)
	if err != nil {
		return err
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

// Backend is the database's backend, BackendSQLite or BackendRocksDB.
func (db *DB) Backend() string { return db.backend }

// Path is where the database is: conduit.db for SQLite, the directory for RocksDB.
func (db *DB) Path() string {
	if db.backend == BackendSQLite {
		return filepath.Join(db.dir, FileName)
	}
	return db.dir
}

// Close releases the lock and the database.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.store == nil {
		return nil
	}
	err := db.store.close()
	db.store = nil
	return err
}
