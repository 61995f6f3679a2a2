package conduitsim

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
)

// messages answers GET /rooms/{roomId}/messages as Conduit does: with dir=b it first backfills,
// but only when the page would reach past the oldest PDU it holds, and then one /backfill of 100
// from that PDU (no stop at m.room.create: it asks again each time). Tokens are Conduit's PDU
// counts ("-N" for backfilled PDUs); end is absent when the page is empty.
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3roomsroomidmessages
func (s *Server) messages(w http.ResponseWriter, r *http.Request, user string, vars map[string]string) {
	roomID := vars["room"]
	defer func() {
		if hook := s.faults.messagesHook(); hook != nil {
			hook(roomID)
		}
	}()
	rm := s.heldRoom(roomID)
	if rm == nil {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You don't have permission to view this room.")
		return
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "dir must be b or f")
		return
	}
	from := int64(1<<63 - 1)
	if dir == "f" {
		from = -1 << 63
	}
	if t := q.Get("from"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Invalid from.")
			return
		}
		from = n
	}
	limit := 10
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Invalid limit.")
			return
		}
		limit = n
	}
	limit = min(limit, s.opts.MaxMessagesLimit)
	if s.faults.messagesFail(roomID) {
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "conduitsim: injected failure")
		return
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.membership(user) != "join" {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You don't have permission to view this room.")
		return
	}
	var page []entry
	if dir == "b" {
		s.backfillIfRequired(r.Context(), rm, from)
		page = rm.before(from, limit)
	} else {
		page = rm.after(from, limit)
	}
	chunk := make([]map[string]json.RawMessage, 0, len(page))
	for _, e := range page {
		p, _ := rm.cl.Event(e.id)
		chunk = append(chunk, clientEvent(p))
	}
	resp := map[string]any{"start": strconv.FormatInt(from, 10), "chunk": chunk, "state": []any{}}
	if len(page) > 0 {
		resp["end"] = strconv.FormatInt(page[len(page)-1].pos, 10)
	}
	writeJSON(w, http.StatusOK, resp)
}

// backfillIfRequired is Conduit's backfill_if_required: nothing while PDUs older than from are
// held; otherwise one /backfill?v=<oldest>&limit=100 to the own name (the patch makes it a
// candidate), each new event checked and prepended. Errors leave the room as it was (Conduit logs
// them and answers from what it has). Caller holds rm.mu.
func (s *Server) backfillIfRequired(ctx context.Context, rm *room, from int64) {
	first := rm.oldest()
	if first.pos < from {
		return
	}
	cut, hasCut := s.faults.cutAt(rm.id)
	if hasCut && rm.backfilled >= cut {
		return
	}
	c := s.peer(s.id.ServerName)
	added, err := c.BackfillPage(ctx, rm.cl, []string{first.id})
	if err != nil {
		return
	}
	for _, rec := range added {
		if rec.Outcome == conduitlike.Rejected {
			continue
		}
		if hasCut && rm.backfilled >= cut {
			rm.cl.DropFromTimeline(rec.EventID) // never stored: a backfill after Clear brings it again
			continue
		}
		rm.older = append(rm.older, entry{pos: -s.nextCount(), id: rec.EventID})
		rm.backfilled++
	}
}

// oldest is the room's oldest timeline PDU. Caller holds rm.mu.
func (rm *room) oldest() entry {
	if len(rm.older) > 0 {
		return rm.older[len(rm.older)-1]
	}
	return rm.newer[0]
}

// before returns up to limit timeline PDUs older than pos, newest first. Caller holds rm.mu.
func (rm *room) before(pos int64, limit int) []entry {
	var out []entry
	for i := len(rm.newer) - 1; i >= 0 && len(out) < limit; i-- {
		if rm.newer[i].pos < pos {
			out = append(out, rm.newer[i])
		}
	}
	for _, e := range rm.older {
		if len(out) >= limit {
			break
		}
		if e.pos < pos {
			out = append(out, e)
		}
	}
	return out
}

// after returns up to limit timeline PDUs newer than pos, oldest first. Caller holds rm.mu.
func (rm *room) after(pos int64, limit int) []entry {
	var out []entry
	for i := len(rm.older) - 1; i >= 0 && len(out) < limit; i-- {
		if rm.older[i].pos > pos {
			out = append(out, rm.older[i])
		}
	}
	for _, e := range rm.newer {
		if len(out) >= limit {
			break
		}
		if e.pos > pos {
			out = append(out, e)
		}
	}
	return out
}

// clientEvent is a PDU in the client API's format.
func clientEvent(p gmsl.PDU) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(p.JSON(), &m)
	out := map[string]json.RawMessage{}
	for _, k := range []string{"type", "content", "sender", "state_key", "origin_server_ts", "room_id", "redacts"} {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	out["event_id"], _ = json.Marshal(p.EventID())
	return out
}

// state answers GET /rooms/{roomId}/state: the current state, to a joined user.
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3roomsroomidstate
func (s *Server) state(w http.ResponseWriter, _ *http.Request, user string, vars map[string]string) {
	rm := s.heldRoom(vars["room"])
	if rm == nil {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You don't have permission to view the room state.")
		return
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.membership(user) != "join" {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You don't have permission to view the room state.")
		return
	}
	out := []map[string]json.RawMessage{}
	for _, id := range rm.stateIDs() {
		p, _ := rm.cl.Event(id)
		out = append(out, clientEvent(p))
	}
	writeJSON(w, http.StatusOK, out)
}

// stateIDs are the current state's event IDs, sorted. Caller holds rm.mu.
func (rm *room) stateIDs() []string {
	ids := make([]string, 0, len(rm.state))
	for _, id := range rm.state {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// joinedMembers answers GET /rooms/{roomId}/joined_members, to a joined user.
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3roomsroomidjoined_members
func (s *Server) joinedMembers(w http.ResponseWriter, _ *http.Request, user string, vars map[string]string) {
	rm := s.heldRoom(vars["room"])
	if rm == nil {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You aren't a member of the room.")
		return
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.membership(user) != "join" {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You aren't a member of the room.")
		return
	}
	joined := map[string]map[string]any{}
	for k, id := range rm.state {
		if k.Type != spec.MRoomMember || rm.membership(k.StateKey) != "join" {
			continue
		}
		p, _ := rm.cl.Event(id)
		var c struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		_ = json.Unmarshal(p.Content(), &c)
		joined[k.StateKey] = map[string]any{"display_name": c.DisplayName, "avatar_url": c.AvatarURL}
	}
	writeJSON(w, http.StatusOK, map[string]any{"joined": joined})
}

// joinedRooms answers GET /joined_rooms.
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3joined_rooms
func (s *Server) joinedRooms(w http.ResponseWriter, _ *http.Request, user string, _ map[string]string) {
	writeJSON(w, http.StatusOK, map[string]any{"joined_rooms": s.JoinedRooms(user)})
}

// JoinedRooms lists the rooms a user is joined to, sorted.
func (s *Server) JoinedRooms(user string) []string {
	s.mu.Lock()
	rooms := make([]*room, 0, len(s.rooms))
	for _, rm := range s.rooms {
		rooms = append(rooms, rm)
	}
	s.mu.Unlock()
	out := []string{}
	for _, rm := range rooms {
		rm.mu.Lock()
		if rm.cl != nil && rm.membership(user) == "join" {
			out = append(out, rm.id)
		}
		rm.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// RoomInfo is what the simulated Conduit holds of a room, for tests.
type RoomInfo struct {
	Version       string
	Timeline      []string // event IDs, newest first
	Backfilled    int      // how many came by backfill
	State         []string // current state event IDs, sorted
	ReachedCreate bool     // the oldest timeline PDU is m.room.create
}

// Room returns what the server holds of a room; ok is false when it never joined it.
func (s *Server) Room(roomID string) (info RoomInfo, ok bool) {
	rm := s.heldRoom(roomID)
	if rm == nil {
		return info, false
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	info.Version, info.Backfilled, info.State = rm.version, rm.backfilled, rm.stateIDs()
	for _, e := range rm.before(1<<63-1, len(rm.older)+len(rm.newer)) {
		info.Timeline = append(info.Timeline, e.id)
	}
	if p, ok := rm.cl.Event(rm.oldest().id); ok && p.Type() == spec.MRoomCreate {
		info.ReachedCreate = true
	}
	return info, true
}
