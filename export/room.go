package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// exportRoom reads one room: details, extremities and aliases from the admin and client APIs,
// state and auth chain from the federation API.
func (e *exporter) exportRoom(ctx context.Context, sum synapseclient.RoomSummary) (*exportfmt.RoomFile, error) {
	admin := e.cli.Admin()
	rid := sum.RoomID
	details, err := admin.Room(ctx, rid)
	if err != nil {
		if errors.Is(err, synapseclient.ErrNotFound) {
			return nil, errGone
		}
		return nil, err
	}
	exts, err := admin.ForwardExtremities(ctx, rid)
	if err != nil {
		return nil, err
	}
	r := &exportfmt.RoomFile{RoomID: rid, RoomVersion: details.Version, ForwardExtremities: []string{},
		LocalMembers: map[string]string{}, RemoteMembers: map[string]string{}, FederatedWith: []string{},
		Published: bool(details.Public), AuthChain: []json.RawMessage{}}
	for _, x := range exts {
		r.ForwardExtremities = append(r.ForwardExtremities, x.EventID)
	}
	sort.Strings(r.ForwardExtremities)
	if r.RoomVersion == "" {
		r.RoomVersion = "1"
	}
	clientState, err := admin.RoomState(ctx, rid)
	if err != nil {
		return nil, err
	}
	fedOK := false
	if details.JoinedLocalMembers > 0 && len(r.ForwardExtremities) > 0 {
		err := e.federationState(ctx, r, clientState)
		switch {
		case err == nil:
			fedOK = true
		case errors.Is(err, synapseclient.ErrHostNotInRoom): // every local user left meanwhile
		default:
			return nil, err
		}
	}
	if !fedOK {
		if err := e.clientFormatState(ctx, r, clientState); err != nil {
			return nil, err
		}
	}
	fillMembers(r, e.serverName)
	aliases, err := e.cli.AdminAsUser().RoomAliases(ctx, rid)
	if err != nil && !errors.Is(err, synapseclient.ErrForbidden) && !errors.Is(err, synapseclient.ErrNotFound) {
		return nil, err
	}
	sort.Strings(aliases)
	r.Aliases = nonNilSlice(aliases)
	return r, nil
}

// federationState fetches /state at every forward extremity and keeps the PDUs of the current
// state as the admin API lists it (fetching any that are missing, e.g. an extremity that is itself
// a state event), plus the auth chain of that state.
func (e *exporter) federationState(ctx context.Context, r *exportfmt.RoomFile, clientState []json.RawMessage) error {
	fed := e.cli.Federation()
	pool := map[string]synapseclient.PDU{}
	// checked maps the bytes of every PDU checked so far to its event ID: /state at each
	// extremity repeats most of the state and auth chain, and checking (redaction, canonical
	// JSON, two hashes) is the export's largest CPU cost.
	checked := map[string]string{}
	add := func(pdus []synapseclient.PDU, want map[string]bool) error {
		for _, p := range pdus {
			id, ok := checked[string(p.Raw)]
			if !ok {
				var err error
				if id, err = checkPDU(r.RoomVersion, r.RoomID, p.Raw); err != nil {
					return err
				}
				checked[string(p.Raw)] = id
			}
			if want != nil && !want[id] {
				return fmt.Errorf("room %s: Synapse answered event %s, which was not asked for", r.RoomID, id)
			}
			p.EventID = id
			pool[id] = p
		}
		return nil
	}
	for _, x := range r.ForwardExtremities {
		var st *synapseclient.State
		err := e.fedCall(ctx, func() error {
			var err error
			st, err = fed.State(ctx, r.RoomID, x)
			return err
		})
		if err != nil {
			return err
		}
		if err := add(st.PDUs, nil); err != nil {
			return err
		}
		if err := add(st.AuthChain, nil); err != nil {
			return err
		}
	}
	fetch := func(id string) error {
		var tx *synapseclient.Transaction
		err := e.fedCall(ctx, func() error {
			var err error
			tx, err = fed.Event(ctx, id)
			return err
		})
		if err != nil {
			return err
		}
		return add(tx.PDUs, map[string]bool{id: true})
	}
	var stateIDs []string
	for _, ev := range clientState {
		id := gjson.GetBytes(ev, "event_id").String()
		if id == "" {
			return fmt.Errorf("room %s: a current state event from the admin API has no event_id", r.RoomID)
		}
		stateIDs = append(stateIDs, id)
		if _, ok := pool[id]; !ok {
			if err := fetch(id); err != nil {
				return err
			}
		}
	}
	// The auth chain: everything the state's auth_events reach; fetch what /state did not bring.
	chain := map[string]bool{}
	var stack []string
	for _, id := range stateIDs {
		stack = append(stack, pool[id].AuthEvents...)
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if chain[id] {
			continue
		}
		if _, ok := pool[id]; !ok {
			if err := fetch(id); err != nil {
				return fmt.Errorf("room %s: auth event %s: %w", r.RoomID, id, err)
			}
		}
		chain[id] = true
		stack = append(stack, pool[id].AuthEvents...)
	}
	state := make([]synapseclient.PDU, 0, len(stateIDs))
	for _, id := range stateIDs {
		if pool[id].StateKey == nil {
			return fmt.Errorf("room %s: current state event %s has no state_key", r.RoomID, id)
		}
		state = append(state, pool[id])
	}
	sort.Slice(state, func(i, j int) bool {
		if state[i].Type != state[j].Type {
			return state[i].Type < state[j].Type
		}
		return *state[i].StateKey < *state[j].StateKey
	})
	auth := make([]synapseclient.PDU, 0, len(chain))
	for id := range chain {
		auth = append(auth, pool[id])
	}
	sort.Slice(auth, func(i, j int) bool {
		if auth[i].Depth != auth[j].Depth {
			return auth[i].Depth < auth[j].Depth
		}
		return auth[i].EventID < auth[j].EventID
	})
	var err error
	if r.State, err = stripAll(state); err != nil {
		return err
	}
	if r.AuthChain, err = stripAll(auth); err != nil {
		return err
	}
	r.StateFormat = exportfmt.StateFederation
	return nil
}

func stripAll(pdus []synapseclient.PDU) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(pdus))
	for _, p := range pdus {
		b, err := withoutUnsigned(p.Raw)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// clientFormatState keeps the admin API's client-format state (minus the ages, which change with
// every request) and, as Synapse may have dropped it, the joined members from the admin API.
func (e *exporter) clientFormatState(ctx context.Context, r *exportfmt.RoomFile, clientState []json.RawMessage) error {
	r.StateFormat = exportfmt.StateClient
	r.AuthChain = []json.RawMessage{}
	type keyed struct {
		typ, key string
		raw      json.RawMessage
	}
	evs := make([]keyed, 0, len(clientState))
	for _, ev := range clientState {
		b, err := sjsonDelete(ev, "age", "unsigned.age")
		if err != nil {
			return fmt.Errorf("room %s: client-format state: %w", r.RoomID, err)
		}
		evs = append(evs, keyed{gjson.GetBytes(b, "type").String(), gjson.GetBytes(b, "state_key").String(), b})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].typ != evs[j].typ {
			return evs[i].typ < evs[j].typ
		}
		return evs[i].key < evs[j].key
	})
	r.State = make([]json.RawMessage, 0, len(evs))
	for _, k := range evs {
		r.State = append(r.State, k.raw)
	}
	if len(r.State) == 0 {
		members, err := e.cli.Admin().RoomMembers(ctx, r.RoomID)
		if err != nil {
			return err
		}
		for _, m := range members {
			if serverOf(m) == e.serverName {
				r.LocalMembers[m] = "join"
			} else {
				r.RemoteMembers[m] = "join"
			}
		}
	}
	return nil
}

// sjsonDelete drops the members at paths, keeping the other bytes.
func sjsonDelete(obj []byte, paths ...string) (json.RawMessage, error) {
	if !json.Valid(obj) {
		return nil, fmt.Errorf("not valid JSON")
	}
	var err error
	for _, p := range paths {
		if obj, err = sjson.DeleteBytes(obj, p); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

// fillMembers derives memberships, the joined local members (from the state, not from Synapse's
// room statistics, which lag behind: a user just deactivated is counted there until Synapse has
// parted them), federated servers and the canonical alias from the state.
func fillMembers(r *exportfmt.RoomFile, serverName string) {
	servers := map[string]bool{}
	for uid, m := range r.RemoteMembers {
		if m == "join" {
			servers[serverOf(uid)] = true
		}
	}
	for _, ev := range r.State {
		typ := gjson.GetBytes(ev, "type").String()
		key := gjson.GetBytes(ev, "state_key").String()
		switch typ {
		case "m.room.member":
			m := gjson.GetBytes(ev, "content.membership").String()
			if serverOf(key) == serverName {
				r.LocalMembers[key] = m
				if m == "join" {
					r.JoinedLocalMembers++
				}
			} else {
				r.RemoteMembers[key] = m
				if m == "join" {
					servers[serverOf(key)] = true
				}
			}
		case "m.room.canonical_alias":
			if key == "" {
				if a := gjson.GetBytes(ev, "content.alias"); a.Type == gjson.String && a.String() != "" {
					s := a.String()
					r.CanonicalAlias = &s
				}
			}
		}
	}
	for s := range servers {
		r.FederatedWith = append(r.FederatedWith, s)
	}
	sort.Strings(r.FederatedWith)
}

// serverOf is the server part of a user ID (after the first colon).
func serverOf(id string) string {
	_, s, _ := strings.Cut(id, ":")
	return s
}

// checkPDU makes sure a PDU is what it claims: in the right room, with the event ID its content
// gives (room versions 3 and later) and a content hash that matches, unless the event is
// redacted. It returns the event ID.
func checkPDU(roomVersion, roomID string, raw []byte) (string, error) {
	id, err := signing.EventID(roomVersion, raw)
	if err != nil {
		return "", fmt.Errorf("room %s: event from Synapse: %w", roomID, err)
	}
	if rid := signing.EventRoomID(roomVersion, id, raw); rid != roomID {
		return "", fmt.Errorf("room %s: event %s belongs to room %q", roomID, id, rid)
	}
	if claimed := gjson.GetBytes(raw, "event_id"); claimed.Exists() && claimed.String() != id {
		return "", fmt.Errorf("room %s: event claims ID %s but its content gives %s", roomID, claimed.String(), id)
	}
	want := gjson.GetBytes(raw, "hashes.sha256").String()
	got, err := signing.ContentHash(raw)
	if err != nil {
		return "", fmt.Errorf("room %s: event %s: %w", roomID, id, err)
	}
	if got != want {
		redacted, err := signing.RedactEvent(roomVersion, raw)
		if err != nil {
			return "", fmt.Errorf("room %s: event %s: %w", roomID, id, err)
		}
		a, _ := signing.CanonicalJSON([]byte(gjson.GetBytes(redacted, "content").Raw))
		b, _ := signing.CanonicalJSON([]byte(gjson.GetBytes(raw, "content").Raw))
		if !bytes.Equal(a, b) {
			return "", fmt.Errorf("room %s: event %s: content hash mismatch on an event that is not redacted (corrupted in transit?)", roomID, id)
		}
	}
	return id, nil
}
