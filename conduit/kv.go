package conduit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// errStop ends a scan early without an error.
var errStop = errors.New("stop scan")

// stmt returns a statement prepared on the database's one connection, cached by its text.
// Tree names come from this package only, never from input.
func (db *DB) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if s, ok := db.stmts[query]; ok {
		return s, nil
	}
	s, err := db.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	db.stmts[query] = s
	return s, nil
}

func (db *DB) knownTree(tree string) error {
	if !db.tables[tree] {
		return fmt.Errorf("conduit: the database has no table %s (version %d)", tree, db.version)
	}
	return nil
}

// get reads one value; keys are always bound as BLOB (a TEXT key would be invisible to Conduit).
func (db *DB) get(ctx context.Context, tree string, key []byte) ([]byte, bool, error) {
	if err := db.knownTree(tree); err != nil {
		return nil, false, err
	}
	s, err := db.stmt(ctx, `SELECT value FROM "`+tree+`" WHERE key = ?`)
	if err != nil {
		return nil, false, err
	}
	var v []byte
	err = s.QueryRowContext(ctx, nonNil(key)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("conduit: read %s: %w", tree, err)
	}
	return nonNil(v), true, nil
}

// scan calls fn for every row whose key starts with prefix, in key order (Conduit's scan_prefix).
func (db *DB) scan(ctx context.Context, tree string, prefix []byte, fn func(k, v []byte) error) error {
	if err := db.knownTree(tree); err != nil {
		return err
	}
	var rows *sql.Rows
	end := prefixEnd(prefix)
	switch {
	case len(prefix) == 0:
		s, err := db.stmt(ctx, `SELECT key, value FROM "`+tree+`" ORDER BY key`)
		if err != nil {
			return err
		}
		rows, err = s.QueryContext(ctx)
		if err != nil {
			return fmt.Errorf("conduit: scan %s: %w", tree, err)
		}
	case end == nil:
		s, err := db.stmt(ctx, `SELECT key, value FROM "`+tree+`" WHERE key >= ? ORDER BY key`)
		if err != nil {
			return err
		}
		rows, err = s.QueryContext(ctx, prefix)
		if err != nil {
			return fmt.Errorf("conduit: scan %s: %w", tree, err)
		}
	default:
		s, err := db.stmt(ctx, `SELECT key, value FROM "`+tree+`" WHERE key >= ? AND key < ? ORDER BY key`)
		if err != nil {
			return err
		}
		rows, err = s.QueryContext(ctx, prefix, end)
		if err != nil {
			return fmt.Errorf("conduit: scan %s: %w", tree, err)
		}
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
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// insert writes one row (INSERT OR REPLACE, as Conduit), value bound as BLOB even when empty.
func (db *DB) insert(ctx context.Context, tree string, key, value []byte) error {
	if err := db.knownTree(tree); err != nil {
		return err
	}
	s, err := db.stmt(ctx, `INSERT OR REPLACE INTO "`+tree+`" (key, value) VALUES (?, coalesce(?, X''))`)
	if err != nil {
		return err
	}
	if _, err := s.ExecContext(ctx, nonNil(key), value); err != nil {
		return fmt.Errorf("conduit: write %s: %w", tree, err)
	}
	return nil
}

func (db *DB) remove(ctx context.Context, tree string, key []byte) error {
	if err := db.knownTree(tree); err != nil {
		return err
	}
	s, err := db.stmt(ctx, `DELETE FROM "`+tree+`" WHERE key = ?`)
	if err != nil {
		return err
	}
	if _, err := s.ExecContext(ctx, nonNil(key)); err != nil {
		return fmt.Errorf("conduit: delete from %s: %w", tree, err)
	}
	return nil
}

// prefixEnd is the smallest key greater than every key starting with prefix (nil if none).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
