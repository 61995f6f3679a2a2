package conduit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	_ "modernc.org/sqlite" // Conduit's SQLite backend, pure Go
)

// sqliteStore is Conduit's SQLite backend: <database_path>/conduit.db, one table per tree
// (src/database/abstraction/sqlite.rs), on one connection.
type sqliteStore struct {
	sql   *sql.DB
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

func openSQLite(path string, readOnly bool) (*sqliteStore, error) {
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	// busy_timeout 0: a database Conduit holds must fail at once, not after a wait.
	dsn := "file:" + escapeURIPath(path) + "?mode=" + mode + "&_pragma=busy_timeout(0)&_pragma=synchronous(NORMAL)"
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("conduit: open %s: %w", path, err)
	}
	sdb.SetMaxOpenConns(1)
	conn, err := sdb.Conn(context.Background())
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("conduit: open %s: %w", path, err)
	}
	s := &sqliteStore{sql: sdb, conn: conn, stmts: map[string]*sql.Stmt{}}
	if !readOnly {
		if err := s.lock(context.Background(), path); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// lock takes the exclusive lock for the life of the connection: locking_mode=EXCLUSIVE keeps
// every lock once taken, and BEGIN EXCLUSIVE fails with "database is locked" while another
// process (Conduit) has the database open in WAL mode.
func (s *sqliteStore) lock(ctx context.Context, path string) error {
	if _, err := s.conn.ExecContext(ctx, "PRAGMA locking_mode=EXCLUSIVE"); err != nil {
		return fmt.Errorf("conduit: %s: %w", path, err)
	}
	if _, err := s.conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		if isBusy(err) {
			return fmt.Errorf("%w: %s is open in another process (stop Conduit first): %v", ErrInUse, path, err)
		}
		return fmt.Errorf("conduit: lock %s: %w", path, err)
	}
	if _, err := s.conn.ExecContext(ctx, "COMMIT"); err != nil {
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

func (s *sqliteStore) trees(ctx context.Context) (map[string]bool, error) {
	rows, err := s.conn.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		if isBusy(err) {
			return nil, fmt.Errorf("%w: %v", ErrInUse, err)
		}
		return nil, fmt.Errorf("%w: not an SQLite database: %v", ErrNotCreatedByConduit, err)
	}
	out := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, err
		}
		out[name] = true
	}
	rows.Close()
	return out, rows.Err()
}

// shape lists the tables that do not have Conduit's columns (key BLOB PRIMARY KEY, value BLOB NOT NULL).
func (s *sqliteStore) shape(ctx context.Context, tables []string) ([]string, error) {
	columns, err := s.columns(ctx)
	if err != nil {
		return nil, err
	}
	want := []string{"key BLOB notnull=0 pk=1", "value BLOB notnull=1 pk=0"}
	var problems []string
	for _, t := range tables {
		if !slices.Equal(columns[t], want) {
			problems = append(problems, fmt.Sprintf("table %s has columns %v, not Conduit's (key BLOB PRIMARY KEY, value BLOB NOT NULL)", t, columns[t]))
		}
	}
	return problems, nil
}

// columns describes every table's columns in one query.
func (s *sqliteStore) columns(ctx context.Context) (map[string][]string, error) {
	rows, err := s.conn.QueryContext(ctx, `SELECT m.name, p.name, p.type, p."notnull", p.pk FROM sqlite_master AS m, pragma_table_info(m.name) AS p WHERE m.type = 'table' ORDER BY m.name, p.cid`)
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

// stmt returns a statement prepared on the one connection, cached by its text.
// Tree names come from this package only, never from input.
func (s *sqliteStore) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmts[query] = st
	return st, nil
}

// get reads one value; keys are always bound as BLOB (a TEXT key would be invisible to Conduit).
func (s *sqliteStore) get(ctx context.Context, tree string, key []byte) ([]byte, bool, error) {
	st, err := s.stmt(ctx, `SELECT value FROM "`+tree+`" WHERE key = ?`)
	if err != nil {
		return nil, false, err
	}
	var v []byte
	err = st.QueryRowContext(ctx, nonNil(key)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("conduit: read %s: %w", tree, err)
	}
	return nonNil(v), true, nil
}

// scan calls fn for every row whose key starts with prefix, in key order (Conduit's scan_prefix).
func (s *sqliteStore) scan(ctx context.Context, tree string, prefix []byte, fn func(k, v []byte) error) error {
	var rows *sql.Rows
	end := prefixEnd(prefix)
	query, args := `SELECT key, value FROM "`+tree+`" ORDER BY key`, []any(nil)
	switch {
	case len(prefix) == 0:
	case end == nil:
		query, args = `SELECT key, value FROM "`+tree+`" WHERE key >= ? ORDER BY key`, []any{prefix}
	default:
		query, args = `SELECT key, value FROM "`+tree+`" WHERE key >= ? AND key < ? ORDER BY key`, []any{prefix, end}
	}
	st, err := s.stmt(ctx, query)
	if err != nil {
		return err
	}
	rows, err = st.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("conduit: scan %s: %w", tree, err)
	}
	type kv struct{ k, v []byte }
	var all []kv
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		if !bytes.HasPrefix(k, prefix) {
			continue // a TEXT key never compares equal to BLOB bounds; skip anything odd
		}
		all = append(all, kv{nonNil(k), nonNil(v)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("conduit: scan %s: %w", tree, err)
	}
	// Rows are collected first so that fn may write through the same connection.
	for _, r := range all {
		if err := fn(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}

// insert writes one row (INSERT OR REPLACE, as Conduit), value bound as BLOB even when empty.
func (s *sqliteStore) insert(ctx context.Context, tree string, key, value []byte) error {
	st, err := s.stmt(ctx, `INSERT OR REPLACE INTO "`+tree+`" (key, value) VALUES (?, coalesce(?, X''))`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, nonNil(key), value); err != nil {
		return fmt.Errorf("conduit: write %s: %w", tree, err)
	}
	return nil
}

func (s *sqliteStore) remove(ctx context.Context, tree string, key []byte) error {
	st, err := s.stmt(ctx, `DELETE FROM "`+tree+`" WHERE key = ?`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, nonNil(key)); err != nil {
		return fmt.Errorf("conduit: delete from %s: %w", tree, err)
	}
	return nil
}

func (s *sqliteStore) begin(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("conduit: begin: %w", err)
	}
	return nil
}

func (s *sqliteStore) commit(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("conduit: commit: %w", err)
	}
	return nil
}

func (s *sqliteStore) rollback() {
	_, _ = s.conn.ExecContext(context.Background(), "ROLLBACK")
}

func (s *sqliteStore) close() error {
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = nil
	var err error
	if s.conn != nil {
		err = s.conn.Close()
		s.conn = nil
	}
	if s.sql != nil {
		if e := s.sql.Close(); err == nil {
			err = e
		}
		s.sql = nil
	}
	return err
}
