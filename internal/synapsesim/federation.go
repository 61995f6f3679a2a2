package synapsesim

import (
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

const (
	backfillCap       = 100 // Synapse caps /backfill at 100 events
	missingEventsCap  = 20  // and /get_missing_events at 20
	missingEventsDflt = 10
)

// fedAuth checks the X-Matrix header the way Synapse does for requests signed with its own name
// (only its current key is accepted; origins missing from a federation_domain_whitelist are denied
// before any signature check) and applies the per-origin rate limit. It writes the error
// and returns false when the request must not proceed.
func (s *Server) fedAuth(w http.ResponseWriter, r *http.Request) (string, bool) {
	if wl := s.opts.FederationDomainWhitelist; wl != nil {
		for _, h := range r.Header.Values("Authorization") {
			if x, err := signing.ParseXMatrix(h); err == nil && !slices.Contains(wl, x.Origin) {
				writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Federation denied with "+x.Origin+".")
				return "", false
			}
		}
	}
	origin, err := signing.VerifyHTTPRequest(r, s.w.ServerName, s.identity.Lookup(), 1<<20)
	if err != nil {
		var x signing.XMatrix
		for _, h := range r.Header.Values("Authorization") {
			if signing.IsXMatrix(h) {
				x, _ = signing.ParseXMatrix(h)
				break
			}
		}
		switch {
		case errors.Is(err, signing.ErrNoAuthorization):
			writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "Missing Authorization headers")
		case errors.Is(err, signing.ErrWrongDestination):
			writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "Destination mismatch in auth header")
		case errors.Is(err, signing.ErrMalformedHeader):
			writeError(w, http.StatusBadRequest, "M_UNAUTHORIZED", "Malformed Authorization header")
		case errors.Is(err, signing.ErrUnknownKey):
			writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", fmt.Sprintf(
				"Failed to find any key to satisfy: _FetchKeyRequest(server_name='%s', minimum_valid_until_ts=%d, key_ids=['%s'])",
				x.Origin, s.nowMS(), x.Key))
		case errors.Is(err, signing.ErrBadSignature):
			writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", fmt.Sprintf(
				"Invalid signature for server %s with key %s: Unable to verify signature for %s: <class 'nacl.exceptions.BadSignatureError'> Signature was forged or corrupt",
				x.Origin, x.Key, x.Origin))
		default:
			writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		}
		return "", false
	}
	if !s.allow(origin) {
		return "", s.tooMany(w, origin)
	}
	return origin, true
}

// allow counts a request against origin's rate-limit window.
func (s *Server) allow(origin string) bool {
	rl := s.opts.RateLimit
	if rl == nil || rl.Requests <= 0 {
		return true
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	win := s.windows[origin]
	if win == nil || now.Sub(win.start) >= rl.Window {
		win = &rateWindow{start: now}
		s.windows[origin] = win
	}
	win.n++
	return win.n <= rl.Requests
}

func (s *Server) tooMany(w http.ResponseWriter, origin string) bool {
	s.mu.Lock()
	win := s.windows[origin]
	retry := s.opts.RateLimit.Window - s.now().Sub(win.start)
	s.mu.Unlock()
	writeJSON(w, http.StatusTooManyRequests, obj{{"errcode", "M_LIMIT_EXCEEDED"}, {"error", "Too Many Requests"}, {"retry_after_ms", max(retry.Milliseconds(), 1)}})
	return false
}

// joinedRoom returns the room if a local user is currently joined to it; otherwise it answers
// 403 "Host not in room." as Synapse's assert_host_in_room does.
func (s *Server) joinedRoom(w http.ResponseWriter, roomID string) *world.Room {
	room := s.w.Room(roomID)
	if room == nil || !room.LocalJoinedNow() {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Host not in room.")
		return nil
	}
	return room
}

// fedVersion serves GET /_matrix/federation/v1/version (unauthenticated).
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1version
func (s *Server) fedVersion(w http.ResponseWriter, r *http.Request, _ []string) {
	writeJSON(w, http.StatusOK, obj{{"server", obj{{"name", "Synapse"}, {"version", s.opts.Version}}}})
}

// keyServer serves GET /_matrix/key/v2/server: current key, old keys, valid for a day, self-signed.
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixkeyv2serverkeyid
func (s *Server) keyServer(w http.ResponseWriter, r *http.Request, _ []string) {
	doc, err := s.identity.KeyDocument(s.now().Add(signing.DefaultKeyValidity))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

// backfill serves GET /_matrix/federation/v1/backfill/{roomId}?v=&limit=: the seeds and their
// ancestors, newest first, at most 100, outliers excluded.
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1backfillroomid
func (s *Server) backfill(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.fedAuth(w, r); !ok {
		return
	}
	q := r.URL.Query()
	seeds := q["v"]
	if len(seeds) == 0 {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing string query parameter 'v'")
		return
	}
	ls := q["limit"]
	if len(ls) == 0 {
		writeJSON(w, http.StatusBadRequest, obj{{"error", "Did not include limit param"}})
		return
	}
	limit, err := strconv.Atoi(ls[len(ls)-1])
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "limit must be an integer")
		return
	}
	room := s.joinedRoom(w, v[0])
	if room == nil {
		return
	}
	evs := BackfillEvents(room, seeds, min(limit, backfillCap))
	pdus := make([][]byte, len(evs))
	for i, ev := range evs {
		pdus[i] = s.fedPDU(room, ev, true, unsignedAge)
	}
	writeJSON(w, http.StatusOK, s.transaction(pdus))
}

// BackfillEvents is what Synapse's backfill returns for seeds: a best-first walk over prev_events
// from the seeds (included), taking the highest (depth, stream ordering) first, up to limit
// non-outlier events, sorted newest first.
func BackfillEvents(room *world.Room, seeds []string, limit int) []*world.Event {
	if limit <= 0 {
		return nil
	}
	seen := map[string]bool{}
	pq := &eventHeap{}
	for _, id := range seeds {
		if ev := room.Event(id); ev != nil && !seen[id] {
			seen[id] = true
			heap.Push(pq, ev)
		}
	}
	var out []*world.Event
	for pq.Len() > 0 && len(out) < limit {
		ev := heap.Pop(pq).(*world.Event)
		if ev.Outlier {
			continue
		}
		out = append(out, ev)
		for _, p := range ev.PrevEvents {
			if pe := room.Event(p); pe != nil && !seen[p] {
				seen[p] = true
				heap.Push(pq, pe)
			}
		}
	}
	sortNewestFirst(out)
	return out
}

// eventHeap pops the event with the highest (depth, stream ordering).
type eventHeap []*world.Event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].Depth != h[j].Depth {
		return h[i].Depth > h[j].Depth
	}
	return h[i].StreamOrdering > h[j].StreamOrdering
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*world.Event)) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// fedEvent serves GET /_matrix/federation/v1/event/{eventId}: 404 with body "" when unknown,
// 403 when no local user is in the room, pruned when hidden from the server.
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1eventeventid
func (s *Server) fedEvent(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.fedAuth(w, r); !ok {
		return
	}
	ev := s.w.Event(v[0])
	if ev == nil {
		writeJSON(w, http.StatusNotFound, []byte(`""`))
		return
	}
	room := s.joinedRoom(w, ev.RoomID)
	if room == nil {
		return
	}
	writeJSON(w, http.StatusOK, s.transaction([][]byte{s.fedPDU(room, ev, true, unsignedAge)}))
}

// getMissingEvents serves POST /_matrix/federation/v1/get_missing_events/{roomId}: prev_events
// walked back from latest_events (excluded) to earliest_events, limit ≤ 20 (default 10),
// min_depth ignored, oldest first.
// https://spec.matrix.org/v1.3/server-server-api/#post_matrixfederationv1get_missing_eventsroomid
func (s *Server) getMissingEvents(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.fedAuth(w, r); !ok {
		return
	}
	var body struct {
		Earliest []string `json:"earliest_events"`
		Latest   []string `json:"latest_events"`
		Limit    *int     `json:"limit"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	room := s.joinedRoom(w, v[0])
	if room == nil {
		return
	}
	limit := missingEventsDflt
	if body.Limit != nil {
		limit = *body.Limit
	}
	evs := MissingEvents(room, body.Earliest, body.Latest, min(limit, missingEventsCap))
	pdus := make([][]byte, len(evs))
	for i, ev := range evs {
		pdus[i] = s.fedPDU(room, ev, true, unsignedAge)
	}
	writeJSON(w, http.StatusOK, []byte(`{"events":`+string(jsonArray(pdus))+`}`))
}

// MissingEvents is Synapse's get_missing_events walk: breadth-first over prev_events from the
// latest events (not returned), never past the earliest events, up to limit, oldest first.
func MissingEvents(room *world.Room, earliest, latest []string, limit int) []*world.Event {
	seen := map[string]bool{}
	for _, id := range earliest {
		seen[id] = true
	}
	var front []*world.Event
	for _, id := range latest {
		if ev := room.Event(id); ev != nil && !seen[id] {
			seen[id] = true
			front = append(front, ev)
		}
	}
	var out []*world.Event
	for len(front) > 0 && len(out) < limit {
		sortNewestFirst(front)
		var next []*world.Event
		for _, ev := range front {
			for _, p := range ev.PrevEvents {
				if seen[p] || len(out) >= limit {
					continue
				}
				seen[p] = true
				if pe := room.Event(p); pe != nil {
					out = append(out, pe)
					next = append(next, pe)
				}
			}
		}
		front = next
	}
	sortOldestFirst(out)
	return out
}

// eventInRoom resolves the required event_id parameter of /state and /state_ids.
func (s *Server) eventInRoom(w http.ResponseWriter, r *http.Request, room *world.Room) *world.Event {
	q := r.URL.Query()
	if !q.Has("event_id") {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing string query parameter 'event_id'")
		return nil
	}
	ev := room.Event(q.Get("event_id"))
	if ev == nil || ev.Outlier {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Could not find event "+q.Get("event_id"))
		return nil
	}
	return ev
}

// stateBefore does what /state and /state_ids share: authentication, the event_id parameter (checked
// before the room, as Synapse does), host-in-room, and the IDs of the state before the event.
func (s *Server) stateBefore(w http.ResponseWriter, r *http.Request, roomID string) (*world.Room, []string, bool) {
	if _, ok := s.fedAuth(w, r); !ok {
		return nil, nil, false
	}
	if !r.URL.Query().Has("event_id") {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing string query parameter 'event_id'")
		return nil, nil, false
	}
	room := s.joinedRoom(w, roomID)
	if room == nil {
		return nil, nil, false
	}
	ev := s.eventInRoom(w, r, room)
	if ev == nil {
		return nil, nil, false
	}
	st, _ := room.StateBefore(ev.ID)
	return room, st.EventIDs(), true
}

// stateIDs serves GET /_matrix/federation/v1/state_ids/{roomId}?event_id=: the state before the
// event and its auth chain, as IDs.
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1state_idsroomid
func (s *Server) stateIDs(w http.ResponseWriter, r *http.Request, v []string) {
	room, ids, ok := s.stateBefore(w, r, v[0])
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, obj{{"pdu_ids", ids}, {"auth_chain_ids", nonNil(room.AuthChain(ids, false))}})
}

// state serves GET /_matrix/federation/v1/state/{roomId}?event_id=: the state before the event
// and its auth chain as full PDUs (Synapse leaves age_ts in their unsigned here).
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1stateroomid
func (s *Server) state(w http.ResponseWriter, r *http.Request, v []string) {
	room, ids, ok := s.stateBefore(w, r, v[0])
	if !ok {
		return
	}
	pdus := s.pdusOf(room, ids, unsignedAgeTS)
	chain := s.pdusOf(room, room.AuthChain(ids, false), unsignedAgeTS)
	writeJSON(w, http.StatusOK, []byte(`{"pdus":`+string(jsonArray(pdus))+`,"auth_chain":`+string(jsonArray(chain))+`}`))
}

func (s *Server) pdusOf(room *world.Room, ids []string, mode unsignedMode) [][]byte {
	out := make([][]byte, 0, len(ids))
	for _, id := range ids {
		if ev := room.Event(id); ev != nil {
			out = append(out, s.fedPDU(room, ev, false, mode))
		}
	}
	return out
}

func nonNil(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}

// eventAuth serves GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}: the full auth chain
// of the event's auth events, those included.
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1event_authroomideventid
func (s *Server) eventAuth(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.fedAuth(w, r); !ok {
		return
	}
	room := s.joinedRoom(w, v[0])
	if room == nil {
		return
	}
	ev := room.Event(v[1])
	if ev == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Could not find event "+v[1])
		return
	}
	chain := s.pdusOf(room, room.AuthChain(room.AuthEventIDs(ev), true), unsignedAge)
	writeJSON(w, http.StatusOK, []byte(`{"auth_chain":`+string(jsonArray(chain))+`}`))
}

// makeJoin serves GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=: an unsigned join
// template on the forward extremities; no ver means ["1"].
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1make_joinroomiduserid
func (s *Server) makeJoin(w http.ResponseWriter, r *http.Request, v []string) {
	origin, ok := s.fedAuth(w, r)
	if !ok {
		return
	}
	room := s.joinedRoom(w, v[0])
	if room == nil {
		return
	}
	vers := r.URL.Query()["ver"]
	if len(vers) == 0 {
		vers = []string{"1"}
	}
	if !slices.Contains(vers, room.Version) {
		writeJSON(w, http.StatusBadRequest, obj{{"errcode", "M_INCOMPATIBLE_ROOM_VERSION"},
			{"error", "Your homeserver does not support the features required to interact with this room"}, {"room_version", room.Version}})
		return
	}
	user := v[1]
	if _, server, _ := strings.Cut(user, ":"); server != origin {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Not allowed to join as a user of another server")
		return
	}
	ext := room.ForwardExtremities()
	var depth int64
	for _, id := range ext {
		depth = max(depth, room.Event(id).Depth)
	}
	cur := room.CurrentState()
	var auth []string
	for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.join_rules", ""}, {"m.room.member", user}} {
		if k[0] == "m.room.create" && room.DomainlessIDs() {
			continue // version 12: the room ID implies it
		}
		if id, ok := cur.Get(k[0], k[1]); ok {
			auth = append(auth, id)
		}
	}
	now := s.nowMS()
	ev := obj{{"auth_events", s.eventRefs(room, auth)}, {"prev_events", s.eventRefs(room, ext)}, {"type", "m.room.member"},
		{"room_id", room.ID}, {"sender", user}, {"content", obj{{"membership", "join"}}}, {"depth", depth + 1},
		{"prev_state", []string{}}, {"state_key", user}}
	if room.Version == "1" || room.Version == "2" {
		ev = append(ev, kv{"event_id", s.mintV1EventID(now)})
	}
	ev = append(ev, kv{"origin", s.w.ServerName}, kv{"origin_server_ts", now})
	writeJSON(w, http.StatusOK, obj{{"event", ev}, {"room_version", room.Version}})
}

// mintV1EventID makes a Synapse-style room v1 event ID: "$" ts, a counter, random letters, ":server".
func (s *Server) mintV1EventID(now int64) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	s.mu.Lock()
	defer s.mu.Unlock()
	b := make([]byte, 5)
	for i := range b {
		b[i] = letters[s.rng.IntN(len(letters))]
	}
	return fmt.Sprintf("$%d%d%s:%s", now, s.rng.IntN(100), b, s.w.ServerName)
}

// userDevices serves GET /_matrix/federation/v1/user/devices/{userId}: devices that uploaded keys,
// without display names (allow_device_name_lookup_over_federation is off by default).
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1userdevicesuserid
func (s *Server) userDevices(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.fedAuth(w, r); !ok {
		return
	}
	if !s.isLocal(v[0]) {
		writeError(w, http.StatusBadRequest, "M_UNKNOWN", "Cannot query devices of a remote user")
		return
	}
	devices := []obj{}
	var master, selfSigning any
	if u := s.w.User(v[0]); u != nil {
		for _, d := range u.Devices {
			if d.Keys != nil {
				devices = append(devices, obj{{"device_id", d.ID}, {"keys", d.Keys}})
			}
		}
		if cs := u.CrossSigning; cs != nil {
			master, selfSigning = cs.Master, cs.SelfSigning
		}
	}
	writeJSON(w, http.StatusOK, obj{{"user_id", v[0]}, {"stream_id", len(devices) + 1}, {"devices", devices},
		{"master_key", master}, {"self_signing_key", selfSigning}})
}

// queryProfile serves GET /_matrix/federation/v1/query/profile?user_id=&field=.
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1queryprofile
func (s *Server) queryProfile(w http.ResponseWriter, r *http.Request, _ []string) {
	if _, ok := s.fedAuth(w, r); !ok {
		return
	}
	q := r.URL.Query()
	if !q.Has("user_id") {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing string query parameter 'user_id'")
		return
	}
	u := s.w.User(q.Get("user_id"))
	if u == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Profile was not found")
		return
	}
	out := obj{}
	if f := q.Get("field"); f == "" || f == "displayname" {
		out = append(out, kv{"displayname", nullable(u.Profile.DisplayName)})
	}
	if f := q.Get("field"); f == "" || f == "avatar_url" {
		out = append(out, kv{"avatar_url", nullable(u.Profile.AvatarURL)})
	}
	writeJSON(w, http.StatusOK, out)
}

// publicRooms serves GET /_matrix/federation/v1/publicRooms: refused, as Synapse's default
// allow_public_rooms_over_federation is false.
// https://spec.matrix.org/v1.3/server-server-api/#get_matrixfederationv1publicrooms
func (s *Server) publicRooms(w http.ResponseWriter, r *http.Request, _ []string) {
	origin, ok := s.fedAuth(w, r)
	if !ok {
		return
	}
	writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Federation denied with "+origin+".")
}
