// Package kv is the small storage interface the event cache is built on: an
// ordered byte-key store with atomic write transactions and consistent read
// snapshots. Any engine that provides it (bbolt today; pebble, SQLite or
// PostgreSQL with a bytea primary key tomorrow) can back the cache.
package kv

import "errors"

// ErrCorrupt is wrapped by engines when the store cannot be read as a valid file.
var ErrCorrupt = errors.New("storage file is corrupt")

// Engine is a transactional ordered key-value store. Update calls are
// serialised by the caller (one writer); View may run concurrently with
// Update and sees a consistent snapshot.
type Engine interface {
	// View runs fn on a read-only snapshot. Byte slices passed to or
	// returned inside fn are valid only until fn returns.
	View(fn func(Reader) error) error
	// Update runs fn in a write transaction that is committed durably and
	// atomically when fn returns nil and discarded otherwise.
	Update(fn func(Writer) error) error
	// Close releases the store.
	Close() error
	// Name is the engine's short name ("bbolt", "pebble", ...).
	Name() string
	// DiskBytes is the space the store uses on disk.
	DiskBytes() (int64, error)
}

// Reader reads within one snapshot.
type Reader interface {
	// Get returns the value of key, or nil when it is absent.
	Get(key []byte) ([]byte, error)
	// Scan calls fn for each key >= start that begins with prefix, in
	// ascending key order, until fn returns false or an error.
	Scan(prefix, start []byte, fn func(key, value []byte) (bool, error)) error
}

// Writer reads and writes within one write transaction; reads see the
// transaction's own writes.
type Writer interface {
	Reader
	Put(key, value []byte) error
	Delete(key []byte) error
}
