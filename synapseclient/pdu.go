package synapseclient

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/signing"
)

// PDU is one federation-format event: Raw holds the bytes exactly as Synapse sent them (never
// re-encoded), the other fields are parsed from them for callers' convenience.
type PDU struct {
	Raw            json.RawMessage
	EventID        string // only when the JSON carries one (room versions 1 and 2, admin raw formats)
	RoomID         string
	Type           string
	Sender         string
	StateKey       *string // nil for non-state events
	Depth          int64
	OriginServerTS int64
	// PrevEvents and AuthEvents are event IDs; v1/v2 rooms' [[id,{sha256:...}]] pairs are reduced to the IDs.
	// AuthEvents are the auth events the auth rules use: in room version 12 (a room ID without a
	// server part) the m.room.create the room ID names comes first, although no event lists it.
	PrevEvents []string
	AuthEvents []string
}

// IsState reports whether the event has a state_key.
func (p *PDU) IsState() bool { return p.StateKey != nil }

// ParsePDU parses one event without copying raw; raw must be a JSON object.
func ParsePDU(raw []byte) (PDU, error) {
	if !gjson.ValidBytes(raw) {
		return PDU{}, fmt.Errorf("event is not valid JSON")
	}
	r := gjson.ParseBytes(raw)
	return pduFromResult(raw, r)
}

func pduFromResult(raw []byte, r gjson.Result) (PDU, error) {
	if !r.IsObject() {
		return PDU{}, fmt.Errorf("event is not a JSON object")
	}
	p := PDU{Raw: json.RawMessage(raw)}
	var err error
	str := func(name string, dst *string) {
		v := r.Get(name)
		switch v.Type {
		case gjson.Null:
		case gjson.String:
			*dst = v.String()
		default:
			if err == nil {
				err = fmt.Errorf("event field %q is not a string", name)
			}
		}
	}
	str("event_id", &p.EventID)
	str("room_id", &p.RoomID)
	str("type", &p.Type)
	str("sender", &p.Sender)
	if sk := r.Get("state_key"); sk.Exists() {
		if sk.Type != gjson.String {
			return PDU{}, fmt.Errorf("event field \"state_key\" is not a string")
		}
		s := sk.String()
		p.StateKey = &s
	}
	if p.Depth, err = intField(r, "depth", err); err != nil {
		return PDU{}, err
	}
	if p.OriginServerTS, err = intField(r, "origin_server_ts", err); err != nil {
		return PDU{}, err
	}
	if p.PrevEvents, err = eventRefs(r.Get("prev_events"), "prev_events"); err != nil {
		return PDU{}, err
	}
	if p.AuthEvents, err = eventRefs(r.Get("auth_events"), "auth_events"); err != nil {
		return PDU{}, err
	}
	if p.Type == "m.room.create" && p.StateKey != nil && *p.StateKey == "" {
		if p.RoomID == "" {
			if p.RoomID, err = roomIDOfCreate(p.EventID, raw, r); err != nil {
				return PDU{}, err
			}
		}
	} else if create, ok := signing.CreateEventIDOf(p.RoomID); ok && !slices.Contains(p.AuthEvents, create) {
		p.AuthEvents = append([]string{create}, p.AuthEvents...)
	}
	return p, nil
}

// withoutAddedRoomID undoes what Synapse's admin raw formats (room messages, fetch_event) do to
// the create event of a version 12 room: they give it the room_id it was signed without (seen on
// Synapse 1.163.2), so its signature and reference hash no longer hold. The room_id, the one
// its event ID names, is dropped from Raw; RoomID keeps it.
func withoutAddedRoomID(p PDU) (PDU, error) {
	version := gjson.GetBytes(p.Raw, "content.room_version").String()
	if p.Type != "m.room.create" || p.StateKey == nil || *p.StateKey != "" ||
		!signing.DomainlessRoomIDs(version) || !gjson.GetBytes(p.Raw, "room_id").Exists() {
		return p, nil
	}
	raw, err := sjson.DeleteBytes(p.Raw, "room_id")
	if err != nil {
		return PDU{}, err
	}
	id := p.EventID
	if id == "" {
		if id, err = signing.EventID(version, raw); err != nil {
			return PDU{}, err
		}
	}
	if p.RoomID != signing.RoomIDOfCreate(id) {
		return PDU{}, fmt.Errorf("version 12 create event %s claims room %s", id, p.RoomID)
	}
	p.Raw = raw
	return p, nil
}

// roomIDOfCreate is the room ID of a create event without room_id: in room version 12 and later
// "!" and the event's reference hash (its event_id when the JSON carries one, as admin formats
// do); "" for other versions, where the event is broken and its checks will say so.
func roomIDOfCreate(eventID string, raw []byte, r gjson.Result) (string, error) {
	if !signing.DomainlessRoomIDs(r.Get("content.room_version").String()) {
		return "", nil
	}
	if eventID != "" {
		return signing.RoomIDOfCreate(eventID), nil
	}
	id, err := signing.EventID(r.Get("content.room_version").String(), raw)
	if err != nil {
		return "", fmt.Errorf("m.room.create event: %w", err)
	}
	return signing.RoomIDOfCreate(id), nil
}

func intField(r gjson.Result, name string, prev error) (int64, error) {
	if prev != nil {
		return 0, prev
	}
	v := r.Get(name)
	switch v.Type {
	case gjson.Null:
		return 0, nil
	case gjson.Number:
		n, err := strconv.ParseInt(v.Raw, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("event field %q is not an integer: %s", name, v.Raw)
		}
		return n, nil
	}
	return 0, fmt.Errorf("event field %q is not a number", name)
}

// eventRefs reads prev_events/auth_events in either shape: ["$id", ...] (v3+) or
// [["$id", {"sha256": "..."}], ...] (v1, v2).
func eventRefs(v gjson.Result, name string) ([]string, error) {
	if !v.Exists() || v.Type == gjson.Null {
		return nil, nil
	}
	if !v.IsArray() {
		return nil, fmt.Errorf("event field %q is not an array", name)
	}
	ids := []string{}
	var err error
	v.ForEach(func(_, e gjson.Result) bool {
		switch {
		case e.Type == gjson.String:
			ids = append(ids, e.String())
		case e.IsArray() && e.Get("0").Type == gjson.String:
			ids = append(ids, e.Get("0").String())
		default:
			err = fmt.Errorf("event field %q holds %s, not an event ID or [id, hashes] pair", name, e.Type)
			return false
		}
		return true
	})
	return ids, err
}

// rawOf returns r's bytes as a sub-slice of body (no copy, no re-encoding).
func rawOf(body []byte, r gjson.Result) []byte {
	if r.Index > 0 && r.Index+len(r.Raw) <= len(body) && string(body[r.Index:r.Index+len(r.Raw)]) == r.Raw {
		return body[r.Index : r.Index+len(r.Raw) : r.Index+len(r.Raw)]
	}
	return []byte(r.Raw)
}

// parsePDUList parses the array at path in body into PDUs whose Raw are slices of body.
func parsePDUList(endpoint string, body []byte, root gjson.Result, path string, required bool) ([]PDU, error) {
	arr := root.Get(path)
	if !arr.Exists() || arr.Type == gjson.Null {
		if required {
			return nil, fmt.Errorf("synapseclient: %s: response has no %q", endpoint, path)
		}
		return nil, nil
	}
	if !arr.IsArray() {
		return nil, fmt.Errorf("synapseclient: %s: %q is not an array", endpoint, path)
	}
	pdus := []PDU{}
	var err error
	i := 0
	arr.ForEach(func(_, e gjson.Result) bool {
		var p PDU
		p, err = pduFromResult(rawOf(body, e), e)
		if err != nil {
			err = fmt.Errorf("synapseclient: %s: %s[%d]: %w", endpoint, path, i, err)
			return false
		}
		pdus = append(pdus, p)
		i++
		return true
	})
	return pdus, err
}

// parseObject checks body is a JSON object and returns its gjson root.
func parseObject(endpoint string, body []byte) (gjson.Result, error) {
	if !gjson.ValidBytes(body) {
		return gjson.Result{}, fmt.Errorf("synapseclient: %s: response is not valid JSON", endpoint)
	}
	r := gjson.ParseBytes(body)
	if !r.IsObject() {
		return gjson.Result{}, fmt.Errorf("synapseclient: %s: response is not a JSON object", endpoint)
	}
	return r, nil
}

// Transaction is a transaction-shaped federation answer ({origin, origin_server_ts, pdus}), as
// /backfill and /event return.
type Transaction struct {
	Origin         string
	OriginServerTS int64
	PDUs           []PDU
}

func parseTransaction(endpoint string, body []byte) (*Transaction, error) {
	root, err := parseObject(endpoint, body)
	if err != nil {
		return nil, err
	}
	tx := &Transaction{Origin: root.Get("origin").String()}
	if ts := root.Get("origin_server_ts"); ts.Type == gjson.Number {
		tx.OriginServerTS = ts.Int()
	}
	if tx.PDUs, err = parsePDUList(endpoint, body, root, "pdus", true); err != nil {
		return nil, err
	}
	return tx, nil
}

// Bool decodes Synapse's booleans, which the admin API often sends as 0/1 integers.
type Bool bool

// UnmarshalJSON accepts true, false, 0, 1 (any non-zero number is true) and null (false).
func (b *Bool) UnmarshalJSON(data []byte) error {
	switch s := string(data); s {
	case "true":
		*b = true
	case "false", "null":
		*b = false
	default:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("synapseclient: %s is not a boolean", s)
		}
		*b = f != 0
	}
	return nil
}
