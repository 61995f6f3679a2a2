package eventcache

import (
	"errors"
	"fmt"

	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
)

// CheckIntegrity reads the whole cache in one snapshot and reports the first
// problems found: undecodable records, depth index entries that disagree with
// event records, stored events left in a frontier, and counters that do not
// match. It streams; memory grows with the number of rooms only.
func (c *Cache) CheckIntegrity() error {
	const maxProblems = 20
	var problems []error
	report := func(format string, a ...any) bool {
		problems = append(problems, fmt.Errorf(format, a...))
		return len(problems) < maxProblems
	}
	type roomCount struct{ events, frontier int64 }
	counts := map[string]*roomCount{}
	count := func(room string) *roomCount {
		rc := counts[room]
		if rc == nil {
			rc = &roomCount{}
			counts[room] = rc
		}
		return rc
	}
	var total counters
	err := c.view(func(r kv.Reader) error {
		err := r.Scan([]byte{prefixEvent}, nil, func(k, v []byte) (bool, error) {
			id := string(k[1:])
			e, err := decodeEvent(id, v, false)
			if err != nil {
				return report("%v", err), nil
			}
			total.Events++
			count(e.RoomID).events++
			if x, err := r.Get(depthKey(e.RoomID, e.Depth, id)); err != nil || x == nil {
				if err != nil {
					return false, err
				}
				return report("event %s: no depth index entry", id), nil
			}
			if x, err := r.Get(frontierKey(e.RoomID, id)); err != nil || x != nil {
				if err != nil {
					return false, err
				}
				return report("event %s: stored but still in the frontier", id), nil
			}
			return true, nil
		})
		if err != nil || len(problems) >= maxProblems {
			return err
		}
		err = r.Scan([]byte{prefixDepth}, nil, func(k, _ []byte) (bool, error) {
			room, depth, id, err := parseDepthKey(k)
			if err != nil {
				return report("%v", err), nil
			}
			v, err := r.Get(eventKey(id))
			if err != nil {
				return false, err
			}
			if v == nil {
				return report("depth index: event %s not stored", id), nil
			}
			e, err := decodeEvent(id, v, false)
			if err != nil {
				return false, nil // already reported
			}
			if e.RoomID != room || e.Depth != depth {
				return report("depth index: event %s at %s/%d, record says %s/%d", id, room, depth, e.RoomID, e.Depth), nil
			}
			return true, nil
		})
		if err != nil || len(problems) >= maxProblems {
			return err
		}
		err = r.Scan([]byte{prefixFrontier}, nil, func(k, _ []byte) (bool, error) {
			for i := 1; i < len(k); i++ {
				if k[i] == 0 {
					count(string(k[1:i])).frontier++
					total.Frontier++
					return true, nil
				}
			}
			return report("bad frontier key %q", k), nil
		})
		if err != nil || len(problems) >= maxProblems {
			return err
		}
		err = r.Scan([]byte{prefixRoom}, nil, func(k, v []byte) (bool, error) {
			room := string(k[1:])
			total.Rooms++
			m, err := decodeRoom(room, v)
			if err != nil {
				return report("%v", err), nil
			}
			rc := count(room)
			delete(counts, room)
			if m.Events != rc.events || m.Frontier != rc.frontier {
				return report("room %s: meta counts %d events/%d frontier, found %d/%d",
					room, m.Events, m.Frontier, rc.events, rc.frontier), nil
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		for room := range counts {
			report("room %s has events or frontier but no meta", room)
		}
		if err := checkJoinsAndSnapshots(r, report); err != nil {
			return err
		}
		v, err := r.Get(keyStats)
		if err != nil {
			return err
		}
		st, err := decodeCounters(v)
		if err != nil {
			report("%v", err)
		} else if st != total {
			report("stats say %+v, found %+v", st, total)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("eventcache: check %s: %w", c.path, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("eventcache: check %s: %w", c.path, errors.Join(problems...))
	}
	return nil
}
