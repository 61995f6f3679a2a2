// Package rocksdbkv drives shim-rocksdb, the helper process (rocksdb-helper/ in this repository,
// installed by scripts/install-rocksdb-helper) that opens a Conduit RocksDB database with
// Conduit's options; the protocol and why it is a separate process are in docs/rocksdb.md.
package rocksdbkv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// HelperEnv names the environment variable that points at the shim-rocksdb binary.
const HelperEnv = "SHIM_ROCKSDB"

// HelperName is the helper binary's file name, looked up beside the running program and on PATH.
const HelperName = "shim-rocksdb"

// Protocol is the hello the helper answers with once the database is open.
const Protocol = "shim-rocksdb 1"

// Errors of Open and of the calls.
var (
	ErrNoHelper = errors.New("the RocksDB helper shim-rocksdb was not found")
	ErrInUse    = errors.New("RocksDB database locked by another process")
	ErrHelper   = errors.New("RocksDB helper failed")
)

// Options says how the helper opens the database.
type Options struct {
	// Helper is the shim-rocksdb binary ("" = FindHelper).
	Helper string
	// ReadOnly opens without RocksDB's LOCK and refuses writes.
	ReadOnly bool
	// Lock, with ReadOnly, holds RocksDB's LOCK all the same (a dry run): refused with ErrInUse
	// while another process has the database open for writing, and nothing in dir is written.
	Lock bool
	// Create makes a new, empty database when dir holds none (tests and fixtures only).
	Create bool
	// LogDir receives RocksDB's info LOG, so that the database directory is not touched by a
	// refused open ("" = a new temporary directory, removed at Close).
	LogDir string
}

// FindHelper returns the helper binary: $SHIM_ROCKSDB, else shim-rocksdb beside the running
// program, else shim-rocksdb on PATH.
func FindHelper() (string, error) {
	if p := os.Getenv(HelperEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v", ErrNoHelper, HelperEnv, p, err)
		}
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), HelperName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(HelperName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w (not in $%s, beside the shim, or on PATH): install it with scripts/install-rocksdb-helper (Python 3 and the rocksdict package) and put the %s it prints beside the shim or on PATH, or set %s to it", ErrNoHelper, HelperEnv, HelperName, HelperEnv)
}

// DB is one open database, held by one helper process. Calls serialise.
type DB struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	w      *bufio.Writer
	r      *bufio.Reader
	stdin  io.Closer
	stderr *bytes.Buffer
	logDir string
	rmLog  bool
	broken error
}

// Open starts the helper on dir. A database another process (Conduit) holds open for writing is
// refused with ErrInUse, before anything in dir is touched.
func Open(dir string, opts Options) (*DB, error) {
	helper := opts.Helper
	if helper == "" {
		var err error
		if helper, err = FindHelper(); err != nil {
			return nil, err
		}
	}
	db := &DB{logDir: opts.LogDir, stderr: &bytes.Buffer{}}
	if db.logDir == "" {
		d, err := os.MkdirTemp("", "shim-rocksdb-log-")
		if err != nil {
			return nil, err
		}
		db.logDir, db.rmLog = d, true
	}
	args := []string{"--log-dir", db.logDir}
	if opts.ReadOnly {
		args = append(args, "--read-only")
		if opts.Lock {
			args = append(args, "--lock")
		}
	}
	if opts.Create {
		args = append(args, "--create")
	}
	args = append(args, dir)
	db.cmd = exec.Command(helper, args...)
	db.cmd.Stderr = &lockedWriter{b: db.stderr}
	stdin, err := db.cmd.StdinPipe()
	if err != nil {
		db.cleanup()
		return nil, err
	}
	stdout, err := db.cmd.StdoutPipe()
	if err != nil {
		db.cleanup()
		return nil, err
	}
	if err := db.cmd.Start(); err != nil {
		db.cleanup()
		return nil, fmt.Errorf("%w: start %s: %v", ErrHelper, helper, err)
	}
	db.stdin = stdin
	db.w = bufio.NewWriterSize(stdin, 1<<16)
	db.r = bufio.NewReaderSize(stdout, 1<<16)
	hello, err := db.status()
	if err == nil {
		if hello, err = db.bytes(); err != nil {
			err = db.fail(err)
		}
	}
	if err != nil {
		db.kill() // waits, so that everything the helper wrote to stderr is in
		if msg := strings.TrimSpace(db.stderrText()); msg != "" && !strings.Contains(err.Error(), msg) {
			err = fmt.Errorf("%w (helper said: %s)", err, msg)
		}
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	if string(hello) != Protocol {
		db.kill()
		return nil, fmt.Errorf("%w: %s speaks %q, this shim needs %q (rebuild the helper from this release)", ErrHelper, helper, hello, Protocol)
	}
	return db, nil
}

type lockedWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<16 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (db *DB) cleanup() {
	if db.rmLog {
		_ = os.RemoveAll(db.logDir)
	}
}

func (db *DB) kill() {
	if db.stdin != nil {
		_ = db.stdin.Close()
	}
	if db.cmd != nil && db.cmd.Process != nil {
		_ = db.cmd.Process.Kill()
		_ = db.cmd.Wait()
	}
	db.cleanup()
}

// status reads an answer's status byte, and the message of an error.
func (db *DB) status() ([]byte, error) {
	if err := db.w.Flush(); err != nil {
		return nil, db.fail(err)
	}
	s, err := db.r.ReadByte()
	if err != nil {
		return nil, db.fail(err)
	}
	switch s {
	case 0:
		return nil, nil
	case 1, 2:
		msg, err := db.bytes()
		if err != nil {
			return nil, db.fail(err)
		}
		if s == 2 {
			return nil, fmt.Errorf("%w: %s (stop Conduit first)", ErrInUse, msg)
		}
		return nil, fmt.Errorf("%w: %s", ErrHelper, msg)
	}
	return nil, db.fail(fmt.Errorf("status byte %d", s))
}

// fail marks the helper broken: its stream is out of step, every later call fails.
func (db *DB) fail(err error) error {
	if db.broken == nil {
		msg := strings.TrimSpace(db.stderrText())
		if msg != "" {
			err = fmt.Errorf("%v (helper said: %s)", err, msg)
		}
		db.broken = fmt.Errorf("%w: %v", ErrHelper, err)
	}
	return db.broken
}

func (db *DB) stderrText() string {
	lw, ok := db.cmd.Stderr.(*lockedWriter)
	if !ok {
		return ""
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.b.String()
}

func (db *DB) bytes() ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(db.r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(db.r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (db *DB) putBytes(b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	db.w.Write(n[:])
	db.w.Write(b)
}

func (db *DB) begin() error {
	if db.broken != nil {
		return db.broken
	}
	if db.cmd == nil {
		return fmt.Errorf("%w: database closed", ErrHelper)
	}
	return nil
}

// ColumnFamilies lists the database's column families ("default" included).
func (db *DB) ColumnFamilies() ([]string, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return nil, err
	}
	db.w.WriteByte('c')
	if _, err := db.status(); err != nil {
		return nil, err
	}
	var n [4]byte
	if _, err := io.ReadFull(db.r, n[:]); err != nil {
		return nil, db.fail(err)
	}
	out := make([]string, 0, binary.BigEndian.Uint32(n[:]))
	for i := uint32(0); i < binary.BigEndian.Uint32(n[:]); i++ {
		b, err := db.bytes()
		if err != nil {
			return nil, db.fail(err)
		}
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out, nil
}

// Get reads one value of a column family.
func (db *DB) Get(cf string, key []byte) ([]byte, bool, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return nil, false, err
	}
	db.w.WriteByte('g')
	db.putBytes([]byte(cf))
	db.putBytes(key)
	if _, err := db.status(); err != nil {
		return nil, false, err
	}
	found, err := db.r.ReadByte()
	if err != nil {
		return nil, false, db.fail(err)
	}
	if found == 0 {
		return nil, false, nil
	}
	v, err := db.bytes()
	if err != nil {
		return nil, false, db.fail(err)
	}
	return v, true, nil
}

// Scan calls fn for every row of cf whose key starts with prefix, in key order. The rows are read
// in full before fn is called, so fn may call the DB.
func (db *DB) Scan(cf string, prefix []byte, fn func(k, v []byte) error) error {
	rows, err := db.scan(cf, prefix)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := fn(r[0], r[1]); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) scan(cf string, prefix []byte) ([][2][]byte, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return nil, err
	}
	db.w.WriteByte('s')
	db.putBytes([]byte(cf))
	db.putBytes(prefix)
	if _, err := db.status(); err != nil {
		return nil, err
	}
	var rows [][2][]byte
	var scanErr error
	for {
		tag, err := db.r.ReadByte()
		if err != nil {
			return nil, db.fail(err)
		}
		switch tag {
		case 0:
			if scanErr != nil {
				return nil, scanErr
			}
			return rows, nil
		case 1:
			k, err := db.bytes()
			if err != nil {
				return nil, db.fail(err)
			}
			v, err := db.bytes()
			if err != nil {
				return nil, db.fail(err)
			}
			rows = append(rows, [2][]byte{k, v})
		case 2:
			msg, err := db.bytes()
			if err != nil {
				return nil, db.fail(err)
			}
			scanErr = fmt.Errorf("%w: scan %s: %s", ErrHelper, cf, msg)
		default:
			return nil, db.fail(fmt.Errorf("scan row tag %d", tag))
		}
	}
}

// Op is one operation of a write batch: Put when Delete is false.
type Op struct {
	CF     string
	Key    []byte
	Value  []byte
	Delete bool
}

// Write applies ops as one RocksDB write batch, synced: all of them or none.
func (db *DB) Write(ops []Op) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return err
	}
	db.w.WriteByte('w')
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(ops)))
	db.w.Write(n[:])
	for _, op := range ops {
		if op.Delete {
			db.w.WriteByte('d')
		} else {
			db.w.WriteByte('p')
		}
		db.putBytes([]byte(op.CF))
		db.putBytes(op.Key)
		if !op.Delete {
			db.putBytes(op.Value)
		}
	}
	_, err := db.status()
	return err
}

// CreateColumnFamily creates cf with Conduit's options unless it exists (Conduit's open_tree).
func (db *DB) CreateColumnFamily(cf string) error {
	return db.simple('n', []byte(cf))
}

// DropColumnFamily removes cf and its rows (test fixtures only).
func (db *DB) DropColumnFamily(cf string) error {
	return db.simple('x', []byte(cf))
}

// Flush writes every column family's memtable to SST files.
func (db *DB) Flush() error { return db.simple('f', nil) }

func (db *DB) simple(op byte, arg []byte) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return err
	}
	db.w.WriteByte(op)
	if arg != nil {
		db.putBytes(arg)
	}
	_, err := db.status()
	return err
}

// Close closes the database (releasing RocksDB's LOCK) and waits for the helper to exit.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.cmd == nil {
		return nil
	}
	var err error
	if db.broken == nil {
		db.w.WriteByte('q')
		_, err = db.status()
	}
	_ = db.stdin.Close()
	if e := db.cmd.Wait(); e != nil && err == nil && db.broken == nil {
		err = fmt.Errorf("%w: %v: %s", ErrHelper, e, strings.TrimSpace(db.stderrText()))
	}
	db.cmd = nil
	db.cleanup()
	return err
}
