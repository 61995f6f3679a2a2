package world

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

func contentOf(pdu []byte) []byte { return []byte(gjson.GetBytes(pdu, "content").Raw) }

// signerFor returns the key an event is signed with.
func (g *gen) signerFor(pe *planEvent) ServerKey {
	switch {
	case pe.origin == g.opts.RemoteServerName:
		return g.w.RemoteKey
	case pe.oldKey:
		return g.w.OldKeys[0].ServerKey
	default:
		return g.w.SigningKey
	}
}

// authEventIDs selects auth_events per the auth rules: create (not in version 12, whose room
// ID implies it), power levels, the sender's membership and, for member events, join rules and
// the target's membership.
func authEventIDs(pe *planEvent, st *stateSnap, domainless bool) []string {
	if pe.typ == "m.room.create" {
		return []string{}
	}
	out := []string{}
	add := func(typ, key string) {
		if id, ok := st.get(StateKey{typ, key}); ok {
			for _, x := range out {
				if x == id {
					return
				}
			}
			out = append(out, id)
		}
	}
	if !domainless {
		add("m.room.create", "")
	}
	add("m.room.power_levels", "")
	if pe.typ == "m.room.member" {
		switch pe.membership {
		case "join", "invite", "knock":
			add("m.room.join_rules", "")
		}
	}
	add("m.room.member", pe.sender)
	if pe.typ == "m.room.member" {
		add("m.room.member", *pe.stateKey)
	}
	return out
}

func (g *gen) buildRoom(p *roomPlan) error {
	r := p.room
	verImpl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(r.Version))
	if err != nil {
		return err
	}
	n := len(p.evs)
	r.Events = make([]*Event, n)
	r.stateBefore = make([]*stateSnap, n)
	r.stateAfter = make([]*stateSnap, n)
	r.index = make(map[string]int, n)
	r.eventsByID = make(map[string]*Event, n)
	v1refs := map[string]string{} // v1 event ID -> reference hash
	referenced := make([]bool, n)

	for i, pe := range p.evs {
		before := emptySnap
		var depth int64 = 1
		prevIDs := make([]string, 0, len(pe.prev))
		for k, j := range pe.prev {
			if k == 0 {
				before = r.stateAfter[j]
			} else if r.stateAfter[j] != before {
				return fmt.Errorf("event %d merges branches with different state", i)
			}
			depth = max(depth, r.Events[j].Depth+1)
			prevIDs = append(prevIDs, r.Events[j].ID)
			referenced[j] = true
		}
		authIDs := authEventIDs(pe, before, r.DomainlessIDs())

		content := pe.content
		redacts := ""
		if pe.relKind != relNone {
			target := r.Events[pe.relTarget].ID
			content = make(map[string]any, len(pe.content)+1)
			for k, v := range pe.content {
				content[k] = v
			}
			switch pe.relKind {
			case relRedact:
				redacts = target
				if r.Version == "11" || r.DomainlessIDs() {
					content["redacts"] = target
				}
			case relReplace:
				content["m.relates_to"] = map[string]any{"rel_type": "m.replace", "event_id": target}
			case relReply:
				content["m.relates_to"] = map[string]any{"m.in_reply_to": map[string]any{"event_id": target}}
			case relReaction:
				content["m.relates_to"] = map[string]any{"rel_type": "m.annotation", "event_id": target, "key": pe.content["key"]}
				delete(content, "key")
			}
		}
		contentJSON, err := json.Marshal(content)
		if err != nil {
			return err
		}
		key := g.signerFor(pe)

		var id string
		var pdu []byte
		if r.Version == "1" {
			id = pe.v1ID
			pdu, err = buildV1(verImpl, r.ID, pe, id, prevIDs, authIDs, v1refs, depth, redacts, contentJSON, key)
			if err == nil {
				v1refs[id], err = referenceHash(verImpl, pdu)
			}
		} else {
			proto := gmsl.ProtoEvent{
				SenderID: pe.sender, RoomID: r.ID, Type: pe.typ, StateKey: pe.stateKey,
				PrevEvents: prevIDs, AuthEvents: authIDs, Redacts: redacts, Depth: depth, Content: contentJSON,
			}
			if i == 0 && r.DomainlessIDs() {
				proto.RoomID = "" // version 12: the create event has no room_id
			}
			var built gmsl.PDU
			built, err = verImpl.NewEventBuilderFromProtoEvent(&proto).Build(
				time.UnixMilli(pe.ts), spec.ServerName(pe.origin), gmsl.KeyID(key.KeyID), key.Private)
			if err == nil {
				id, pdu = built.EventID(), built.JSON()
				if i == 0 && r.DomainlessIDs() {
					r.ID = "!" + id[1:] // the room ID is the create event's reference hash
				}
			}
		}
		if err != nil {
			return fmt.Errorf("event %d (%s): %w", i, pe.typ, err)
		}
		ev := &Event{
			ID: id, RoomID: r.ID, Type: pe.typ, StateKey: pe.stateKey, Sender: pe.sender, Origin: pe.origin,
			Depth: depth, PrevEvents: prevIDs, AuthEvents: authIDs, OriginServerTS: pe.ts, JSON: pdu,
			StreamOrdering: pe.stream, Membership: pe.membership, Redacts: redacts, SignedWithKey: key.KeyID,
		}
		r.Events[i] = ev
		r.index[id] = i
		r.eventsByID[id] = ev
		r.stateBefore[i] = before
		after := before
		if pe.stateKey != nil {
			delta := 0
			if pe.typ == "m.room.member" && serverOf(*pe.stateKey) == g.opts.ServerName {
				if old, ok := before.get(StateKey{"m.room.member", *pe.stateKey}); ok && r.eventsByID[old].Membership == "join" {
					delta--
				}
				if pe.membership == "join" {
					delta++
				}
			}
			after = before.with(StateKey{pe.typ, *pe.stateKey}, id, delta)
		}
		r.stateAfter[i] = after
		if redacts != "" {
			t := r.eventsByID[redacts]
			t.Redacted, t.RedactedBy = true, id
			if t.RedactedJSON, err = verImpl.RedactEventJSON(t.JSON); err != nil {
				return err
			}
		}
	}
	for i, ev := range r.Events {
		if !referenced[i] {
			r.extremities = append(r.extremities, ev.ID)
		}
	}
	sort.Strings(r.extremities)
	if p.firstLocalJoin >= 0 {
		r.FirstLocalJoin = r.Events[p.firstLocalJoin].ID
	}
	return nil
}

// buildV1 builds a room version 1 event: its event ID has a server part and
// it refers to other events by [id, {"sha256": reference hash}].
func buildV1(verImpl gmsl.IRoomVersion, roomID string, pe *planEvent, id string, prev, auth []string,
	refs map[string]string, depth int64, redacts string, content []byte, key ServerKey) ([]byte, error) {
	toRefs := func(ids []string) []any {
		out := make([]any, 0, len(ids))
		for _, x := range ids {
			out = append(out, []any{x, map[string]string{"sha256": refs[x]}})
		}
		return out
	}
	ev := map[string]any{
		"auth_events":      toRefs(auth),
		"prev_events":      toRefs(prev),
		"type":             pe.typ,
		"room_id":          roomID,
		"sender":           pe.sender,
		"content":          json.RawMessage(content),
		"depth":            depth,
		"event_id":         id,
		"origin":           pe.origin,
		"origin_server_ts": pe.ts,
	}
	if pe.stateKey != nil {
		ev["state_key"] = *pe.stateKey
		ev["prev_state"] = []any{}
	}
	if redacts != "" {
		ev["redacts"] = redacts
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	canon, err := gmsl.CanonicalJSON(raw)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canon)
	withHash, err := sjson.SetBytes(canon, "hashes", map[string]string{"sha256": base64.RawStdEncoding.EncodeToString(sum[:])})
	if err != nil {
		return nil, err
	}
	redacted, err := verImpl.RedactEventJSON(withHash)
	if err != nil {
		return nil, err
	}
	signedRedacted, err := gmsl.SignJSON(pe.origin, gmsl.KeyID(key.KeyID), key.Private, redacted)
	if err != nil {
		return nil, err
	}
	out, err := sjson.SetRawBytes(withHash, "signatures", []byte(gjson.GetBytes(signedRedacted, "signatures").Raw))
	if err != nil {
		return nil, err
	}
	return gmsl.CanonicalJSON(out)
}

// referenceHash is the sha256 of the redacted event without signatures and
// unsigned, unpadded base64: what room v1/v2 refs carry.
func referenceHash(verImpl gmsl.IRoomVersion, pdu []byte) (string, error) {
	redacted, err := verImpl.RedactEventJSON(pdu)
	if err != nil {
		return "", err
	}
	for _, k := range []string{"signatures", "unsigned"} {
		if redacted, err = sjson.DeleteBytes(redacted, k); err != nil {
			return "", err
		}
	}
	canon, err := gmsl.CanonicalJSON(redacted)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return base64.RawStdEncoding.EncodeToString(sum[:]), nil
}
