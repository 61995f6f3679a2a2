package conduitsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/roomversions"
	"github.com/transition-matrix/transition-matrix/signing"
)

// SupportedVersions are the room versions Conduit asks for in make_join, in its order: the stable
// 6–12, then the unstable 3–5 (allow_unstable_room_versions defaults to true).
var SupportedVersions = roomversions.Hosted()

// stateKey is a (type, state_key) pair.
type stateKey struct{ Type, StateKey string }

// entry is one timeline PDU at its position: Conduit's PduCount, normal (> 0) or backfilled (< 0,
// smaller = older).
type entry struct {
	pos int64
	id  string
}

// room is a room the simulated Conduit holds: checked events, current state, timeline.
type room struct {
	mu         sync.Mutex // Conduit's per-room mutex: one backfill or join at a time
	id         string
	version    string
	cl         *conduitlike.Room
	state      map[stateKey]string
	newer      []entry // the join and what follows it, oldest first (positions > 0)
	older      []entry // backfilled PDUs in the order prepended: the last is the oldest (positions < 0)
	backfilled int     // events stored by backfill
}

// joinError is a failed join, answered with status and errcode.
type joinError struct {
	status int
	code   string
	msg    string
}

func (e *joinError) Error() string { return e.msg }

// join answers POST /join/{roomIdOrAlias} (server_name and via name the servers to ask) and POST
// /rooms/{roomId}/join (only the room ID's server), running Conduit's remote join through
// make_join and send_join.
// https://spec.matrix.org/v1.11/client-server-api/#post_matrixclientv3joinroomidoralias
func (s *Server) join(w http.ResponseWriter, r *http.Request, user string, vars map[string]string) {
	roomID := vars["room"]
	if !strings.HasPrefix(roomID, "!") {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "conduitsim: joining by alias is not simulated")
		return
	}
	var servers []string
	q := r.URL.Query()
	for _, v := range append(q["server_name"], q["via"]...) {
		if v != "" && !slices.Contains(servers, v) {
			servers = append(servers, v)
		}
	}
	if i := strings.IndexByte(roomID, ':'); i >= 0 && !slices.Contains(servers, roomID[i+1:]) {
		servers = append(servers, roomID[i+1:])
	}
	if err := s.Join(r.Context(), user, roomID, servers); err != nil {
		var je *joinError
		if errors.As(err, &je) {
			writeError(w, je.status, je.code, je.msg)
			return
		}
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"room_id": roomID})
}

// Join joins user to a room as Conduit does: nothing when already joined; a remote join through
// the first of servers that answers make_join when the server is not in the room. The local join
// (the server is in the room, the user is not) is not simulated and fails.
func (s *Server) Join(ctx context.Context, user, roomID string, servers []string) error {
	if s.faults.joinFails(roomID) {
		return &joinError{http.StatusBadGateway, "M_UNKNOWN", "No server available to assist in joining."}
	}
	rm := s.roomOrNew(roomID)
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.cl != nil {
		if rm.membership(user) == "join" {
			return nil
		}
		if rm.localJoined(s.id.ServerName) {
			return &joinError{http.StatusInternalServerError, "M_UNKNOWN", "conduitsim: a local join (the server is already in the room) is not simulated"}
		}
	}
	return s.remoteJoin(ctx, rm, user, servers)
}

// makeJoinAnswer is the make_join response.
type makeJoinAnswer struct {
	RoomVersion string          `json:"room_version"`
	Event       json.RawMessage `json:"event"`
}

// sendJoinAnswer is the v2 send_join response.
type sendJoinAnswer struct {
	State     []json.RawMessage `json:"state"`
	AuthChain []json.RawMessage `json:"auth_chain"`
	Event     json.RawMessage   `json:"event"`
}

// remoteJoin is Conduit's join_room_by_id remote branch (research/conduit-join-and-spec-vectors.md §3).
func (s *Server) remoteJoin(ctx context.Context, rm *room, user string, servers []string) error {
	// make_join: the first server that answers wins.
	var peer *conduitlike.Consumer
	var mj makeJoinAnswer
	var errs []string
	q := make([]string, len(SupportedVersions))
	for i, v := range SupportedVersions {
		q[i] = "ver=" + v
	}
	uri := "/_matrix/federation/v1/make_join/" + url.PathEscape(rm.id) + "/" + url.PathEscape(user) + "?" + strings.Join(q, "&")
	for _, srv := range servers {
		c := s.peer(srv)
		if c == nil {
			errs = append(errs, srv+": unreachable")
			continue
		}
		var ans makeJoinAnswer
		if err := c.Request(ctx, http.MethodGet, uri, nil, &ans); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		peer, mj = c, ans
		break
	}
	if peer == nil {
		return &joinError{http.StatusBadGateway, "M_UNKNOWN", "No server available to assist in joining. (" + strings.Join(errs, "; ") + ")"}
	}
	if mj.RoomVersion == "" || !slices.Contains(SupportedVersions, mj.RoomVersion) {
		return &joinError{http.StatusBadGateway, "M_UNKNOWN", fmt.Sprintf("Room version is not supported (%q)", mj.RoomVersion)}
	}
	ver, err := gmsl.GetRoomVersion(gmsl.RoomVersion(mj.RoomVersion))
	if err != nil {
		return &joinError{http.StatusBadGateway, "M_UNKNOWN", fmt.Sprintf("Room version is not supported (%q)", mj.RoomVersion)}
	}

	// populate_membership_template, then hash and sign with the server's key.
	joinJSON, err := s.populateJoin(mj.Event, user)
	if err != nil {
		return &joinError{http.StatusBadGateway, "M_BAD_JSON", "make_join template: " + err.Error()}
	}
	joinJSON, err = signing.SignEvent(mj.RoomVersion, s.id.ServerName, s.id.SigningKey(), joinJSON)
	if err != nil {
		return err
	}
	joinID, err := signing.EventID(mj.RoomVersion, joinJSON)
	if err != nil {
		return err
	}

	// send_join v2.
	var sj sendJoinAnswer
	sjURI := "/_matrix/federation/v2/send_join/" + url.PathEscape(rm.id) + "/" + url.PathEscape(joinID)
	if err := peer.Request(ctx, http.MethodPut, sjURI, joinJSON, &sj); err != nil {
		return &joinError{http.StatusBadGateway, "M_UNKNOWN", "send_join: " + err.Error()}
	}
	if sj.State == nil || sj.AuthChain == nil {
		return &joinError{http.StatusBadGateway, "M_BAD_JSON", "send_join: state and auth_chain are required"}
	}
	if len(sj.Event) > 0 && string(sj.Event) != "null" {
		if joinJSON, err = adoptSignatures(mj.RoomVersion, joinID, peer.Destination, joinJSON, sj.Event); err != nil {
			return &joinError{http.StatusBadGateway, "M_UNKNOWN", err.Error()}
		}
	}
	if err := checkJoinFormat(ver, joinJSON); err != nil {
		return &joinError{http.StatusBadGateway, "M_UNKNOWN", "the join event: " + err.Error()}
	}
	join, err := ver.NewEventFromUntrustedJSON(joinJSON)
	if err != nil {
		return &joinError{http.StatusBadGateway, "M_UNKNOWN", "the join event: " + err.Error()}
	}

	// Every state and auth-chain PDU: signatures checked, failures dropped silently; a content
	// hash mismatch is accepted unchanged (Conduit checks only that verification did not fail).
	cl, err := conduitlike.NewRoom(rm.id, mj.RoomVersion)
	if err != nil {
		return err
	}
	accepted := map[string]gmsl.PDU{}
	state := map[stateKey]string{}
	take := func(raw json.RawMessage, isState bool) error {
		checked, err := ver.NewEventFromUntrustedJSON(raw)
		if err != nil {
			return nil
		}
		if err := peer.VerifySignatures(ctx, checked); err != nil {
			return nil
		}
		p, err := ver.NewEventFromTrustedJSON(raw, false)
		if err != nil {
			if isState {
				return errors.New("Invalid PDU in send_join response.")
			}
			return nil
		}
		accepted[p.EventID()] = p
		cl.AddOutlier(p)
		if isState && p.StateKey() != nil {
			state[stateKey{p.Type(), *p.StateKey()}] = p.EventID()
		}
		return nil
	}
	for _, raw := range sj.State {
		if err := take(raw, true); err != nil {
			return &joinError{http.StatusBadGateway, "M_UNKNOWN", err.Error()}
		}
	}
	for _, raw := range sj.AuthChain {
		_ = take(raw, false)
	}

	// The join's own auth check: its auth events must have arrived, against the answered state.
	if err := authCheckJoin(join, accepted, state); err != nil {
		return &joinError{http.StatusForbidden, "M_FORBIDDEN", "Auth check failed: " + err.Error()}
	}

	// Store: the state before the join, then the join as the room's only timeline PDU.
	rm.version = mj.RoomVersion
	rm.cl = cl
	rm.state = state
	cl.AddTimeline(join)
	rm.state[stateKey{spec.MRoomMember, user}] = joinID
	rm.newer = []entry{{pos: s.nextCount(), id: joinID}}
	return nil
}

// populateJoin fills make_join's template as Conduit's populate_membership_template does.
func (s *Server) populateJoin(template json.RawMessage, user string) ([]byte, error) {
	var ev map[string]any
	if err := json.Unmarshal(template, &ev); err != nil || ev == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	content, ok := ev["content"].(map[string]any)
	if !ok {
		content = map[string]any{}
	}
	s.mu.Lock()
	profile := s.local[user]
	s.mu.Unlock()
	content["membership"] = "join"
	if profile.DisplayName != "" {
		content["displayname"] = profile.DisplayName
	}
	if profile.AvatarURL != "" {
		content["avatar_url"] = profile.AvatarURL
	}
	ev["content"] = content
	ev["origin"] = s.id.ServerName
	ev["origin_server_ts"] = s.now().UnixMilli()
	ev["type"] = spec.MRoomMember
	ev["sender"] = user
	ev["state_key"] = user
	delete(ev, "event_id")
	return json.Marshal(ev)
}

// adoptSignatures applies send_join's optional "event": its ID must be the join's, and its
// signatures by the answering server replace that server's in the join, unverified (as Conduit).
func adoptSignatures(version, joinID, server string, joinJSON, answered []byte) ([]byte, error) {
	id, err := signing.EventID(version, answered)
	if err != nil || id != joinID {
		return nil, fmt.Errorf("Server sent event with wrong event id")
	}
	var their struct {
		Signatures map[string]json.RawMessage `json:"signatures"`
	}
	var ours map[string]json.RawMessage
	if err := json.Unmarshal(answered, &their); err != nil {
		return nil, err
	}
	sig, ok := their.Signatures[server]
	if !ok {
		return joinJSON, nil // Conduit only warns
	}
	if err := json.Unmarshal(joinJSON, &ours); err != nil {
		return nil, err
	}
	var sigs map[string]json.RawMessage
	_ = json.Unmarshal(ours["signatures"], &sigs)
	if sigs == nil {
		sigs = map[string]json.RawMessage{}
	}
	sigs[server] = sig
	ours["signatures"], _ = json.Marshal(sigs)
	out, err := json.Marshal(ours)
	if err != nil {
		return nil, err
	}
	return signing.CanonicalJSON(out)
}

// checkJoinFormat is the part of Conduit's check_pdu_format a join built from a template can fail:
// at most 20 prev_events and 10 auth_events and, in version 12 rooms, no create event among
// the auth_events (the room ID names it).
func checkJoinFormat(ver gmsl.IRoomVersion, joinJSON []byte) error {
	var ev struct {
		RoomID     string   `json:"room_id"`
		PrevEvents []string `json:"prev_events"`
		AuthEvents []string `json:"auth_events"`
	}
	if err := json.Unmarshal(joinJSON, &ev); err != nil {
		return err
	}
	switch {
	case len(ev.PrevEvents) > 20:
		return fmt.Errorf("%d prev_events, more than 20", len(ev.PrevEvents))
	case len(ev.AuthEvents) > 10:
		return fmt.Errorf("%d auth_events, more than 10", len(ev.AuthEvents))
	}
	if create, ok := signing.CreateEventIDOf(ev.RoomID); ok && ver.DomainlessRoomIDs() && slices.Contains(ev.AuthEvents, create) {
		return fmt.Errorf("auth_events list the create event %s, which a version %s room ID implies", create, ver.Version())
	}
	return nil
}

// authCheckJoin is Conduit's check of its join: every auth event arrived and is of the room, a
// create event among them, then the auth rules against the answered state.
func authCheckJoin(join gmsl.PDU, accepted map[string]gmsl.PDU, state map[stateKey]string) error {
	hasCreate := false
	for _, id := range join.AuthEventIDs() {
		p, ok := accepted[id]
		if !ok {
			return fmt.Errorf("auth event %s did not arrive (or failed verification)", id)
		}
		if p.RoomID() != join.RoomID() {
			return fmt.Errorf("auth event %s is of another room", id)
		}
		if p.Type() == spec.MRoomCreate {
			hasCreate = true
		}
	}
	if !hasCreate {
		return errors.New("no create event among the auth events")
	}
	var pdus []gmsl.PDU
	for _, k := range []stateKey{{spec.MRoomCreate, ""}, {spec.MRoomPowerLevels, ""}, {spec.MRoomJoinRules, ""}, {spec.MRoomMember, string(join.SenderID())}} {
		if id, ok := state[k]; ok {
			pdus = append(pdus, accepted[id])
		}
	}
	ae, err := gmsl.NewAuthEvents(pdus)
	if err != nil {
		return err
	}
	return gmsl.Allowed(join, ae, conduitlike.UserIDForSender)
}

// peer is a consumer for federation requests to a server: the own name goes to the shim.
func (s *Server) peer(server string) *conduitlike.Consumer {
	base := s.opts.Peers[server]
	if server == s.id.ServerName {
		base = s.opts.ShimURL
	}
	if base == "" {
		return nil
	}
	hc := s.opts.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	return &conduitlike.Consumer{Identity: s.id, Destination: server, BaseURL: base, Keys: s.keys,
		HTTP: &http.Client{Transport: countingTransport{s, hc}, Timeout: hc.Timeout}}
}

// countingTransport counts federation requests by endpoint ("fed.backfill", ...).
type countingTransport struct {
	s  *Server
	hc *http.Client
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := strings.TrimPrefix(req.URL.EscapedPath(), "/_matrix/federation/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[:i]
	}
	t.s.countRequest("fed." + p)
	rt := t.hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	return rt.RoundTrip(req)
}

// roomOrNew returns the room, adding an empty one (not yet joined: cl == nil) when unknown.
func (s *Server) roomOrNew(id string) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	rm, ok := s.rooms[id]
	if !ok {
		rm = &room{id: id}
		s.rooms[id] = rm
	}
	return rm
}

// heldRoom returns a room the server holds (joined at least once), or nil.
func (s *Server) heldRoom(id string) *room {
	s.mu.Lock()
	rm := s.rooms[id]
	s.mu.Unlock()
	if rm == nil {
		return nil
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.cl == nil {
		return nil
	}
	return rm
}

// membership is a user's current membership in the room ("" for none). Caller holds rm.mu.
func (rm *room) membership(user string) string {
	id, ok := rm.state[stateKey{spec.MRoomMember, user}]
	if !ok {
		return ""
	}
	p, ok := rm.cl.Event(id)
	if !ok {
		return ""
	}
	m, _ := p.Membership()
	return m
}

// localJoined reports whether a user of the server is joined (Conduit's server_in_room). Caller
// holds rm.mu.
func (rm *room) localJoined(server string) bool {
	for k := range rm.state {
		if k.Type == spec.MRoomMember && strings.HasSuffix(k.StateKey, ":"+server) && rm.membership(k.StateKey) == "join" {
			return true
		}
	}
	return false
}
