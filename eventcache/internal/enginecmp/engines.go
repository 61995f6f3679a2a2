// Package enginecmp measures the event cache on the candidate engines
// (bbolt, pebble, SQLite via modernc). It is a separate module so the
// candidates that lost never enter the main go.mod.
package enginecmp

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
	_ "modernc.org/sqlite"
)

// Engines opens each candidate in dir.
var Engines = map[string]func(dir string) (kv.Engine, string, error){
	"bbolt": func(dir string) (kv.Engine, string, error) {
		p := filepath.Join(dir, "events.bolt")
		e, err := kv.OpenBolt(p, 0o600)
		return e, p, err
	},
	"pebble": func(dir string) (kv.Engine, string, error) {
		p := filepath.Join(dir, "events.pebble")
		e, err := OpenPebble(p)
		return e, p, err
	},
	"sqlite": func(dir string) (kv.Engine, string, error) {
		p := filepath.Join(dir, "events.sqlite")
		e, err := OpenSQLite(p)
		return e, p, err
	},
}

// Pebble is a kv.Engine on a pebble LSM directory.
type Pebble struct {
	db    *pebble.DB
	cache *pebble.Cache
	dir   string
}

// OpenPebble opens a pebble store with a 32 MiB block cache and 16 MiB memtables.
func OpenPebble(dir string) (*Pebble, error) {
	cache := pebble.NewCache(32 << 20)
	db, err := pebble.Open(dir, &pebble.Options{Cache: cache, MemTableSize: 16 << 20, Logger: quietLogger{}})
	if err != nil {
		cache.Unref()
		return nil, err
	}
	return &Pebble{db: db, cache: cache, dir: dir}, nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

func (p *Pebble) Name() string { return "pebble" }
func (p *Pebble) Close() error {
	err := p.db.Close()
	p.cache.Unref()
	return err
}
func (p *Pebble) DiskBytes() (int64, error) { return dirSize(p.dir) }

type pebbleTx struct {
	get   func([]byte) ([]byte, error)
	iter  func(o *pebble.IterOptions) (*pebble.Iterator, error)
	batch *pebble.Batch
}

func (t pebbleTx) Get(k []byte) ([]byte, error) { return t.get(k) }
func (t pebbleTx) Put(k, v []byte) error        { return t.batch.Set(k, v, nil) }
func (t pebbleTx) Delete(k []byte) error        { return t.batch.Delete(k, nil) }
func (t pebbleTx) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	if bytes.Compare(start, prefix) < 0 {
		start = prefix
	}
	it, err := t.iter(&pebble.IterOptions{LowerBound: start, UpperBound: successor(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		more, err := fn(it.Key(), it.Value())
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

func getCopy(v []byte, c interface{ Close() error }, err error) ([]byte, error) {
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(v)
	return out, c.Close()
}

func (p *Pebble) View(fn func(kv.Reader) error) error {
	s := p.db.NewSnapshot()
	defer s.Close()
	return fn(pebbleTx{
		get:  func(k []byte) ([]byte, error) { return getCopy(s.Get(k)) },
		iter: func(o *pebble.IterOptions) (*pebble.Iterator, error) { return s.NewIter(o) },
	})
}

func (p *Pebble) Update(fn func(kv.Writer) error) error {
	b := p.db.NewIndexedBatch()
	defer b.Close()
	if err := fn(pebbleTx{
		get:   func(k []byte) ([]byte, error) { return getCopy(b.Get(k)) },
		iter:  func(o *pebble.IterOptions) (*pebble.Iterator, error) { return b.NewIter(o) },
		batch: b,
	}); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// successor is the smallest key greater than every key with the prefix (nil: none).
func successor(prefix []byte) []byte {
	s := bytes.Clone(prefix)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

// SQLite is a kv.Engine on one SQLite table (WAL, synchronous=FULL).
type SQLite struct {
	db   *sql.DB
	path string
}

// OpenSQLite opens or creates the SQLite file at path.
func OpenSQLite(path string) (*SQLite, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID`); err != nil {
		db.Close()
		return nil, err
	}
	return &SQLite{db: db, path: path}, nil
}

func (s *SQLite) Name() string { return "sqlite" }
func (s *SQLite) Close() error { return s.db.Close() }
func (s *SQLite) DiskBytes() (int64, error) {
	var n int64
	for _, suf := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(s.path + suf); err == nil {
			n += fi.Size()
		}
	}
	return n, nil
}

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) Get(k []byte) ([]byte, error) {
	var v []byte
	err := t.tx.QueryRow(`SELECT v FROM kv WHERE k = ?`, k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

func (t sqlTx) Put(k, v []byte) error {
	_, err := t.tx.Exec(`INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, k, v)
	return err
}

func (t sqlTx) Delete(k []byte) error {
	_, err := t.tx.Exec(`DELETE FROM kv WHERE k = ?`, k)
	return err
}

func (t sqlTx) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	if bytes.Compare(start, prefix) < 0 {
		start = prefix
	}
	q, args := `SELECT k, v FROM kv WHERE k >= ? ORDER BY k`, []any{start}
	if end := successor(prefix); end != nil {
		q, args = `SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k`, []any{start, end}
	}
	rows, err := t.tx.Query(q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		if more, err := fn(k, v); err != nil || !more {
			return err
		}
	}
	return rows.Err()
}

func (s *SQLite) View(fn func(kv.Reader) error) error {
	tx, err := s.db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(sqlTx{tx})
}

func (s *SQLite) Update(fn func(kv.Writer) error) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	if err := fn(sqlTx{tx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
