package synapsesim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strconv"

	"github.com/tidwall/gjson"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// unsignedMode selects how a served PDU's "unsigned" looks.
type unsignedMode int

const (
	unsignedAge   unsignedMode = iota // {"age": N, ...}: /event, /backfill, /get_missing_events, /event_auth
	unsignedAgeTS                     // {"age_ts": ts, ...}: /state (Synapse serves the stored dict there)
)

// hiddenFromServer reports whether Synapse would prune ev when serving it to its own server name:
// history visibility "joined"/"invited" at the event and no local user joined (or invited) then.
func (s *Server) hiddenFromServer(room *world.Room, ev *world.Event) bool {
	switch room.HistoryVisibilityAt(ev.ID) {
	case "joined":
		return !room.LocalJoinedAt(ev.ID)
	case "invited":
		if room.LocalJoinedAt(ev.ID) {
			return false
		}
		st, _ := room.StateAfter(ev.ID)
		for k, id := range st.Map() {
			if k.Type == "m.room.member" && s.isLocal(k.StateKey) && room.Event(id).Membership == "invite" {
				return false
			}
		}
		return true
	}
	return false
}

// prunedJSON is the event's JSON after the room version's redaction algorithm (signatures and
// hashes kept), cached.
func (s *Server) prunedJSON(room *world.Room, ev *world.Event) []byte {
	if ev.Redacted && ev.RedactedJSON != nil {
		return ev.RedactedJSON
	}
	s.mu.Lock()
	if b, ok := s.pruneCache[ev.ID]; ok {
		s.mu.Unlock()
		return b
	}
	s.mu.Unlock()
	b, err := signing.RedactEvent(room.Version, ev.JSON)
	if err != nil {
		b = ev.JSON
	}
	s.mu.Lock()
	s.pruneCache[ev.ID] = b
	s.mu.Unlock()
	return b
}

// fedPDU is ev in federation format as Synapse serves it to itself: the stored bytes (pruned when
// redacted, or when filter is set and the event is hidden from the server) plus "unsigned".
func (s *Server) fedPDU(room *world.Room, ev *world.Event, filter bool, mode unsignedMode) []byte {
	body := ev.JSON
	if ev.Redacted || (filter && s.hiddenFromServer(room, ev)) {
		body = s.prunedJSON(room, ev)
	}
	var u obj
	if mode == unsignedAgeTS {
		u = append(u, kv{"age_ts", ev.OriginServerTS})
	}
	if rs := replacesState(room, ev); rs != "" {
		u = append(u, kv{"replaces_state", rs})
	}
	if ev.Membership == "invite" {
		u = append(u, kv{"invite_room_state", s.strippedState(room, ev)})
	}
	if ev.Redacted {
		u = append(u, kv{"redacted_by", ev.RedactedBy})
	}
	if mode == unsignedAge {
		u = append(u, kv{"age", s.nowMS() - ev.OriginServerTS})
	}
	ub, _ := u.MarshalJSON()
	return withUnsigned(body, ub)
}

// withUnsigned appends an "unsigned" member to a JSON object without re-encoding it.
func withUnsigned(pdu, unsigned []byte) []byte {
	p := bytes.TrimRight(pdu, " \t\r\n")
	out := make([]byte, 0, len(p)+len(unsigned)+13)
	out = append(out, p[:len(p)-1]...)
	if len(p) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"unsigned":`...)
	out = append(out, unsigned...)
	return append(out, '}')
}

// replacesState is the state event ev replaced, if any.
func replacesState(room *world.Room, ev *world.Event) string {
	if ev.StateKey == nil {
		return ""
	}
	st, ok := room.StateBefore(ev.ID)
	if !ok {
		return ""
	}
	id, _ := st.Get(ev.Type, *ev.StateKey)
	return id
}

// strippedState is the invite_room_state Synapse attaches to invites it sends.
func (s *Server) strippedState(room *world.Room, ev *world.Event) []obj {
	st, _ := room.StateBefore(ev.ID)
	out := []obj{}
	add := func(typ, key string) {
		id, ok := st.Get(typ, key)
		if !ok {
			return
		}
		e := room.Event(id)
		out = append(out, obj{{"type", typ}, {"state_key", key}, {"content", json.RawMessage(gjson.GetBytes(e.JSON, "content").Raw)}, {"sender", e.Sender}})
	}
	for _, t := range []string{"m.room.topic", "m.room.name", "m.room.join_rules", "m.room.canonical_alias", "m.room.avatar", "m.room.encryption"} {
		add(t, "")
	}
	add("m.room.member", ev.Sender)
	add("m.room.create", "")
	return out
}

// transaction wraps PDUs in Synapse's transaction shape {origin, origin_server_ts, pdus}.
func (s *Server) transaction(pdus [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"origin":`)
	o, _ := json.Marshal(s.w.ServerName)
	b.Write(o)
	b.WriteString(`,"origin_server_ts":`)
	b.WriteString(strconv.FormatInt(s.nowMS(), 10))
	b.WriteString(`,"pdus":`)
	b.Write(jsonArray(pdus))
	b.WriteByte('}')
	return b.Bytes()
}

func jsonArray(items [][]byte) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, p := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(p)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// clientEvent is ev in the client format Synapse 1.67 serves (legacy user_id and age on top).
func (s *Server) clientEvent(room *world.Room, ev *world.Event) obj {
	j := ev.JSON
	if ev.Redacted {
		j = s.prunedJSON(room, ev)
	}
	content := gjson.GetBytes(j, "content").Raw
	if content == "" {
		content = "{}"
	}
	age := s.nowMS() - ev.OriginServerTS
	o := obj{{"type", ev.Type}, {"room_id", ev.RoomID}, {"sender", ev.Sender}, {"content", json.RawMessage(content)}}
	if ev.StateKey != nil {
		o = append(o, kv{"state_key", *ev.StateKey})
	}
	if ev.Redacts != "" {
		o = append(o, kv{"redacts", ev.Redacts})
	}
	o = append(o, kv{"origin_server_ts", ev.OriginServerTS})
	var u obj
	rs := replacesState(room, ev)
	if rs != "" {
		u = append(u, kv{"replaces_state", rs})
	}
	var because obj
	if ev.Redacted {
		if red := room.Event(ev.RedactedBy); red != nil {
			because = s.clientEvent(room, red)
			u = append(u, kv{"redacted_by", ev.RedactedBy}, kv{"redacted_because", because})
		}
	}
	u = append(u, kv{"age", age})
	o = append(o, kv{"unsigned", u}, kv{"event_id", ev.ID}, kv{"user_id", ev.Sender}, kv{"age", age})
	if rs != "" {
		o = append(o, kv{"replaces_state", rs})
	}
	if because != nil {
		o = append(o, kv{"redacted_because", because})
	}
	return o
}

// refHash is a room v1/v2 event's reference hash: sha256 of the redacted event without
// withMembership adds MSC4115's unsigned.membership to a client event (client API only, not the
// admin API): the requester's membership at the event, "join" since the simulator serves client
// events only to members.
func withMembership(o obj) obj {
	for i := range o {
		if o[i].k == "unsigned" {
			if u, ok := o[i].v.(obj); ok {
				o[i].v = append(u, kv{"membership", "join"})
			}
		}
	}
	return o
}

// signatures and unsigned, in canonical JSON, unpadded base64.
func (s *Server) refHash(room *world.Room, ev *world.Event) string {
	s.mu.Lock()
	h, ok := s.refCache[ev.ID]
	s.mu.Unlock()
	if ok {
		return h
	}
	red, err := signing.RedactEvent(room.Version, ev.JSON)
	if err != nil {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(red))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return ""
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	raw, _ := json.Marshal(m)
	canon, err := signing.CanonicalJSON(raw)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(canon)
	h = base64.RawStdEncoding.EncodeToString(sum[:])
	s.mu.Lock()
	s.refCache[ev.ID] = h
	s.mu.Unlock()
	return h
}

// eventRefs renders event references in the room version's format: IDs, or [id, {sha256}] pairs in v1/v2.
func (s *Server) eventRefs(room *world.Room, ids []string) any {
	if room.Version != "1" && room.Version != "2" {
		return append([]string{}, ids...)
	}
	out := []any{}
	for _, id := range ids {
		if ev := room.Event(id); ev != nil {
			out = append(out, []any{id, map[string]string{"sha256": s.refHash(room, ev)}})
		}
	}
	return out
}

// sortNewestFirst orders events by (-depth, -stream_ordering), Synapse's backfill order.
func sortNewestFirst(evs []*world.Event) {
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].Depth != evs[j].Depth {
			return evs[i].Depth > evs[j].Depth
		}
		return evs[i].StreamOrdering > evs[j].StreamOrdering
	})
}

// sortOldestFirst orders events by (depth, stream_ordering).
func sortOldestFirst(evs []*world.Event) {
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].Depth != evs[j].Depth {
			return evs[i].Depth < evs[j].Depth
		}
		return evs[i].StreamOrdering < evs[j].StreamOrdering
	})
}
