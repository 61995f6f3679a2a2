package conduittest

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/rocksdbkv"
	"github.com/transition-matrix/transition-matrix/internal/tb"
)

// BackendEnv names the environment variable that selects the backend FreshDB creates:
// "sqlite" (the default) or "rocksdb" (which needs the shim-rocksdb helper, see rocksdbkv.FindHelper).
const BackendEnv = "TM_CONDUIT_BACKEND"

// Backend is the backend FreshDB creates, from $TM_CONDUIT_BACKEND.
func Backend(t tb.TB) string {
	t.Helper()
	switch b := os.Getenv(BackendEnv); b {
	case "", conduit.BackendSQLite:
		return conduit.BackendSQLite
	case conduit.BackendRocksDB:
		return b
	default:
		t.Fatalf("%s=%q: want sqlite or rocksdb", BackendEnv, b)
		return ""
	}
}

// Helper returns the shim-rocksdb binary, failing the test when it cannot be found.
func Helper(t tb.TB) string {
	t.Helper()
	h, err := rocksdbkv.FindHelper()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// BackendOf says which backend's files dir holds.
func BackendOf(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, conduit.FileName)); err == nil {
		return conduit.BackendSQLite
	}
	return conduit.BackendRocksDB
}

// SetRaw writes one row of a tree directly, as bytes, behind Conduit's back.
func SetRaw(t tb.TB, dir, tree string, key, value []byte) {
	t.Helper()
	raw(t, dir, func(db *sql.DB) error {
		_, err := db.Exec(`INSERT OR REPLACE INTO "`+tree+`" (key, value) VALUES (?, coalesce(?, X''))`, key, value)
		return err
	}, func(db *rocksdbkv.DB) error {
		return db.Write([]rocksdbkv.Op{{CF: tree, Key: key, Value: nonNil(value)}})
	})
}

// DeleteRaw removes every row of a tree whose key starts with prefix (nil: all of them).
func DeleteRaw(t tb.TB, dir, tree string, prefix []byte) {
	t.Helper()
	raw(t, dir, func(db *sql.DB) error {
		_, err := db.Exec(`DELETE FROM "`+tree+`" WHERE substr(key, 1, ?) = ?`, len(prefix), nonNil(prefix))
		return err
	}, func(db *rocksdbkv.DB) error {
		var ops []rocksdbkv.Op
		if err := db.Scan(tree, prefix, func(k, _ []byte) error {
			ops = append(ops, rocksdbkv.Op{CF: tree, Key: k, Delete: true})
			return nil
		}); err != nil {
			return err
		}
		return db.Write(ops)
	})
}

// DropTree removes a whole tree (table or column family).
func DropTree(t tb.TB, dir, tree string) {
	t.Helper()
	raw(t, dir, func(db *sql.DB) error {
		_, err := db.Exec(`DROP TABLE "` + tree + `"`)
		return err
	}, func(db *rocksdbkv.DB) error { return db.DropColumnFamily(tree) })
}

func raw(t tb.TB, dir string, onSQLite func(*sql.DB) error, onRocks func(*rocksdbkv.DB) error) {
	t.Helper()
	if BackendOf(dir) == conduit.BackendSQLite {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, conduit.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := onSQLite(db); err != nil {
			t.Fatal(err)
		}
		return
	}
	db, err := rocksdbkv.Open(dir, rocksdbkv.Options{Helper: Helper(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := onRocks(db); err != nil {
		db.Close()
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// HoldOpen opens the database the way a running Conduit does (SQLite: a WAL connection kept
// open; RocksDB: opened for writing in another process, holding LOCK) until release is called.
func HoldOpen(t tb.TB, dir string) (release func()) {
	t.Helper()
	if BackendOf(dir) == conduit.BackendSQLite {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, conduit.FileName)+"?_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		var n int
		if err := db.QueryRow("SELECT count(*) FROM global").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return func() { db.Close() }
	}
	db, err := rocksdbkv.Open(dir, rocksdbkv.Options{Helper: Helper(t)})
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}
}

// StartLike opens the database for writing as Conduit's start does, writes one row and closes:
// the error is what Conduit would meet (nil when it could start).
func StartLike(t tb.TB, dir string) error {
	t.Helper()
	if BackendOf(dir) == conduit.BackendSQLite {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, conduit.FileName)+"?_pragma=busy_timeout(100)&_pragma=journal_mode(WAL)")
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec(`INSERT OR REPLACE INTO global VALUES (X'75', X'0000000000000001')`)
		return err
	}
	db, err := rocksdbkv.Open(dir, rocksdbkv.Options{Helper: Helper(t)})
	if err != nil {
		return err
	}
	err = db.Write([]rocksdbkv.Op{{CF: "global", Key: []byte("u"), Value: []byte{0, 0, 0, 0, 0, 0, 0, 1}}})
	if e := db.Close(); err == nil {
		err = e
	}
	return err
}

// Dump renders every row of every tree (on SQLite with its storage classes), to prove that a
// refusal or a dry run wrote nothing.
func Dump(t tb.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	if BackendOf(dir) == conduit.BackendSQLite {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, conduit.FileName)+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		var tables []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			tables = append(tables, n)
		}
		rows.Close()
		var parts []string
		for _, tb := range tables {
			parts = append(parts, `SELECT '`+tb+`', typeof(key), hex(key), typeof(value), hex(value) FROM "`+tb+`"`)
		}
		r, err := db.Query(strings.Join(parts, " UNION ALL ") + " ORDER BY 1, 3")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for r.Next() {
			var tb, a, k, c, v string
			r.Scan(&tb, &a, &k, &c, &v)
			fmt.Fprintf(&b, "%s %s:%s = %s:%s\n", tb, a, k, c, v)
		}
		return b.String()
	}
	db, err := rocksdbkv.Open(dir, rocksdbkv.Options{Helper: Helper(t), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfs, err := db.ColumnFamilies()
	if err != nil {
		t.Fatal(err)
	}
	for _, cf := range cfs {
		if err := db.Scan(cf, nil, func(k, v []byte) error {
			fmt.Fprintf(&b, "%s blob:%s = blob:%s\n", cf, strings.ToUpper(hex.EncodeToString(k)), strings.ToUpper(hex.EncodeToString(v)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
