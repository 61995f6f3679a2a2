// Package synapsedb reads, read-only, what only Synapse's database holds: access tokens, one-time
// keys and fallback keys. It opens PostgreSQL (pgx) and SQLite (modernc.org/sqlite) databases of
// Synapse 1.67 (schema 72) and later; see ../shared/research/synapse-facts.md §4 for the tables.
package synapsedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/transition-matrix/transition-matrix/internal/pgreadonly"
)

// Backends, as DB.Backend reports them.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// DB is an open, read-only Synapse database.
type DB struct {
	// Now is the clock that decides which tokens have expired (default time.Now).
	Now func() time.Time

	sql     *sql.DB
	backend string
	where   string         // the DSN with its password redacted, or the SQLite file path
	dsn     pgreadonly.DSN // scrubs the DSN's password from every error (PostgreSQL only)
}

// requiredColumns lists, per table, the columns this package reads; Open checks each of them.
// Names and types follow synapse/storage/schema/main/full_schemas/72 (unchanged up to schema 94).
var requiredColumns = []struct{ table, columns string }{
	{"users", "name, deactivated"},
	{"devices", "user_id, device_id, hidden"},
	{"access_tokens", "id, user_id, device_id, token, valid_until_ms, puppets_user_id"},
	{"e2e_one_time_keys_json", "user_id, device_id, algorithm, key_id, key_json"},
	{"e2e_fallback_keys_json", "user_id, device_id, algorithm, key_id, key_json, used"},
}

// Open connects to the Synapse database named by dsn: a postgres:// or postgresql:// URL, or an
// SQLite file given as a path, sqlite://PATH or file:PATH. Nothing is ever written: PostgreSQL
// sessions are read-only, SQLite files are opened with mode=ro. Open checks that every table and
// column this package reads exists.
func Open(ctx context.Context, dsn string) (*DB, error) {
	var db *DB
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err = openPostgres(ctx, dsn)
	case dsn == "":
		return nil, errors.New("synapsedb: no Synapse database given")
	default:
		db, err = openSQLite(ctx, dsn)
	}
	if err != nil {
		return nil, err
	}
	if err := db.checkSchema(ctx); err != nil {
		db.sql.Close()
		return nil, err
	}
	return db, nil
}

func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	d, err := pgreadonly.ParseDSN(dsn)
	if err != nil {
		return nil, errors.New("synapsedb: the Synapse database DSN is not a valid URL (its text is not repeated here: it may hold a password)")
	}
	db := &DB{backend: Postgres, where: d.Redacted, dsn: d}
	if db.sql, err = pgreadonly.Open(dsn); err != nil {
		return nil, db.wrap("cannot parse the DSN of the Synapse database at", err)
	}
	if err := db.sql.PingContext(ctx); err != nil {
		db.sql.Close()
		return nil, db.connectError(err)
	}
	return db, nil
}

func openSQLite(ctx context.Context, dsn string) (*DB, error) {
	path := dsn
	for _, p := range []string{"sqlite://", "file:"} {
		path = strings.TrimPrefix(path, p)
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	db := &DB{backend: SQLite, where: path}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("synapsedb: Synapse SQLite database %s: %w", path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("synapsedb: Synapse SQLite database %s is a directory, not a file", path)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "query_only(1)")
	q.Add("_pragma", "busy_timeout(10000)")
	db.sql, err = sql.Open("sqlite", (&url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}).String())
	if err != nil {
		return nil, db.wrap("cannot open the Synapse SQLite database", err)
	}
	db.sql.SetMaxOpenConns(2)
	if err := db.sql.PingContext(ctx); err != nil {
		db.sql.Close()
		return nil, db.connectError(err)
	}
	return db, nil
}

// Close closes the connections.
func (db *DB) Close() error { return db.sql.Close() }

// Backend is Postgres or SQLite.
func (db *DB) Backend() string { return db.backend }

// String names the database for messages: the DSN with its password replaced by "xxxxx", or the
// SQLite file path.
func (db *DB) String() string { return db.where }

func (db *DB) now() time.Time {
	if db.Now != nil {
		return db.Now()
	}
	return time.Now()
}

// checkSchema runs a query that reads no rows but needs every required table and column.
func (db *DB) checkSchema(ctx context.Context) error { return db.checkColumns(ctx, requiredColumns) }

func (db *DB) checkColumns(ctx context.Context, cols []struct{ table, columns string }) error {
	for _, tc := range cols {
		rows, err := db.sql.QueryContext(ctx, "SELECT "+tc.columns+" FROM "+tc.table+" WHERE 1 = 0")
		if err == nil {
			err = rows.Close()
		}
		if err == nil {
			continue
		}
		switch {
		case isMissingTable(err):
			return fmt.Errorf("synapsedb: Synapse database at %s has no table %s: is this Synapse's database?", db.where, tc.table)
		case isMissingColumn(err):
			return fmt.Errorf("synapsedb: table %s of the Synapse database at %s lacks a column of (%s): is this the database of Synapse 1.67 or later? (%s)",
				tc.table, db.where, tc.columns, db.scrub(err.Error()))
		default:
			return db.connectError(err)
		}
	}
	return nil
}

func isMissingTable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "42P01" // undefined_table
	}
	return strings.Contains(err.Error(), "no such table")
}

func isMissingColumn(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "42703" // undefined_column
	}
	return strings.Contains(err.Error(), "no such column")
}

// connectError turns a failure to connect or to read into a message naming its cause.
func (db *DB) connectError(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return db.wrap("the Synapse database refused the login (wrong user or password?) at", err)
		case "3D000": // invalid_catalog_name
			return db.wrap("the Synapse database does not exist at", err)
		}
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return db.wrap("the Synapse SQLite file is damaged or not an SQLite database:", err)
		case sqlite3.SQLITE_CANTOPEN:
			return db.wrap("cannot open the Synapse SQLite file", err)
		}
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) || strings.Contains(err.Error(), "connect: ") || strings.Contains(err.Error(), "dial ") {
		return db.wrap("cannot reach the Synapse database at", err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return db.wrap("cannot connect to the Synapse database at", err)
	}
	return db.wrap("reading the Synapse database at", err)
}

// wrap formats "synapsedb: <what> <where>: <err>" with the password scrubbed.
func (db *DB) wrap(what string, err error) error {
	return &Error{msg: "synapsedb: " + what + " " + db.where + ": " + db.scrub(err.Error()), err: err}
}

func (db *DB) scrub(s string) string { return db.dsn.Scrub(s) }

// Error is a failure of the Synapse database; its message never holds the DSN's password.
type Error struct {
	msg string
	err error
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the driver's error (whose own text may hold connection details).
func (e *Error) Unwrap() error { return e.err }
