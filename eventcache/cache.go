// Package eventcache stores verified Matrix events by event ID, with the room,
// depth and prev/auth edges needed to answer federation /backfill,
// /get_missing_events and /event from the cache alone, plus the per-room crawl
// bookkeeping that makes `shim archive` resumable.
//
// The default engine is one bbolt file (see docs/eventcache.md for why). Every
// write is one atomic, fsync'd transaction: a crash leaves either all or none of
// a batch. Any number of goroutines may read concurrently with one writer;
// writes are serialised internally, readers see consistent snapshots and never
// see part of a batch. Memory does not grow with the cache size: there is no
// in-memory index, only the engine's mapped pages, which the kernel may evict.
package eventcache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
)

// FormatVersion names the on-disk layout this build reads and writes.
const FormatVersion = "transition-matrix/eventcache 1"

var (
	// ErrNotFound is returned by Get when the cache holds no servable event with that ID.
	ErrNotFound = errors.New("eventcache: event not found")
	// ErrCorrupt is wrapped by Open when the file is damaged or not a bbolt file.
	ErrCorrupt = kv.ErrCorrupt
	// ErrFormat is wrapped by Open when the file holds another format version or another kind of data.
	ErrFormat = errors.New("eventcache: unsupported file format")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("eventcache: closed")
)

// Event is one stored event: its DAG coordinates, a few fields callers filter
// on, and the JSON exactly as received (minus "unsigned").
type Event struct {
	ID             string
	RoomID         string
	RoomVersion    string // filled from the room's meta when empty on Put
	Depth          int64
	Stream         int64 // optional arrival/stream order, 0 if unknown
	PrevEvents     []string
	AuthEvents     []string
	Type           string
	StateKey       *string // nil for non-state events
	OriginServerTS int64
	JSON           []byte // stored and returned verbatim, never re-encoded
	// Status is what the checks found; only statuses in Options.ServeStatuses are served.
	Status Status
}

// Ref names an event in a room, for frontier updates.
type Ref struct{ RoomID, EventID string }

// RoomMeta is per-room bookkeeping. Events and Frontier are maintained by the
// cache; RoomVersion, Complete and Progress are set by callers.
type RoomMeta struct {
	RoomID      string
	RoomVersion string
	Complete    bool   // the crawl reached m.room.create and nothing is left to fetch
	Events      int64  // events stored for the room (any status)
	Frontier    int64  // event IDs in the room's frontier
	Progress    []byte // opaque caller state (e.g. an upstream cursor), stored as given
}

// Batch is one atomic write: events to store, frontier IDs to add or remove,
// and room metas to set. Storing an event removes it from its room's
// frontier; adding an ID that is already stored is a no-op.
type Batch struct {
	Events         []Event
	FrontierAdd    []Ref
	FrontierRemove []Ref
	Rooms          []RoomMeta      // RoomVersion, Complete and Progress are set; counts are ignored
	Joins          []Join          // joins accepted through send_join
	StateSnapshots []StateSnapshot // room states before events, as answered
}

// Stats summarises the whole cache.
type Stats struct {
	Engine    string
	Path      string
	Events    int64
	Rooms     int64
	Frontier  int64
	DiskBytes int64
}

// Options tune Open; the zero value is ready to use.
type Options struct {
	// ServeStatuses are the statuses Get, GetMany, Backfill and MissingEvents
	// return; default every status that may be served (Status.Servable).
	ServeStatuses []Status
}

// Cache is an open event cache. It is safe for concurrent use.
type Cache struct {
	eng     kv.Engine
	path    string
	serve   map[Status]bool
	writeMu sync.Mutex
	closeMu sync.RWMutex
	closed  bool
}

// Open opens or creates the cache file at path (mode 0600, parent directories
// 0700) and checks its format version.
func Open(path string, opts Options) (*Cache, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("eventcache: %w", err)
	}
	eng, err := kv.OpenBolt(path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("eventcache: open %s: %w", path, err)
	}
	c, err := OpenEngine(eng, path, opts)
	if err != nil {
		eng.Close()
		return nil, err
	}
	return c, nil
}

// OpenEngine wraps an already open engine (used for engine comparisons and
// future backends); path is only used in messages and Stats.
func OpenEngine(eng kv.Engine, path string, opts Options) (*Cache, error) {
	c := &Cache{eng: eng, path: path, serve: map[Status]bool{}}
	if len(opts.ServeStatuses) == 0 {
		opts.ServeStatuses = servedStatuses
	}
	for _, s := range opts.ServeStatuses {
		c.serve[s] = true
	}
	err := eng.Update(func(w kv.Writer) error {
		v, err := w.Get(keyFormat)
		if err != nil {
			return err
		}
		if v != nil {
			if string(v) != FormatVersion {
				return fmt.Errorf("%w: %s holds %q, this build reads %q", ErrFormat, path, v, FormatVersion)
			}
			return nil
		}
		empty := true
		if err := w.Scan(nil, nil, func(k, _ []byte) (bool, error) { empty = false; return false, nil }); err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%w: %s has data but no event cache format marker", ErrFormat, path)
		}
		return w.Put(keyFormat, []byte(FormatVersion))
	})
	if err != nil {
		return nil, fmt.Errorf("eventcache: open %s: %w", path, err)
	}
	return c, nil
}

// Close closes the file; it waits for running reads and writes.
func (c *Cache) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.eng.Close()
}

// Path is the file the cache lives in.
func (c *Cache) Path() string { return c.path }

func (c *Cache) view(fn func(kv.Reader) error) error {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	return c.eng.View(fn)
}

func (c *Cache) update(fn func(kv.Writer) error) error {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.eng.Update(fn); err != nil {
		return err
	}
	c.dropResident()
	return nil
}

// dropResident lets the kernel drop the file's mapped pages from the process's resident memory
// after a write (when the engine can; it does so only past kv.DropFileResidentAbove), so a long
// archive's RSS stays flat whatever the file's size: writes walk and fault in pages all over
// the file. Failing advice costs memory, not data: it is ignored.
func (c *Cache) dropResident() {
	if d, ok := c.eng.(interface{ DropResidentPages() error }); ok {
		_ = d.DropResidentPages()
	}
}

// Put stores events in one atomic batch (replacing records with the same ID).
func (c *Cache) Put(events ...Event) error { return c.Apply(Batch{Events: events}) }

// SetRoomMeta sets a room's version, Complete flag and Progress.
func (c *Cache) SetRoomMeta(m RoomMeta) error { return c.Apply(Batch{Rooms: []RoomMeta{m}}) }

// AddFrontier adds event IDs still to fetch for a room.
func (c *Cache) AddFrontier(room string, ids ...string) error {
	return c.Apply(Batch{FrontierAdd: refs(room, ids)})
}

// RemoveFrontier removes event IDs from a room's frontier (e.g. ones upstream cannot serve).
func (c *Cache) RemoveFrontier(room string, ids ...string) error {
	return c.Apply(Batch{FrontierRemove: refs(room, ids)})
}

func refs(room string, ids []string) []Ref {
	out := make([]Ref, len(ids))
	for i, id := range ids {
		out[i] = Ref{RoomID: room, EventID: id}
	}
	return out
}

// present is the value of index and frontier entries: engines may not tell
// an empty value from an absent key.
var present = []byte{1}

func validate(e *Event) error {
	switch {
	case e.ID == "":
		return errors.New("eventcache: event without ID")
	case e.RoomID == "" || bytes.IndexByte([]byte(e.RoomID), 0) >= 0:
		return fmt.Errorf("eventcache: event %s: bad room ID %q", e.ID, e.RoomID)
	case len(e.JSON) == 0:
		return fmt.Errorf("eventcache: event %s: no JSON", e.ID)
	case e.Status == "":
		return fmt.Errorf("eventcache: event %s: no status", e.ID)
	}
	return nil
}

// batchWriter applies one Batch inside a write transaction, caching room
// metas so counters are read and written once.
type batchWriter struct {
	w     kv.Writer
	rooms map[string]*RoomMeta
	stats counters
}

func (b *batchWriter) room(id string) (*RoomMeta, error) {
	if m, ok := b.rooms[id]; ok {
		return m, nil
	}
	v, err := b.w.Get(roomKey(id))
	if err != nil {
		return nil, err
	}
	var m RoomMeta
	if v == nil {
		m = RoomMeta{RoomID: id}
		b.stats.Rooms++
	} else if m, err = decodeRoom(id, v); err != nil {
		return nil, err
	}
	b.rooms[id] = &m
	return &m, nil
}

func (b *batchWriter) removeFrontier(room, id string) error {
	k := frontierKey(room, id)
	v, err := b.w.Get(k)
	if err != nil || v == nil {
		return err
	}
	m, err := b.room(room)
	if err != nil {
		return err
	}
	m.Frontier--
	b.stats.Frontier--
	return b.w.Delete(k)
}

func (b *batchWriter) putEvent(e *Event) error {
	m, err := b.room(e.RoomID)
	if err != nil {
		return err
	}
	switch {
	case e.RoomVersion == "":
		e.RoomVersion = m.RoomVersion
	case m.RoomVersion == "":
		m.RoomVersion = e.RoomVersion
	case m.RoomVersion != e.RoomVersion:
		return fmt.Errorf("eventcache: event %s: room version %q, room %s has %q",
			e.ID, e.RoomVersion, e.RoomID, m.RoomVersion)
	}
	ek := eventKey(e.ID)
	old, err := b.w.Get(ek)
	if err != nil {
		return err
	}
	if old != nil {
		prev, err := decodeEvent(e.ID, old, false)
		if err != nil {
			return err
		}
		if err := b.w.Delete(depthKey(prev.RoomID, prev.Depth, prev.ID)); err != nil {
			return err
		}
		if prev.RoomID != e.RoomID { // moved between rooms: fix both counts
			pm, err := b.room(prev.RoomID)
			if err != nil {
				return err
			}
			pm.Events--
			m.Events++
		}
	} else {
		m.Events++
		b.stats.Events++
	}
	if err := b.w.Put(ek, encodeEvent(e)); err != nil {
		return err
	}
	if err := b.w.Put(depthKey(e.RoomID, e.Depth, e.ID), present); err != nil {
		return err
	}
	return b.removeFrontier(e.RoomID, e.ID)
}

// Apply writes a batch atomically: after a crash either all of it or none of it is in the file.
func (c *Cache) Apply(batch Batch) error {
	for i := range batch.Events {
		if err := validate(&batch.Events[i]); err != nil {
			return err
		}
	}
	for i := range batch.Joins {
		if err := validateJoin(&batch.Joins[i]); err != nil {
			return err
		}
	}
	for i := range batch.StateSnapshots {
		if err := validateSnapshot(&batch.StateSnapshots[i]); err != nil {
			return err
		}
	}
	return c.update(func(w kv.Writer) error {
		v, err := w.Get(keyStats)
		if err != nil {
			return err
		}
		st, err := decodeCounters(v)
		if err != nil {
			return err
		}
		b := &batchWriter{w: w, rooms: map[string]*RoomMeta{}, stats: st}
		for _, rm := range batch.Rooms {
			m, err := b.room(rm.RoomID)
			if err != nil {
				return err
			}
			m.RoomVersion, m.Complete, m.Progress = rm.RoomVersion, rm.Complete, slices.Clone(rm.Progress)
		}
		for i := range batch.Events {
			e := batch.Events[i] // copy: putEvent may fill RoomVersion
			if err := b.putEvent(&e); err != nil {
				return err
			}
		}
		for _, r := range batch.FrontierRemove {
			if err := b.removeFrontier(r.RoomID, r.EventID); err != nil {
				return err
			}
		}
		for _, r := range batch.FrontierAdd {
			if r.RoomID == "" || r.EventID == "" {
				return fmt.Errorf("eventcache: bad frontier ref %+v", r)
			}
			if v, err := w.Get(eventKey(r.EventID)); err != nil || v != nil {
				if err != nil {
					return err
				}
				continue // already stored: nothing to fetch
			}
			k := frontierKey(r.RoomID, r.EventID)
			if v, err := w.Get(k); err != nil || v != nil {
				if err != nil {
					return err
				}
				continue
			}
			m, err := b.room(r.RoomID)
			if err != nil {
				return err
			}
			m.Frontier++
			b.stats.Frontier++
			if err := w.Put(k, present); err != nil {
				return err
			}
		}
		if err := putJoinsAndSnapshots(w, batch.Joins, batch.StateSnapshots); err != nil {
			return err
		}
		for id, m := range b.rooms {
			if err := w.Put(roomKey(id), encodeRoom(m)); err != nil {
				return err
			}
		}
		return w.Put(keyStats, encodeCounters(b.stats))
	})
}

func (c *Cache) servable(e *Event) bool { return c.serve[e.Status] }

// Get returns the event with a servable status, or ErrNotFound.
func (c *Cache) Get(id string) (Event, error) {
	e, err := c.GetAnyStatus(id)
	if err == nil && !c.servable(&e) {
		return Event{}, ErrNotFound
	}
	return e, err
}

// GetAnyStatus returns the stored event whatever its status, or ErrNotFound.
func (c *Cache) GetAnyStatus(id string) (Event, error) {
	var e Event
	err := c.view(func(r kv.Reader) error {
		v, err := r.Get(eventKey(id))
		if err != nil {
			return err
		}
		if v == nil {
			return ErrNotFound
		}
		e, err = decodeEvent(id, v, true)
		return err
	})
	return e, err
}

// Has reports whether the cache holds a record for id, whatever its status.
func (c *Cache) Has(id string) (bool, error) {
	var ok bool
	err := c.view(func(r kv.Reader) error {
		v, err := r.Get(eventKey(id))
		ok = v != nil
		return err
	})
	return ok, err
}

// GetMany returns the servable events among ids, in the order asked, and the IDs it does not hold.
func (c *Cache) GetMany(ids []string) (found []Event, missing []string, err error) {
	err = c.view(func(r kv.Reader) error {
		for _, id := range ids {
			v, err := r.Get(eventKey(id))
			if err != nil {
				return err
			}
			if v == nil {
				missing = append(missing, id)
				continue
			}
			e, err := decodeEvent(id, v, true)
			if err != nil {
				return err
			}
			if !c.servable(&e) {
				missing = append(missing, id)
				continue
			}
			found = append(found, e)
		}
		return nil
	})
	return found, missing, err
}

// RoomMeta returns a room's bookkeeping; ok is false for a room the cache has never seen.
func (c *Cache) RoomMeta(room string) (m RoomMeta, ok bool, err error) {
	err = c.view(func(r kv.Reader) error {
		v, err := r.Get(roomKey(room))
		if err != nil || v == nil {
			return err
		}
		ok = true
		m, err = decodeRoom(room, v)
		return err
	})
	return m, ok, err
}

// Rooms lists every room's bookkeeping, in room ID order.
func (c *Cache) Rooms() ([]RoomMeta, error) {
	var out []RoomMeta
	err := c.view(func(r kv.Reader) error {
		return r.Scan([]byte{prefixRoom}, nil, func(k, v []byte) (bool, error) {
			m, err := decodeRoom(string(k[1:]), v)
			out = append(out, m)
			return true, err
		})
	})
	return out, err
}

// Count is the number of events stored for a room (any status).
func (c *Cache) Count(room string) (int64, error) {
	m, _, err := c.RoomMeta(room)
	return m.Events, err
}

// Frontier returns up to limit (all when limit <= 0) frontier event IDs of a
// room, in ID order, starting after the ID `after` ("" for the start).
func (c *Cache) Frontier(room, after string, limit int) ([]string, error) {
	var out []string
	prefix := roomPrefix(prefixFrontier, room)
	start := prefix
	if after != "" {
		start = append(frontierKey(room, after), 0)
	}
	err := c.view(func(r kv.Reader) error {
		return r.Scan(prefix, start, func(k, _ []byte) (bool, error) {
			out = append(out, string(k[len(prefix):]))
			return limit <= 0 || len(out) < limit, nil
		})
	})
	return out, err
}

// Stats returns whole-cache counters and the file size.
func (c *Cache) Stats() (Stats, error) {
	s := Stats{Engine: c.eng.Name(), Path: c.path}
	err := c.view(func(r kv.Reader) error {
		v, err := r.Get(keyStats)
		if err != nil {
			return err
		}
		ct, err := decodeCounters(v)
		s.Events, s.Rooms, s.Frontier = ct.Events, ct.Rooms, ct.Frontier
		return err
	})
	if err != nil {
		return s, err
	}
	s.DiskBytes, err = c.eng.DiskBytes()
	return s, err
}
