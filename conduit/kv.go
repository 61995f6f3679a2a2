package conduit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// errStop ends a scan early without an error.
var errStop = errors.New("stop scan")

// kvStore is one of Conduit's backends, opened: SQLite's conduit.db or the RocksDB directory.
// Writes between begin and commit are one transaction (SQLite) or one write batch (RocksDB);
// reads inside it see them.
type kvStore interface {
	get(ctx context.Context, tree string, key []byte) ([]byte, bool, error)
	// scan calls fn for every row whose key starts with prefix, in key order; fn may write.
	scan(ctx context.Context, tree string, prefix []byte, fn func(k, v []byte) error) error
	insert(ctx context.Context, tree string, key, value []byte) error
	remove(ctx context.Context, tree string, key []byte) error
	begin(ctx context.Context) error
	commit(ctx context.Context) error
	rollback()
	// trees lists the trees the database holds.
	trees(ctx context.Context) (map[string]bool, error)
	// shape lists what is wrong with the storage of the given trees (nothing to check on RocksDB).
	shape(ctx context.Context, trees []string) ([]string, error)
	close() error
}

func (db *DB) knownTree(tree string) error {
	if !db.tables[tree] {
		return fmt.Errorf("conduit: the database has no tree %s (version %d)", tree, db.version)
	}
	return nil
}

// get reads one value of a tree.
func (db *DB) get(ctx context.Context, tree string, key []byte) ([]byte, bool, error) {
	if err := db.knownTree(tree); err != nil {
		return nil, false, err
	}
	return db.store.get(ctx, tree, key)
}

// scan calls fn for every row whose key starts with prefix, in key order (Conduit's scan_prefix);
// fn returning errStop ends the scan without an error.
func (db *DB) scan(ctx context.Context, tree string, prefix []byte, fn func(k, v []byte) error) error {
	if err := db.knownTree(tree); err != nil {
		return err
	}
	err := db.store.scan(ctx, tree, prefix, fn)
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// insert writes one row (Conduit's insert: replaces any previous value).
func (db *DB) insert(ctx context.Context, tree string, key, value []byte) error {
	if err := db.knownTree(tree); err != nil {
		return err
	}
	return db.store.insert(ctx, tree, nonNil(key), nonNil(value))
}

func (db *DB) remove(ctx context.Context, tree string, key []byte) error {
	if err := db.knownTree(tree); err != nil {
		return err
	}
	return db.store.remove(ctx, tree, nonNil(key))
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
