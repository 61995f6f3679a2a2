package eventcache

import (
	"fmt"

	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
)

// RoomEvents calls fn for every stored event of room, whatever its status, oldest first (depth
// ascending, then event ID), until fn returns false. Event JSON is copied.
func (c *Cache) RoomEvents(room string, fn func(Event) bool) error {
	return c.view(func(r kv.Reader) error {
		prefix := roomPrefix(prefixDepth, room)
		return r.Scan(prefix, prefix, func(k, _ []byte) (bool, error) {
			_, _, id, err := parseDepthKey(k)
			if err != nil {
				return false, err
			}
			v, err := r.Get(eventKey(id))
			if err != nil {
				return false, err
			}
			if v == nil {
				return false, fmt.Errorf("eventcache: depth index names %s, which is not stored: %w", id, errBadRecord)
			}
			e, err := decodeEvent(id, v, true)
			if err != nil {
				return false, err
			}
			return fn(e), nil
		})
	})
}

// StatusCounts counts a room's stored events by status.
func (c *Cache) StatusCounts(room string) (map[Status]int64, error) {
	out := map[Status]int64{}
	err := c.RoomEvents(room, func(e Event) bool {
		out[e.Status]++
		return true
	})
	return out, err
}
