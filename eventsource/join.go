package eventsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/matrixspec"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// RoomStateAPI is the part of Synapse's admin API joins need: the room's current state and its
// forward extremities, and whether the joining user is deactivated. *synapseclient.AdminClient
// is one.
type RoomStateAPI interface {
	RoomState(ctx context.Context, roomID string) ([]json.RawMessage, error)
	ForwardExtremities(ctx context.Context, roomID string) ([]synapseclient.ForwardExtremity, error)
	User(ctx context.Context, userID string) (*synapseclient.UserDetails, error)
}

// maxPrevEvents caps a template's prev_events, as the spec and Conduit do.
const maxPrevEvents = 20

// roomState is a room's state at a set of events: the state events by (type, state_key).
type roomState struct {
	version string
	prev    []eventcache.Event // the events the state is after (forward extremities for current state)
	events  map[gmsl.StateKeyTuple]eventcache.Event
}

func (st *roomState) ids() []string {
	out := make([]string, 0, len(st.events))
	for _, e := range st.events {
		out = append(out, e.ID)
	}
	slices.Sort(out)
	return out
}

// joinMemo remembers, for a short while, the state each make_join template was built on, so the
// send_join that follows answers exactly that state even when the room has moved on meanwhile.
type joinMemo struct {
	mu      sync.Mutex
	entries map[string]memoEntry
}

type memoEntry struct {
	version string
	state   []string
	at      time.Time
}

const (
	memoTTL = 10 * time.Minute
	memoMax = 1024
)

func memoKey(roomID string, prev []string) string {
	p := slices.Clone(prev)
	slices.Sort(p)
	return roomID + "\x00" + strings.Join(p, "\x00")
}

func (m *joinMemo) put(roomID string, prev []string, version string, state []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil {
		m.entries = map[string]memoEntry{}
	}
	now := time.Now()
	if len(m.entries) >= memoMax {
		for k, e := range m.entries {
			if now.Sub(e.at) >= memoTTL {
				delete(m.entries, k)
			}
		}
		for k := range m.entries { // still full: drop any one
			if len(m.entries) < memoMax {
				break
			}
			delete(m.entries, k)
		}
	}
	m.entries[memoKey(roomID, prev)] = memoEntry{version: version, state: state, at: now}
}

func (m *joinMemo) get(roomID string, prev []string) (memoEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[memoKey(roomID, prev)]
	if !ok || time.Since(e.at) >= memoTTL {
		return memoEntry{}, false
	}
	return e, true
}

// currentState reads the room's current state and forward extremities from Synapse's admin API
// (asking again when the extremities moved while the state was read) and loads every event,
// verified, from the cache or Synapse.
func (s *Source) currentState(ctx context.Context, roomID string) (*roomState, error) {
	if s.cfg.Admin == nil {
		return nil, fmt.Errorf("%w: joins need Synapse's admin API (synapse.admin_token)", matrixspec.ErrUpstreamUnavailable)
	}
	var ext []string
	var stateIDs []string
	create := ""
	for attempt := 0; ; attempt++ {
		before, err := s.extremities(ctx, roomID)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		raw, err := s.cfg.Admin.RoomState(ctx, roomID)
		s.observe("admin_room_state", start, err)
		if err != nil {
			return nil, upstreamError(err)
		}
		after, err := s.extremities(ctx, roomID)
		if err != nil {
			return nil, err
		}
		stateIDs, create = stateIDs[:0], ""
		for _, ev := range raw {
			id := gjson.GetBytes(ev, "event_id").String()
			if id == "" {
				return nil, fmt.Errorf("%w: Synapse's room state holds an event without event_id", matrixspec.ErrUpstreamUnavailable)
			}
			stateIDs = append(stateIDs, id)
			if gjson.GetBytes(ev, "type").String() == "m.room.create" {
				create = "1"
				if v := gjson.GetBytes(ev, "content.room_version"); v.Exists() {
					create = v.String()
				}
			}
		}
		if slices.Equal(before, after) {
			ext = after
			break
		}
		if attempt == 3 {
			return nil, fmt.Errorf("%w: the room's forward extremities kept moving while its state was read", matrixspec.ErrUpstreamUnavailable)
		}
	}
	if len(stateIDs) == 0 || len(ext) == 0 {
		return nil, fmt.Errorf("%w: Synapse has no current state for %s", matrixspec.ErrHostNotInRoom, roomID)
	}
	if create == "" {
		return nil, fmt.Errorf("%w: the current state of %s has no m.room.create", matrixspec.ErrNotFound, roomID)
	}
	if err := s.rememberVersion(roomID, create); err != nil {
		return nil, err
	}
	prev, err := s.loadEvents(ctx, roomID, ext, ext)
	if err != nil {
		return nil, err
	}
	st, err := s.loadState(ctx, roomID, create, stateIDs, ext)
	if err != nil {
		return nil, err
	}
	st.prev = prev
	return st, nil
}

// extremities returns the room's forward extremities, sorted.
func (s *Source) extremities(ctx context.Context, roomID string) ([]string, error) {
	start := time.Now()
	fx, err := s.cfg.Admin.ForwardExtremities(ctx, roomID)
	s.observe("admin_forward_extremities", start, err)
	if err != nil {
		return nil, upstreamError(err)
	}
	out := make([]string, 0, len(fx))
	for _, f := range fx {
		out = append(out, f.EventID)
	}
	slices.Sort(out)
	return out, nil
}

// loadState loads the state events ids of roomID, verified, into a roomState.
func (s *Source) loadState(ctx context.Context, roomID, version string, ids, near []string) (*roomState, error) {
	evs, err := s.loadEvents(ctx, roomID, ids, near)
	if err != nil {
		return nil, err
	}
	st := &roomState{version: version, events: make(map[gmsl.StateKeyTuple]eventcache.Event, len(evs))}
	for _, e := range evs {
		if e.StateKey == nil {
			return nil, fmt.Errorf("%w: state event %s has no state_key", matrixspec.ErrNotVerified, e.ID)
		}
		k := gmsl.StateKeyTuple{EventType: e.Type, StateKey: *e.StateKey}
		if other, dup := st.events[k]; dup {
			return nil, fmt.Errorf("%w: state events %s and %s are both (%s, %s)", matrixspec.ErrNotVerified, other.ID, e.ID, e.Type, *e.StateKey)
		}
		st.events[k] = e
	}
	return st, nil
}

// loadEvents returns the events ids of roomID in the order given, from the cache or fetched and
// verified. Many missing events are loaded in bulk with /state at the events near (the state
// is there); an event that cannot be had intact fails the whole load.
func (s *Source) loadEvents(ctx context.Context, roomID string, ids, near []string) ([]eventcache.Event, error) {
	_, missing, err := s.cache.GetMany(ids)
	if err != nil {
		return nil, err
	}
	if len(missing) > 20 && s.up != nil {
		for _, id := range near {
			if _, _, err := s.State(ctx, roomID, id); err != nil {
				s.log.Warn("loading the state in bulk failed; fetching events one by one", zap.String("room_id", roomID), zap.Error(err))
				break
			}
		}
		if _, missing, err = s.cache.GetMany(ids); err != nil {
			return nil, err
		}
	}
	for _, id := range missing {
		if _, err := s.cachedOrFetched(ctx, roomID, id); err != nil {
			return nil, err
		}
	}
	found, missing, err := s.cache.GetMany(ids)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %d events of %s, e.g. %s", matrixspec.ErrNotVerified, len(missing), roomID, missing[0])
	}
	for _, e := range found {
		if e.RoomID != roomID {
			return nil, fmt.Errorf("%w: %s is not an event of %s", matrixspec.ErrNotFound, e.ID, roomID)
		}
	}
	return found, nil
}

// authProvider returns the state events with the keys the auth rules need (parsing only those:
// the state may hold thousands of members) as gomatrixserverlib auth events.
func (st *roomState) authProvider(needed gmsl.StateNeeded) (*gmsl.AuthEvents, error) {
	ver, err := gmsl.GetRoomVersion(gmsl.RoomVersion(st.version))
	if err != nil {
		return nil, err
	}
	var pdus []gmsl.PDU
	for _, k := range needed.Tuples() {
		e, ok := st.events[k]
		if !ok {
			continue
		}
		p, err := ver.NewEventFromTrustedJSONWithEventID(e.ID, e.JSON, e.Status != eventcache.StatusVerified)
		if err != nil {
			return nil, fmt.Errorf("state event %s: %w", e.ID, err)
		}
		pdus = append(pdus, p)
	}
	return gmsl.NewAuthEvents(pdus)
}

// checkNotDeactivated refuses a user Synapse has deactivated; a user Synapse does not know (one
// created on the target since) may join.
func (s *Source) checkNotDeactivated(ctx context.Context, userID string) error {
	if s.cfg.Admin == nil {
		return fmt.Errorf("%w: joins need Synapse's admin API (synapse.admin_token)", matrixspec.ErrUpstreamUnavailable)
	}
	start := time.Now()
	u, err := s.cfg.Admin.User(ctx, userID)
	s.observe("admin_user", start, err)
	switch {
	case errors.Is(err, synapseclient.ErrNotFound):
		return nil
	case err != nil:
		return upstreamError(err)
	case bool(u.Deactivated):
		return matrixspec.Forbidden("The user is deactivated")
	}
	return nil
}

// MakeJoin builds a join template for userID on the room's current state in Synapse: prev_events
// are the forward extremities (at most 20, newest first), auth_events what the auth rules need
// from that state, depth one more than the deepest prev event. The user must be allowed to join
// by the auth rules now; in restricted rooms only users already joined or invited are (the shim
// does not authorise joins through other rooms' memberships).
func (s *Source) MakeJoin(ctx context.Context, roomID, userID string, versions []string) (string, json.RawMessage, error) {
	if _, server, _ := strings.Cut(userID, ":"); server != s.cfg.Identity.ServerName {
		return "", nil, matrixspec.Forbidden("User not from origin")
	}
	if err := s.checkNotDeactivated(ctx, userID); err != nil {
		return "", nil, err
	}
	st, err := s.currentState(ctx, roomID)
	if err != nil {
		return "", nil, err
	}
	if !slices.Contains(versions, st.version) {
		return "", nil, matrixspec.IncompatibleRoomVersion(st.version)
	}
	ver, err := gmsl.GetRoomVersion(gmsl.RoomVersion(st.version))
	if err != nil || ver.EventIDFormat() == gmsl.EventIDFormatV1 {
		// Version 1 and 2 joins carry an event ID of the joining server; no Conduit offers them.
		return "", nil, matrixspec.IncompatibleRoomVersion(st.version)
	}
	prev := slices.Clone(st.prev)
	slices.SortFunc(prev, func(a, b eventcache.Event) int {
		if a.Depth != b.Depth {
			return int(b.Depth - a.Depth)
		}
		return strings.Compare(a.ID, b.ID)
	})
	prev = prev[:min(len(prev), maxPrevEvents)]
	prevIDs := make([]string, len(prev))
	var depth int64
	for i, e := range prev {
		prevIDs[i] = e.ID
		depth = max(depth, e.Depth)
	}
	depth++
	stateKey := userID
	proto := gmsl.ProtoEvent{SenderID: userID, RoomID: roomID, Type: spec.MRoomMember, StateKey: &stateKey,
		PrevEvents: prevIDs, Depth: depth, Content: spec.RawJSON(`{"membership":"join"}`)}
	needed, err := gmsl.StateNeededForProtoEvent(&proto)
	if err != nil {
		return "", nil, err
	}
	authEvents, err := st.authProvider(needed)
	if err != nil {
		return "", nil, err
	}
	authIDs, err := needed.AuthEventReferences(authEvents)
	if err != nil {
		return "", nil, err
	}
	if ver.DomainlessRoomIDs() { // v12: the create event is implied by the room ID
		if c, _ := authEvents.Create(); c != nil {
			authIDs = slices.DeleteFunc(authIDs, func(id string) bool { return id == c.EventID() })
		}
	}
	proto.AuthEvents = authIDs
	// Build and sign the join as the joining server will, to run the auth rules on it now.
	key := s.cfg.Identity.SigningKey()
	trial, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), spec.ServerName(s.cfg.Identity.ServerName),
		gmsl.KeyID(key.ID), key.PrivateKey())
	if err != nil {
		return "", nil, fmt.Errorf("building the join template: %w", err)
	}
	if err := gmsl.Allowed(trial, authEvents, userIDForSender); err != nil {
		return "", nil, matrixspec.Forbidden("The auth rules do not allow " + userID + " to join: " + err.Error())
	}
	template := map[string]any{
		"room_id": roomID, "sender": userID, "state_key": userID, "type": spec.MRoomMember,
		"content": map[string]string{"membership": "join"}, "prev_events": prevIDs, "auth_events": authIDs,
		"depth": depth, "origin_server_ts": time.Now().UnixMilli(),
	}
	out, err := json.Marshal(template)
	if err != nil {
		return "", nil, err
	}
	s.memo.put(roomID, prevIDs, st.version, st.ids())
	return st.version, out, nil
}

// stateBefore resolves the room state before a join with these prev_events: the state the
// template was built on (make_join memo), Synapse's current state when prev are its forward
// extremities, or, for one prev event, the state Synapse has at it plus that event.
func (s *Source) stateBefore(ctx context.Context, roomID, version string, prev []string) (*roomState, error) {
	if m, ok := s.memo.get(roomID, prev); ok && m.version == version {
		st, err := s.loadState(ctx, roomID, version, m.state, prev)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	if s.cfg.Admin != nil {
		cur, err := s.currentState(ctx, roomID)
		if err != nil {
			return nil, err
		}
		curIDs := make([]string, len(cur.prev))
		for i, e := range cur.prev {
			curIDs[i] = e.ID
		}
		p := slices.Clone(prev)
		slices.Sort(p)
		slices.Sort(curIDs)
		if slices.Equal(p, curIDs) {
			return cur, nil
		}
	}
	if len(prev) != 1 {
		return nil, matrixspec.BadJSON("The shim cannot resolve the room state at these prev_events (not the room's current forward extremities): ask make_join again")
	}
	ids, _, err := s.StateIDs(ctx, roomID, prev[0])
	if err != nil {
		return nil, err
	}
	p, err := s.loadEvents(ctx, roomID, prev, nil)
	if err != nil {
		return nil, err
	}
	st, err := s.loadState(ctx, roomID, version, ids, prev)
	if err != nil {
		return nil, err
	}
	if e := p[0]; e.StateKey != nil {
		st.events[gmsl.StateKeyTuple{EventType: e.Type, StateKey: *e.StateKey}] = e
	}
	st.prev = p
	return st, nil
}

// SendJoin verifies a join signed by the server itself (event ID, room, membership, sender,
// signatures with the server's keys, content hash, auth events and auth rules against the state
// before it), stores it with that state, and returns the state and its auth chain as stored.
func (s *Source) SendJoin(ctx context.Context, roomID, eventID string, body []byte) ([]json.RawMessage, []json.RawMessage, error) {
	version, ok := s.knownVersion(roomID)
	if !ok {
		st, err := s.currentState(ctx, roomID)
		if err != nil {
			return nil, nil, err
		}
		version = st.version
	}
	ver, err := gmsl.GetRoomVersion(gmsl.RoomVersion(version))
	if err != nil || ver.EventIDFormat() == gmsl.EventIDFormatV1 {
		return nil, nil, matrixspec.IncompatibleRoomVersion(version)
	}
	raw := body
	if gjson.GetBytes(raw, "unsigned").Exists() {
		if raw, err = sjson.DeleteBytes(raw, "unsigned"); err != nil {
			return nil, nil, matrixspec.BadJSON("The join cannot be read: " + err.Error())
		}
	}
	raw = slices.Clone(raw)
	if gjson.GetBytes(raw, "room_id").String() != roomID {
		return nil, nil, matrixspec.BadJSON("The event's room_id does not match the room in the path")
	}
	join, err := ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		return nil, nil, matrixspec.BadJSON("The join is not a valid event of room version " + version + ": " + err.Error())
	}
	if id, err := signing.EventID(version, raw); err != nil || id != eventID {
		return nil, nil, matrixspec.BadJSON(fmt.Sprintf("The event ID in the path is %s, the event's is %s", eventID, id))
	}
	sender := string(join.SenderID())
	switch {
	case join.RoomID().String() != roomID:
		return nil, nil, matrixspec.BadJSON("The event's room_id does not match the room in the path")
	case join.Type() != spec.MRoomMember || join.StateKey() == nil:
		return nil, nil, matrixspec.BadJSON("The event is not an m.room.member event")
	case *join.StateKey() != sender:
		return nil, nil, matrixspec.BadJSON("The join's state_key is not its sender")
	case !strings.HasSuffix(sender, ":"+s.cfg.Identity.ServerName) || !strings.HasPrefix(sender, "@"):
		return nil, nil, matrixspec.Forbidden("User not from origin")
	}
	if m, err := join.Membership(); err != nil || m != spec.Join {
		return nil, nil, matrixspec.BadJSON("The event's membership is not join")
	}
	jv := &jsonVerifier{keys: s.checker.keys}
	if err := gmsl.VerifyEventSignatures(ctx, join, jv, userIDForSender); err != nil {
		if jv.transient != nil {
			return nil, nil, jv.transient
		}
		return nil, nil, matrixspec.Forbidden("The join's signature does not verify with the server's keys: " + err.Error())
	}
	if join.Redacted() {
		return nil, nil, matrixspec.Forbidden("The join's content does not match its content hash")
	}
	if state, chain, ok, err := s.acceptedBefore(roomID, eventID, raw); err != nil || ok {
		return state, chain, err
	}
	prev := join.PrevEventIDs()
	if len(prev) == 0 || len(prev) > maxPrevEvents {
		return nil, nil, matrixspec.BadJSON("The join must have 1 to 20 prev_events")
	}
	st, err := s.stateBefore(ctx, roomID, version, prev)
	if err != nil {
		return nil, nil, err
	}
	if err := checkJoinAuth(st, join); err != nil {
		return nil, nil, err
	}
	stateIDs := st.ids()
	var chainStart []string
	for _, e := range st.events {
		chainStart = append(chainStart, e.AuthEvents...)
	}
	chainEvs, err := s.authChainEvents(ctx, roomID, chainStart)
	if err != nil {
		return nil, nil, err
	}
	chain := make([]json.RawMessage, len(chainEvs))
	chainIDs := make([]string, len(chainEvs))
	for i, e := range chainEvs {
		chain[i], chainIDs[i] = e.JSON, e.ID
	}
	state, missing, err := s.cache.GetMany(stateIDs)
	if err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: state event %s", matrixspec.ErrNotVerified, missing[0])
	}
	rec := eventcache.Join{ID: eventID, RoomID: roomID, Depth: join.Depth(), PrevEvents: prev, AuthEvents: join.AuthEventIDs(), JSON: raw}
	if err := s.cache.Apply(eventcache.Batch{Joins: []eventcache.Join{rec},
		StateSnapshots: []eventcache.StateSnapshot{{EventID: eventID, RoomID: roomID, State: stateIDs, AuthChain: chainIDs}}}); err != nil {
		return nil, nil, err
	}
	s.log.Info("join accepted", zap.String("room_id", roomID), zap.String("event_id", eventID), zap.String("sender", sender),
		zap.Int("state", len(state)), zap.Int("auth_chain", len(chain)))
	s.rememberStateAtPrev(ctx, roomID, prev)
	out := make([]json.RawMessage, len(state))
	for i := range state {
		out[i] = state[i].JSON
	}
	return out, chain, nil
}

// acceptedBefore answers a join sent again (Conduit retries) with what was answered the first
// time, from the cache alone.
func (s *Source) acceptedBefore(roomID, eventID string, raw []byte) ([]json.RawMessage, []json.RawMessage, bool, error) {
	j, ok, err := s.joinEvent(roomID, eventID)
	if err != nil || !ok || string(j.JSON) != string(raw) {
		return nil, nil, false, err
	}
	snap, ok, err := s.snapshot(roomID, eventID)
	if err != nil || !ok {
		return nil, nil, false, err
	}
	state, missState, err := s.cache.GetMany(snap.State)
	if err != nil {
		return nil, nil, false, err
	}
	chain, missChain, err := s.cache.GetMany(snap.AuthChain)
	if err != nil || len(missState)+len(missChain) > 0 {
		return nil, nil, false, err
	}
	return jsonOf(state), jsonOf(chain), true, nil
}

// checkJoinAuth checks the join's auth_events (exactly the state events the auth rules need,
// as in the state) and the auth rules against the state.
func checkJoinAuth(st *roomState, join gmsl.PDU) error {
	needed := gmsl.StateNeededForAuth([]gmsl.PDU{join})
	authEvents, err := st.authProvider(needed)
	if err != nil {
		return err
	}
	inState := make(map[string]bool, len(st.events))
	for _, e := range st.events {
		inState[e.ID] = true
	}
	want, err := needed.AuthEventReferences(authEvents)
	if err != nil {
		return err
	}
	ver, _ := gmsl.GetRoomVersion(join.Version())
	if ver != nil && ver.DomainlessRoomIDs() {
		if c, _ := authEvents.Create(); c != nil {
			want = slices.DeleteFunc(want, func(id string) bool { return id == c.EventID() })
		}
	}
	var got []string // as listed: gomatrixserverlib's AuthEventIDs adds a version 12 room's create event
	for _, id := range gjson.GetBytes(join.JSON(), "auth_events").Array() {
		got = append(got, id.String())
	}
	for _, id := range got {
		if !inState[id] {
			return matrixspec.BadJSON("The join's auth event " + id + " is not in the room state at its prev_events")
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return matrixspec.BadJSON(fmt.Sprintf("The join's auth_events are %v; the room state at its prev_events gives %v", got, want))
	}
	if err := gmsl.Allowed(join, authEvents, userIDForSender); err != nil {
		return matrixspec.Forbidden("The auth rules do not allow this join: " + err.Error())
	}
	return nil
}

// rememberStateAtPrev asks Synapse, while it still answers, for the state IDs at each prev
// event of a join (cheap: IDs only), so /state_ids there is answered from the cache later, and
// /state too when the cache holds those events (mostly the join's state). Failures only log.
func (s *Source) rememberStateAtPrev(ctx context.Context, roomID string, prev []string) {
	if s.up == nil {
		return
	}
	for _, id := range prev {
		if _, _, err := s.StateIDs(ctx, roomID, id); err != nil {
			s.log.Warn("could not keep the state at a join's prev event", zap.String("room_id", roomID), zap.String("event_id", id), zap.Error(err))
		}
	}
}

// joinEvent returns a join accepted through send_join, or ok false.
func (s *Source) joinEvent(roomID, id string) (eventcache.Join, bool, error) {
	j, ok, err := s.cache.Join(id)
	if err != nil || !ok {
		return eventcache.Join{}, false, err
	}
	if roomID != "" && j.RoomID != roomID {
		return eventcache.Join{}, false, nil
	}
	return j, true, nil
}

// seedsPastJoins replaces joins accepted through send_join among seeds by their prev_events:
// the joining server backfills from its own join, which Synapse never saw.
func (s *Source) seedsPastJoins(roomID string, seeds []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, id := range seeds {
		ids := []string{id}
		if j, ok, err := s.joinEvent(roomID, id); err != nil {
			return nil, err
		} else if ok {
			ids = j.PrevEvents
		}
		for _, x := range ids {
			if !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	return out, nil
}
