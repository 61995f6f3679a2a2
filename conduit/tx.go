package conduit

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"

	"github.com/transition-matrix/transition-matrix/internal/atomicfile"
)

// Changes counts what an Update wrote.
type Changes struct {
	// Written counts rows inserted or replaced because their bytes differed (or were missing).
	Written int
	// Unchanged counts rows that already held exactly the bytes to write.
	Unchanged int
	// Deleted counts rows removed (a replaced token, an account data row moved to a new count).
	Deleted int
	// Files counts media files written.
	Files int
	// Trees counts written and deleted rows per tree.
	Trees map[string]int
}

// Total is the number of rows and files written or deleted: 0 means the Update changed nothing.
func (c Changes) Total() int { return c.Written + c.Deleted + c.Files }

// Add sums two counts.
func (c Changes) Add(o Changes) Changes {
	out := Changes{Written: c.Written + o.Written, Unchanged: c.Unchanged + o.Unchanged, Deleted: c.Deleted + o.Deleted, Files: c.Files + o.Files, Trees: map[string]int{}}
	for k, v := range c.Trees {
		out.Trees[k] += v
	}
	for k, v := range o.Trees {
		out.Trees[k] += v
	}
	return out
}

// Tx is one SQLite transaction or RocksDB write batch of an Update. Counts come from global["c"], which is written once
// at commit and only ever raised.
type Tx struct {
	db      *DB
	ctx     context.Context
	changes Changes

	count      uint64 // global["c"] as raised so far
	countStart uint64

	// Markers Conduit keeps per change, allocated once per Update when something changed.
	deviceListChanged map[string]bool // user → bump userid_devicelistversion
	keysChanged       map[string]bool // user → keychangeid_userid[user 0xFF count]
	oneTimeKeyChanged map[string]bool // user → userid_lastonetimekeyupdate
	backupChanged     map[string]bool // user 0xFF version → backupid_etag

	createdFiles  []string          // media files this Update created, removed again if it fails
	replacedFiles map[string]string // media file → its previous bytes, moved aside until commit
}

// Update runs fn in one SQLite transaction or one RocksDB write batch: all of it is written, or nothing.
func (db *DB) Update(fn func(tx *Tx) error) (Changes, error) {
	return db.UpdateContext(context.Background(), fn)
}

// UpdateContext is Update with a context.
func (db *DB) UpdateContext(ctx context.Context, fn func(tx *Tx) error) (ch Changes, err error) {
	if db.dryRunOnly {
		return Changes{}, fmt.Errorf("%w: opened with Options.DryRun, which allows DryRunContext only", ErrReadOnly)
	}
	return db.update(ctx, fn)
}

func (db *DB) update(ctx context.Context, fn func(tx *Tx) error) (ch Changes, err error) {
	if db.readOnly {
		return Changes{}, fmt.Errorf("%w: Update needs Options.ReadOnly false", ErrReadOnly)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.store == nil {
		return Changes{}, fmt.Errorf("conduit: database closed")
	}
	if err := db.store.begin(ctx); err != nil {
		return Changes{}, err
	}
	tx := &Tx{
		db: db, ctx: ctx,
		changes:           Changes{Trees: map[string]int{}},
		deviceListChanged: map[string]bool{},
		keysChanged:       map[string]bool{},
		oneTimeKeyChanged: map[string]bool{},
		backupChanged:     map[string]bool{},
	}
	done := false
	defer func() {
		if done {
			return
		}
		// fn failed or panicked: undo the SQL and the files.
		db.store.rollback()
		tx.removeCreatedFiles()
		if r := recover(); r != nil {
			panic(r)
		}
	}()
	c, err := tx.counter()
	if err != nil {
		return Changes{}, err
	}
	tx.count, tx.countStart = c, c
	if err := fn(tx); err != nil {
		return Changes{}, err
	}
	if err := tx.finish(); err != nil {
		return Changes{}, err
	}
	if err := db.store.commit(ctx); err != nil {
		return Changes{}, err
	}
	done = true
	for _, aside := range tx.replacedFiles {
		_ = os.Remove(aside)
	}
	return tx.changes, nil
}

func (tx *Tx) counter() (uint64, error) {
	v, ok, err := tx.db.get(tx.ctx, "global", []byte("c"))
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: global[\"c\"] is %d bytes, not 8", ErrNotCreatedByConduit, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// nextCount allocates a count like Conduit's next_count.
func (tx *Tx) nextCount() uint64 {
	tx.count++
	return tx.count
}

// RaiseCounter makes sure global["c"] ends at least at n, so that Conduit's later counts never
// collide with a count used by the imported data (e.g. a numeric key backup version).
func (tx *Tx) RaiseCounter(n uint64) {
	if n > tx.count {
		tx.count = n
	}
}

// Counter is global["c"] as it will be after the transaction so far.
func (tx *Tx) Counter() uint64 { return tx.count }

// finish writes the per-change markers, then the counter.
func (tx *Tx) finish() error {
	for _, user := range sortedKeys(tx.deviceListChanged) {
		if err := tx.bumpDeviceListVersion(user); err != nil {
			return err
		}
	}
	for _, user := range sortedKeys(tx.keysChanged) {
		// Conduit's mark_device_key_update writes the user's own row and one per joined encrypted
		// room; rooms are joined later through the shim, so only the user's row is written.
		if err := tx.set("keychangeid_userid", join([]byte(user), be64(tx.nextCount())), []byte(user)); err != nil {
			return err
		}
	}
	for _, user := range sortedKeys(tx.oneTimeKeyChanged) {
		if err := tx.set("userid_lastonetimekeyupdate", []byte(user), be64(tx.nextCount())); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(tx.backupChanged) {
		if err := tx.set("backupid_etag", []byte(k), be64(tx.nextCount())); err != nil {
			return err
		}
	}
	if tx.count > tx.countStart {
		if err := tx.set("global", []byte("c"), be64(tx.count)); err != nil {
			return err
		}
	}
	return nil
}

// bumpDeviceListVersion increments userid_devicelistversion[user] like Conduit's increment: a
// missing or malformed value restarts at 1.
func (tx *Tx) bumpDeviceListVersion(user string) error {
	v, ok, err := tx.get("userid_devicelistversion", []byte(user))
	if err != nil {
		return err
	}
	n := uint64(1)
	if ok && len(v) == 8 {
		n = binary.BigEndian.Uint64(v) + 1
	}
	return tx.set("userid_devicelistversion", []byte(user), be64(n))
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (tx *Tx) get(tree string, key []byte) ([]byte, bool, error) {
	return tx.db.get(tx.ctx, tree, key)
}

// put writes key=value unless the row already holds exactly those bytes; it reports whether it wrote.
func (tx *Tx) put(tree string, key, value []byte) (bool, error) {
	old, ok, err := tx.get(tree, key)
	if err != nil {
		return false, err
	}
	if ok && bytes.Equal(old, value) {
		tx.changes.Unchanged++
		return false, nil
	}
	if err := tx.db.insert(tx.ctx, tree, key, value); err != nil {
		return false, err
	}
	tx.changes.Written++
	tx.changes.Trees[tree]++
	return true, nil
}

// set is put without the report.
func (tx *Tx) set(tree string, key, value []byte) error {
	_, err := tx.put(tree, key, value)
	return err
}

// del removes a row if present.
func (tx *Tx) del(tree string, key []byte) error {
	_, ok, err := tx.get(tree, key)
	if err != nil || !ok {
		return err
	}
	if err := tx.db.remove(tx.ctx, tree, key); err != nil {
		return err
	}
	tx.changes.Deleted++
	tx.changes.Trees[tree]++
	return nil
}

// removeCreatedFiles undoes the media files of a failed Update: new files go, replaced ones come back.
func (tx *Tx) removeCreatedFiles() {
	for _, p := range tx.createdFiles {
		_ = os.Remove(p)
	}
	tx.createdFiles = nil
	for final, aside := range tx.replacedFiles {
		_ = atomicfile.Move(aside, final)
	}
	tx.replacedFiles = nil
}
