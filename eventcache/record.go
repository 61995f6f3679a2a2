package eventcache

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key layout in the engine (one ordered key space):
//
//	"\x00format"                           format version string
//	"\x00stats"                            global counters
//	"e" eventID                            event record
//	"r" roomID                             room meta record
//	"d" roomID 0x00 depth(8, BE, biased) eventID   depth index (value 0x01)
//	"f" roomID 0x00 eventID                crawl frontier (value 0x01)
//	"j" eventID                            join accepted through send_join (join.go)
//	"s" eventID                            state snapshot: the room state before the event (join.go)
//	"h", "g", "o"                          what Conduit was handed by /backfill (handover.go)
const (
	prefixEvent    = 'e'
	prefixRoom     = 'r'
	prefixDepth    = 'd'
	prefixFrontier = 'f'
)

var (
	keyFormat = []byte("\x00format")
	keyStats  = []byte("\x00stats")
)

const recordVersion = 1

var errBadRecord = errors.New("malformed record")

func eventKey(id string) []byte {
	k := make([]byte, 0, 1+len(id))
	return append(append(k, prefixEvent), id...)
}

func roomKey(room string) []byte {
	k := make([]byte, 0, 1+len(room))
	return append(append(k, prefixRoom), room...)
}

func roomPrefix(p byte, room string) []byte {
	k := make([]byte, 0, 2+len(room))
	return append(append(append(k, p), room...), 0)
}

// biasDepth maps a signed depth onto an unsigned value with the same order.
func biasDepth(d int64) uint64 { return uint64(d) ^ (1 << 63) }

func depthKey(room string, depth int64, id string) []byte {
	k := roomPrefix(prefixDepth, room)
	k = binary.BigEndian.AppendUint64(k, biasDepth(depth))
	return append(k, id...)
}

// parseDepthKey splits a depth index key; room is the part before 0x00.
func parseDepthKey(k []byte) (room string, depth int64, id string, err error) {
	for i := 1; i < len(k); i++ {
		if k[i] == 0 {
			if len(k) < i+1+8 {
				break
			}
			d := binary.BigEndian.Uint64(k[i+1 : i+9])
			return string(k[1:i]), int64(d ^ (1 << 63)), string(k[i+9:]), nil
		}
	}
	return "", 0, "", fmt.Errorf("depth index key %q: %w", k, errBadRecord)
}

func frontierKey(room, id string) []byte {
	return append(roomPrefix(prefixFrontier, room), id...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// encodeEvent serialises everything but the ID (which is the key); the JSON
// bytes go last, verbatim.
func encodeEvent(e *Event) []byte {
	n := 64 + len(e.RoomID) + len(e.RoomVersion) + len(e.Type) + len(e.Status) + len(e.JSON)
	for _, s := range e.PrevEvents {
		n += len(s) + 2
	}
	for _, s := range e.AuthEvents {
		n += len(s) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = appendString(b, e.RoomID)
	b = appendString(b, e.RoomVersion)
	b = appendString(b, e.Type)
	b = appendString(b, string(e.Status))
	if e.StateKey != nil {
		b = append(b, 1)
		b = appendString(b, *e.StateKey)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, e.Depth)
	b = binary.AppendVarint(b, e.Stream)
	b = binary.AppendVarint(b, e.OriginServerTS)
	b = appendStrings(b, e.PrevEvents)
	b = appendStrings(b, e.AuthEvents)
	return append(b, e.JSON...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errBadRecord
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs() []string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadRecord
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

// decodeEvent parses a record. The returned event's JSON aliases v unless
// copyJSON is set (engine memory is only valid inside its transaction).
func decodeEvent(id string, v []byte, copyJSON bool) (Event, error) {
	d := decoder{b: v}
	e := Event{ID: id}
	if d.byte1() != recordVersion {
		return Event{}, fmt.Errorf("event %s: unknown record version: %w", id, errBadRecord)
	}
	e.RoomID = d.str()
	e.RoomVersion = d.str()
	e.Type = d.str()
	e.Status = Status(d.str())
	if d.byte1() == 1 {
		sk := d.str()
		e.StateKey = &sk
	}
	e.Depth = d.varint()
	e.Stream = d.varint()
	e.OriginServerTS = d.varint()
	e.PrevEvents = d.strs()
	e.AuthEvents = d.strs()
	if d.err != nil {
		return Event{}, fmt.Errorf("event %s: %w", id, d.err)
	}
	if copyJSON {
		e.JSON = append([]byte(nil), d.b...)
	} else {
		e.JSON = d.b
	}
	return e, nil
}

// roomRecord is the stored form of RoomMeta.
func encodeRoom(m *RoomMeta) []byte {
	b := []byte{recordVersion}
	b = appendString(b, m.RoomVersion)
	if m.Complete {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, m.Events)
	b = binary.AppendVarint(b, m.Frontier)
	b = binary.AppendUvarint(b, uint64(len(m.Progress)))
	return append(b, m.Progress...)
}

func decodeRoom(room string, v []byte) (RoomMeta, error) {
	d := decoder{b: v}
	m := RoomMeta{RoomID: room}
	if d.byte1() != recordVersion {
		return RoomMeta{}, fmt.Errorf("room %s: unknown record version: %w", room, errBadRecord)
	}
	m.RoomVersion = d.str()
	m.Complete = d.byte1() == 1
	m.Events = d.varint()
	m.Frontier = d.varint()
	if p := d.str(); p != "" {
		m.Progress = []byte(p)
	}
	if d.err != nil {
		return RoomMeta{}, fmt.Errorf("room %s: %w", room, d.err)
	}
	return m, nil
}

type counters struct{ Events, Rooms, Frontier int64 }

func encodeCounters(c counters) []byte {
	b := []byte{recordVersion}
	b = binary.AppendVarint(b, c.Events)
	b = binary.AppendVarint(b, c.Rooms)
	return binary.AppendVarint(b, c.Frontier)
}

func decodeCounters(v []byte) (counters, error) {
	if v == nil {
		return counters{}, nil
	}
	d := decoder{b: v}
	if d.byte1() != recordVersion {
		return counters{}, fmt.Errorf("stats: %w", errBadRecord)
	}
	c := counters{Events: d.varint(), Rooms: d.varint(), Frontier: d.varint()}
	if d.err != nil {
		return counters{}, fmt.Errorf("stats: %w", d.err)
	}
	return c, nil
}
