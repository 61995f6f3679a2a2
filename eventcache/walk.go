package eventcache

import (
	"container/heap"
	"slices"

	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
)

// walkItem is an event queued during a DAG walk; its JSON aliases engine
// memory and is copied only when the event is returned.
type walkItem struct{ ev Event }

// newestFirst orders by depth descending, then event ID ascending, so walks
// are deterministic when depths tie.
type newestFirst []walkItem

func (h newestFirst) Len() int { return len(h) }
func (h newestFirst) Less(i, j int) bool {
	if h[i].ev.Depth != h[j].ev.Depth {
		return h[i].ev.Depth > h[j].ev.Depth
	}
	return h[i].ev.ID < h[j].ev.ID
}
func (h newestFirst) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *newestFirst) Push(x any)   { *h = append(*h, x.(walkItem)) }
func (h *newestFirst) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// walker runs one newest-first walk back along prev_events inside one read snapshot.
type walker struct {
	c       *Cache
	r       kv.Reader
	room    string
	seen    map[string]bool // queued, emitted, missing or stop IDs
	queue   newestFirst
	missing []string
	// skipHanded leaves out events handed over in room (handover.go), and what lies behind them.
	skipHanded bool
}

// enqueue loads id and queues it; absent or unservable IDs go to missing,
// events of other rooms are ignored.
func (w *walker) enqueue(id string) error {
	if w.seen[id] {
		return nil
	}
	w.seen[id] = true
	if w.skipHanded {
		if h, err := w.r.Get(handedKey(w.room, id)); err != nil || h != nil {
			return err
		}
	}
	v, err := w.r.Get(eventKey(id))
	if err != nil {
		return err
	}
	if v == nil {
		w.missing = append(w.missing, id)
		return nil
	}
	e, err := decodeEvent(id, v, false)
	if err != nil {
		return err
	}
	if e.RoomID != w.room {
		return nil
	}
	if !w.c.servable(&e) {
		w.missing = append(w.missing, id)
		return nil
	}
	heap.Push(&w.queue, walkItem{e})
	return nil
}

func (w *walker) expand(e *Event) error {
	for _, p := range e.PrevEvents {
		if err := w.enqueue(p); err != nil {
			return err
		}
	}
	return nil
}

func emit(e Event) Event {
	e.JSON = slices.Clone(e.JSON)
	return e
}

// Backfill returns up to limit events of room reachable backwards from seeds
// through prev_events, seeds included, newest first (depth descending, then
// event ID). missing lists, sorted, the seeds and prev_events of returned
// events that the cache cannot serve, so the caller can fetch them upstream.
func (c *Cache) Backfill(room string, seeds []string, limit int) (events []Event, missing []string, err error) {
	return c.backfill(room, seeds, limit, false)
}

// backfill walks as Backfill does; skipHanded leaves out events handed over in room.
func (c *Cache) backfill(room string, seeds []string, limit int, skipHanded bool) (events []Event, missing []string, err error) {
	if limit <= 0 {
		return nil, nil, nil
	}
	err = c.view(func(r kv.Reader) error {
		w := &walker{c: c, r: r, room: room, seen: map[string]bool{}, skipHanded: skipHanded}
		for _, s := range seeds {
			if err := w.enqueue(s); err != nil {
				return err
			}
		}
		for w.queue.Len() > 0 && len(events) < limit {
			it := heap.Pop(&w.queue).(walkItem)
			events = append(events, emit(it.ev))
			if err := w.expand(&it.ev); err != nil {
				return err
			}
		}
		missing = w.missing
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(missing)
	return events, missing, nil
}

// MissingEvents answers get_missing_events: it walks prev_events back from
// latest (which are not returned), never entering earliest, skipping events
// with depth below minDepth, and returns up to limit events oldest first
// (when cut, the ones closest to latest are kept). missing lists, sorted,
// latest events and prev_events reached that the cache cannot serve.
func (c *Cache) MissingEvents(room string, earliest, latest []string, limit int, minDepth int64) (events []Event, missing []string, err error) {
	if limit <= 0 {
		return nil, nil, nil
	}
	err = c.view(func(r kv.Reader) error {
		w := &walker{c: c, r: r, room: room, seen: map[string]bool{}}
		for _, id := range earliest {
			w.seen[id] = true
		}
		var starts []Event
		for _, id := range latest {
			if w.seen[id] {
				continue
			}
			w.seen[id] = true
			v, err := r.Get(eventKey(id))
			if err != nil {
				return err
			}
			if v == nil {
				w.missing = append(w.missing, id)
				continue
			}
			e, err := decodeEvent(id, v, false)
			if err != nil {
				return err
			}
			if e.RoomID == room {
				starts = append(starts, e)
			}
		}
		for i := range starts {
			if err := w.expand(&starts[i]); err != nil {
				return err
			}
		}
		for w.queue.Len() > 0 && len(events) < limit {
			it := heap.Pop(&w.queue).(walkItem)
			if it.ev.Depth < minDepth {
				break // the queue is newest first: everything left is deeper than allowed
			}
			events = append(events, emit(it.ev))
			if err := w.expand(&it.ev); err != nil {
				return err
			}
		}
		missing = w.missing
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.Reverse(events)
	slices.Sort(missing)
	return events, missing, nil
}
