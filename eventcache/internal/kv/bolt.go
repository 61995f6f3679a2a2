package kv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var boltBucket = []byte("kv")

// scanDropBytes is how much a transaction reads between two drops of the file's mapped pages
// from the process's resident memory; a Get counts faultAround besides its value, since the
// kernel maps up to 64 KiB of cached file around each page fault.
const (
	scanDropBytes = 16 << 20
	faultAround   = 64 << 10
)

// Bolt is an Engine on one bbolt file: a copy-on-write B+tree, memory-mapped
// read-only, with one fsync'd meta page switch per committed transaction.
type Bolt struct {
	db   *bolt.DB
	path string
}

// OpenBolt opens or creates the bbolt file at path with the given file mode.
func OpenBolt(path string, mode os.FileMode) (b *Bolt, err error) {
	if err := precheckBolt(path); err != nil {
		return nil, err
	}
	// bbolt trusts page contents: turn a fault or panic while it reads a
	// damaged file into an error instead of a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	db, err := bolt.Open(path, mode, &bolt.Options{
		Timeout:      2 * time.Second, // another process holds the file lock
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("%s is locked by another process: %w", path, err)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
			errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
		}
		return nil, err
	}
	b = &Bolt{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bolt) Name() string { return "bbolt" }

func (b *Bolt) Close() error { return b.db.Close() }

func (b *Bolt) DiskBytes() (int64, error) {
	fi, err := os.Stat(b.path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (b *Bolt) View(fn func(Reader) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		return fn(boltTx{tx.Bucket(boltBucket), new(int)})
	})
}

func (b *Bolt) Update(fn func(Writer) error) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		return fn(boltTx{tx.Bucket(boltBucket), new(int)})
	})
}

// boltTx is one transaction's bucket and the bytes it read since it last dropped the file's
// mapped pages from resident memory.
type boltTx struct {
	b    *bolt.Bucket
	read *int
}

// readBytes counts n bytes read; past scanDropBytes the mapped pages are dropped, so a long
// read (a scan, many gets) faults the file in and out instead of holding it resident.
func (t boltTx) readBytes(n int) {
	if *t.read += n; *t.read >= scanDropBytes {
		*t.read = 0
		if fileResidentAbove(DropFileResidentAbove) {
			_ = dropMapped(t.b.Tx())
		}
	}
}

func (t boltTx) Get(key []byte) ([]byte, error) {
	v := t.b.Get(key)
	t.readBytes(len(v) + faultAround)
	return v, nil
}

func (t boltTx) Put(key, value []byte) error { return t.b.Put(key, value) }

func (t boltTx) Delete(key []byte) error { return t.b.Delete(key) }

func (t boltTx) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	if bytes.Compare(start, prefix) < 0 {
		start = prefix
	}
	c := t.b.Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		t.readBytes(len(k) + len(v))
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}
