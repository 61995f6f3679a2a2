package eventcache

import (
	"encoding/binary"
	"fmt"

	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
)

// Join is a join event the shim accepted through send_join. It is kept apart from the events
// (Synapse never saw it): it names the events the joining server's history starts from.
type Join struct {
	ID         string
	RoomID     string
	Depth      int64
	PrevEvents []string
	AuthEvents []string
	JSON       []byte // the PDU as the joining server sent it, minus "unsigned"
}

// StateSnapshot is the room state before an event (IDs of the state events and of their auth
// chain), as answered once; the state before an event never changes, so it is kept for good.
type StateSnapshot struct {
	EventID   string
	RoomID    string
	State     []string
	AuthChain []string
}

// Key prefixes of joins and state snapshots (see record.go for the others).
const (
	prefixJoin  = 'j'
	prefixState = 's'
)

func joinKey(id string) []byte { return append([]byte{prefixJoin}, id...) }

func stateKey(id string) []byte { return append([]byte{prefixState}, id...) }

func encodeJoin(j *Join) []byte {
	b := []byte{recordVersion}
	b = appendString(b, j.RoomID)
	b = binary.AppendVarint(b, j.Depth)
	b = appendStrings(b, j.PrevEvents)
	b = appendStrings(b, j.AuthEvents)
	return append(b, j.JSON...)
}

func decodeJoin(id string, v []byte) (Join, error) {
	d := decoder{b: v}
	if d.byte1() != recordVersion {
		return Join{}, fmt.Errorf("join %s: unknown record version: %w", id, errBadRecord)
	}
	j := Join{ID: id, RoomID: d.str(), Depth: d.varint(), PrevEvents: d.strs(), AuthEvents: d.strs()}
	if d.err != nil {
		return Join{}, fmt.Errorf("join %s: %w", id, d.err)
	}
	j.JSON = append([]byte(nil), d.b...)
	return j, nil
}

func encodeSnapshot(s *StateSnapshot) []byte {
	b := []byte{recordVersion}
	b = appendString(b, s.RoomID)
	b = appendStrings(b, s.State)
	return appendStrings(b, s.AuthChain)
}

func decodeSnapshot(id string, v []byte) (StateSnapshot, error) {
	d := decoder{b: v}
	if d.byte1() != recordVersion {
		return StateSnapshot{}, fmt.Errorf("state snapshot %s: unknown record version: %w", id, errBadRecord)
	}
	s := StateSnapshot{EventID: id, RoomID: d.str(), State: d.strs(), AuthChain: d.strs()}
	if d.err == nil && len(d.b) != 0 {
		d.err = errBadRecord
	}
	if d.err != nil {
		return StateSnapshot{}, fmt.Errorf("state snapshot %s: %w", id, d.err)
	}
	return s, nil
}

func validateJoin(j *Join) error {
	switch {
	case j.ID == "" || j.RoomID == "":
		return fmt.Errorf("eventcache: join %q without ID or room", j.ID)
	case len(j.JSON) == 0:
		return fmt.Errorf("eventcache: join %s: no JSON", j.ID)
	case len(j.PrevEvents) == 0:
		return fmt.Errorf("eventcache: join %s: no prev_events", j.ID)
	}
	return nil
}

func validateSnapshot(s *StateSnapshot) error {
	if s.EventID == "" || s.RoomID == "" {
		return fmt.Errorf("eventcache: state snapshot %q without event or room", s.EventID)
	}
	return nil
}

// putJoinsAndSnapshots writes a batch's joins and state snapshots (replacing records with the same ID).
func putJoinsAndSnapshots(w kv.Writer, joins []Join, snaps []StateSnapshot) error {
	for i := range joins {
		if err := w.Put(joinKey(joins[i].ID), encodeJoin(&joins[i])); err != nil {
			return err
		}
	}
	for i := range snaps {
		if err := w.Put(stateKey(snaps[i].EventID), encodeSnapshot(&snaps[i])); err != nil {
			return err
		}
	}
	return nil
}

// Join returns the join accepted with this event ID; ok is false when there is none.
func (c *Cache) Join(id string) (j Join, ok bool, err error) {
	err = c.view(func(r kv.Reader) error {
		v, err := r.Get(joinKey(id))
		if err != nil || v == nil {
			return err
		}
		ok = true
		j, err = decodeJoin(id, v)
		return err
	})
	return j, ok, err
}

// StateAt returns the stored state snapshot before eventID; ok is false when there is none.
func (c *Cache) StateAt(eventID string) (s StateSnapshot, ok bool, err error) {
	err = c.view(func(r kv.Reader) error {
		v, err := r.Get(stateKey(eventID))
		if err != nil || v == nil {
			return err
		}
		ok = true
		s, err = decodeSnapshot(eventID, v)
		return err
	})
	return s, ok, err
}

// Joins calls fn for every stored join, in event ID order, until fn returns false.
func (c *Cache) Joins(fn func(Join) bool) error {
	return c.view(func(r kv.Reader) error {
		return r.Scan([]byte{prefixJoin}, nil, func(k, v []byte) (bool, error) {
			j, err := decodeJoin(string(k[1:]), v)
			if err != nil {
				return false, err
			}
			return fn(j), nil
		})
	})
}

// checkJoinsAndSnapshots reports records of either kind that do not decode.
func checkJoinsAndSnapshots(r kv.Reader, report func(string, ...any) bool) error {
	err := r.Scan([]byte{prefixJoin}, nil, func(k, v []byte) (bool, error) {
		if _, err := decodeJoin(string(k[1:]), v); err != nil {
			return report("%v", err), nil
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	return r.Scan([]byte{prefixState}, nil, func(k, v []byte) (bool, error) {
		if _, err := decodeSnapshot(string(k[1:]), v); err != nil {
			return report("%v", err), nil
		}
		return true, nil
	})
}
