package synapsesim

import (
	"encoding/base64"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// requester resolves the request's access token (Bearer header or access_token parameter),
// answering 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN as Synapse does.
func (s *Server) requester(w http.ResponseWriter, r *http.Request) (tokenInfo, bool) {
	tok := ""
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		tok = strings.TrimPrefix(h, "Bearer ")
	} else {
		tok = r.URL.Query().Get("access_token")
	}
	if tok == "" {
		writeError(w, http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token.")
		return tokenInfo{}, false
	}
	s.mu.Lock()
	ti, ok := s.tokens[tok]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusUnauthorized, obj{{"errcode", "M_UNKNOWN_TOKEN"}, {"error", "Invalid access token passed."}, {"soft_logout", false}})
		return tokenInfo{}, false
	}
	return ti, true
}

// requireAdmin is requester plus the server-admin check (403 "You are not a server admin").
func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request) (tokenInfo, bool) {
	ti, ok := s.requester(w, r)
	if !ok {
		return ti, false
	}
	if !ti.user.Admin {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You are not a server admin")
		return ti, false
	}
	return ti, true
}

// adminUser resolves a local user in an admin path: 400 for remote users, 404 for unknown ones.
func (s *Server) adminUser(w http.ResponseWriter, id string) *world.User {
	if !s.isLocal(id) {
		writeError(w, http.StatusBadRequest, "M_UNKNOWN", "Can only look up local users")
		return nil
	}
	u := s.w.User(id)
	if u == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "User not found")
	}
	return u
}

// serverVersion serves GET /_synapse/admin/v1/server_version.
// https://element-hq.github.io/synapse/latest/admin_api/version_api.html
func (s *Server) serverVersion(w http.ResponseWriter, r *http.Request, _ []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	out := obj{{"server_version", s.opts.Version}}
	if !s.modernUsers() {
		out = append(out, kv{"python_version", "3.11.2"})
	}
	writeJSON(w, http.StatusOK, out)
}

// modernUsers reports whether the APIs have the newer shape seen on the live 1.120.2 and 1.163.2
// and not in the 1.67 recordings (admin booleans, erased, last_seen_ts, no python_version, pusher
// device_id and enabled, media user_id, unsigned.membership, no original_event in relations). The
// release between 1.67 and 1.120 that made each change is not pinned down; 1.120 is the earliest verified.
func (s *Server) modernUsers() bool { return s.atLeast(1, 120) }

// flag is an admin-API boolean: 0/1 before modernUsers, true/false after.
func (s *Server) flag(b bool) any {
	if s.modernUsers() {
		return b
	}
	return boolInt(b)
}

// lastSeen is a user's latest device activity in ms, or nil with no device.
func lastSeen(u *world.User) any {
	var ts int64
	for _, d := range u.Devices {
		ts = max(ts, d.LastSeenTS)
	}
	if ts == 0 {
		return nil
	}
	return ts
}

// listUsers serves GET /_synapse/admin/v2/users: sorted by name, deactivated users only with
// deactivated=true, 0/1 booleans, creation_ts in ms, next_token a string omitted on the last page.
// From 1.93 entries carry "locked" and locked users are listed only with locked=true.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-accounts
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, _ []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	q := r.URL.Query()
	from, limit, ok := pageParams(w, q.Get("from"), q.Get("limit"), 100)
	if !ok {
		return
	}
	name, userID := q.Get("name"), q.Get("user_id")
	withLocked := s.atLeast(1, 93)
	var users []*world.User
	for _, u := range s.w.Users {
		if u.Deactivated && q.Get("deactivated") != "true" {
			continue
		}
		if u.Locked && withLocked && q.Get("locked") != "true" {
			continue
		}
		if name != "" && !strings.Contains(u.ID, name) && !strings.Contains(u.Profile.DisplayName, name) {
			continue
		}
		if userID != "" && !strings.Contains(u.ID, userID) {
			continue
		}
		users = append(users, u)
	}
	sort.Slice(users, func(i, j int) bool { return users[i].ID < users[j].ID })
	page := []obj{}
	for i := from; i < len(users) && i < from+limit; i++ {
		u := users[i]
		entry := obj{{"name", u.ID}, {"user_type", nullable(u.UserType)}, {"is_guest", s.flag(false)}, {"admin", s.flag(u.Admin)},
			{"deactivated", s.flag(u.Deactivated)}, {"shadow_banned", s.flag(false)}, {"displayname", nullable(u.Profile.DisplayName)},
			{"avatar_url", nullable(u.Profile.AvatarURL)}, {"creation_ts", u.CreationTS}}
		if withLocked {
			entry = append(entry, kv{"locked", u.Locked})
		}
		if s.modernUsers() {
			entry = append(entry, kv{"erased", false}, kv{"last_seen_ts", lastSeen(u)})
		}
		if s.atLeast(1, 120) && !s.atLeast(1, 163) {
			entry = append(entry, kv{"approved", true}) // listed by 1.120.2, no longer by 1.163.2
		}
		page = append(page, entry)
	}
	out := obj{{"users", page}, {"total", len(users)}}
	if from+limit < len(users) {
		out = append(out, kv{"next_token", strconv.Itoa(from + len(page))})
	}
	writeJSON(w, http.StatusOK, out)
}

func pageParams(w http.ResponseWriter, fromS, limitS string, dflt int) (int, int, bool) {
	from, limit := 0, dflt
	var err error
	if fromS != "" {
		if from, err = strconv.Atoi(fromS); err != nil || from < 0 {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Query parameter from must be a string representing a positive integer.")
			return 0, 0, false
		}
	}
	if limitS != "" {
		if limit, err = strconv.Atoi(limitS); err != nil || limit < 0 {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Query parameter limit must be a string representing a positive integer.")
			return 0, 0, false
		}
	}
	return from, limit, true
}

// getUser serves GET /_synapse/admin/v2/users/{userId} (creation_ts in seconds here; "locked" from 1.93).
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#query-user-account
func (s *Server) getUser(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	u := s.adminUser(w, v[0])
	if u == nil {
		return
	}
	tps := []world.Threepid{}
	tps = append(tps, u.Threepids...)
	ext := []world.ExternalID{}
	ext = append(ext, u.ExternalIDs...)
	out := obj{{"name", u.ID}, {"is_guest", s.flag(false)}, {"admin", s.flag(u.Admin)}, {"consent_version", nil},
		{"consent_server_notice_sent", nil}, {"appservice_id", nil}, {"creation_ts", u.CreationTS / 1000},
		{"user_type", nullable(u.UserType)}, {"deactivated", s.flag(u.Deactivated)}, {"shadow_banned", s.flag(false)},
		{"displayname", nullable(u.Profile.DisplayName)}, {"avatar_url", nullable(u.Profile.AvatarURL)},
		{"threepids", tps}, {"external_ids", ext}}
	if s.atLeast(1, 93) {
		out = append(out, kv{"locked", u.Locked})
	}
	if s.modernUsers() {
		out = append(out, kv{"consent_ts", nil}, kv{"erased", false}, kv{"last_seen_ts", lastSeen(u)})
	}
	if s.atLeast(1, 163) {
		out = append(out, kv{"suspended", false}) // seen on 1.163.2, not on 1.120.2
	}
	writeJSON(w, http.StatusOK, out)
}

// loginAs serves POST /_synapse/admin/v1/users/{userId}/login: a puppet token acting as the user,
// with no device; refused for the admin itself and for remote users.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#login-as-a-user
func (s *Server) loginAs(w http.ResponseWriter, r *http.Request, v []string) {
	ti, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	if !s.isLocal(v[0]) {
		writeError(w, http.StatusBadRequest, "M_UNKNOWN", "Only local users can be logged in as")
		return
	}
	var body struct {
		ValidUntilMS any `json:"valid_until_ms"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
			return
		}
	}
	if body.ValidUntilMS != nil {
		if _, isNum := body.ValidUntilMS.(float64); !isNum {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "'valid_until_ms' parameter must be an int")
			return
		}
	}
	u := s.w.User(v[0])
	if u == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "User not found")
		return
	}
	if u.ID == ti.user.ID {
		writeError(w, http.StatusBadRequest, "M_UNKNOWN", "Cannot use admin API to login as self")
		return
	}
	tok := s.newToken(u)
	writeJSON(w, http.StatusOK, obj{{"access_token", tok}})
}

// newToken mints a "syt_<b64 localpart>_<random>_<crc>" token bound to u with no device.
func (s *Server) newToken(u *world.User) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	rnd := make([]byte, 20)
	s.mu.Lock()
	for i := range rnd {
		rnd[i] = letters[s.rng.IntN(len(letters))]
	}
	s.mu.Unlock()
	payload := "syt_" + base64.RawURLEncoding.EncodeToString([]byte(u.Localpart)) + "_" + string(rnd)
	crc := crc32.ChecksumIEEE([]byte(payload))
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [6]byte
	for i := 5; i >= 0; i-- {
		b[i] = digits[crc%62]
		crc /= 62
	}
	tok := payload + "_" + string(b[:])
	s.mu.Lock()
	s.tokens[tok] = tokenInfo{user: u}
	s.mu.Unlock()
	return tok
}

// searchUsers serves GET /_synapse/admin/v1/search_users/{localUserId}?term=: a bare list
// including password hashes (undocumented; present from 0.19.3 on).
func (s *Server) searchUsers(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	if !s.isLocal(v[0]) {
		writeError(w, http.StatusBadRequest, "M_UNKNOWN", "Can only users a local user")
		return
	}
	q := r.URL.Query()
	if !q.Has("term") {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing string query parameter 'term'")
		return
	}
	term := q.Get("term")
	out := []obj{}
	for _, u := range s.w.Users {
		if strings.Contains(u.ID, term) {
			out = append(out, obj{{"name", u.ID}, {"password_hash", nullable(u.PasswordHash)}, {"is_guest", 0},
				{"admin", boolInt(u.Admin)}, {"user_type", nullable(u.UserType)}})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// accountData serves GET /_synapse/admin/v1/users/{userId}/accountdata (no m.tag, no m.push_rules).
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#account-data
func (s *Server) accountData(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	u := s.adminUser(w, v[0])
	if u == nil {
		return
	}
	global := map[string]json.RawMessage{}
	for k, c := range u.AccountData.Global {
		global[k] = c
	}
	rooms := map[string]map[string]json.RawMessage{}
	for rid, m := range u.AccountData.Rooms {
		rooms[rid] = m
	}
	writeJSON(w, http.StatusOK, obj{{"account_data", obj{{"global", global}, {"rooms", rooms}}}})
}

// adminDevices serves GET /_synapse/admin/v2/users/{userId}/devices.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-all-devices
func (s *Server) adminDevices(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	u := s.adminUser(w, v[0])
	if u == nil {
		return
	}
	out := []obj{}
	for _, d := range u.Devices {
		out = append(out, obj{{"user_id", u.ID}, {"device_id", d.ID}, {"display_name", nullable(d.DisplayName)},
			{"last_seen_user_agent", d.LastSeenUserAgent}, {"last_seen_ts", d.LastSeenTS}, {"last_seen_ip", d.LastSeenIP}})
	}
	writeJSON(w, http.StatusOK, obj{{"devices", out}, {"total", len(out)}})
}

// adminPushers serves GET /_synapse/admin/v1/users/{userId}/pushers.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-all-pushers
func (s *Server) adminPushers(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	u := s.adminUser(w, v[0])
	if u == nil {
		return
	}
	p := make([]any, 0, len(u.Pushers))
	for _, pu := range u.Pushers {
		if !s.modernUsers() {
			p = append(p, pu)
			continue
		}
		b, _ := json.Marshal(pu)
		b, _ = sjson.SetBytes(b, "enabled", true)
		b, _ = sjson.SetBytes(b, "device_id", nil)
		p = append(p, json.RawMessage(b))
	}
	writeJSON(w, http.StatusOK, obj{{"pushers", p}, {"total", len(p)}})
}

// adminJoinedRooms serves GET /_synapse/admin/v1/users/{userId}/joined_rooms.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-room-memberships-of-a-user
func (s *Server) adminJoinedRooms(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	u := s.adminUser(w, v[0])
	if u == nil {
		return
	}
	rooms := nonNil(s.w.JoinedRooms(u.ID))
	writeJSON(w, http.StatusOK, obj{{"joined_rooms", rooms}, {"total", len(rooms)}})
}

// whois serves GET /_synapse/admin/v1/whois/{userId}: sessions and connections per device.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#query-current-sessions-for-a-user
func (s *Server) whois(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	u := s.adminUser(w, v[0])
	if u == nil {
		return
	}
	devs := obj{}
	for _, d := range u.Devices {
		conn := obj{{"ip", d.LastSeenIP}, {"last_seen", d.LastSeenTS}, {"user_agent", d.LastSeenUserAgent}}
		devs = append(devs, kv{d.ID, obj{{"sessions", []obj{{{"connections", []obj{conn}}}}}}})
	}
	writeJSON(w, http.StatusOK, obj{{"user_id", u.ID}, {"devices", devs}})
}

// stateString reads a string field of the content of a current state event ("" if none).
func stateString(room *world.Room, typ, field string) string {
	id, ok := room.CurrentState().Get(typ, "")
	if !ok {
		return ""
	}
	return gjson.GetBytes(room.Event(id).JSON, "content."+gjson.Escape(field)).String()
}

func creatorOf(room *world.Room) string {
	c := room.Create()
	if v := gjson.GetBytes(c.JSON, "content.creator"); v.Exists() {
		return v.String()
	}
	return c.Sender
}

func (s *Server) localJoined(room *world.Room) []string {
	var out []string
	for _, m := range room.JoinedMembers() {
		if s.isLocal(m) {
			out = append(out, m)
		}
	}
	return out
}

// roomStats is the room list entry; a room with no local member has no maintained stats, so its
// name, alias, rules and visibility are null (as Synapse 1.67 answers).
func (s *Server) roomStats(room *world.Room) obj {
	kept := room.LocalJoinedNow()
	str := func(typ, field string) any {
		if !kept {
			return nil
		}
		return nullable(stateString(room, typ, field))
	}
	_, isPublic := s.publishedRooms()[room.ID]
	return obj{{"room_id", room.ID}, {"name", str("m.room.name", "name")}, {"canonical_alias", str("m.room.canonical_alias", "alias")},
		{"joined_members", len(room.JoinedMembers())}, {"joined_local_members", len(s.localJoined(room))}, {"version", room.Version},
		{"creator", creatorOf(room)}, {"encryption", str("m.room.encryption", "algorithm")}, {"federatable", true},
		{"public", isPublic}, {"join_rules", str("m.room.join_rules", "join_rule")}, {"guest_access", str("m.room.guest_access", "guest_access")},
		{"history_visibility", str("m.room.history_visibility", "history_visibility")}, {"state_events", room.CurrentState().Len()},
		{"room_type", nil}}
}

func (s *Server) publishedRooms() map[string]bool {
	out := map[string]bool{}
	for _, r := range s.w.Rooms {
		if r.IsPublic {
			out[r.ID] = true
		}
	}
	return out
}

// sortedRooms is the room list in Synapse's default order: by name, unnamed rooms first.
func (s *Server) sortedRooms() []*world.Room {
	rooms := append([]*world.Room{}, s.w.Rooms...)
	name := func(r *world.Room) string {
		if !r.LocalJoinedNow() {
			return ""
		}
		return stateString(r, "m.room.name", "name")
	}
	sort.SliceStable(rooms, func(i, j int) bool {
		ni, nj := name(rooms[i]), name(rooms[j])
		if ni != nj {
			return ni < nj
		}
		return rooms[i].ID < rooms[j].ID
	})
	return rooms
}

// listRooms serves GET /_synapse/admin/v1/rooms?from=&limit=: next_batch is an int offset.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#list-room-api
func (s *Server) listRooms(w http.ResponseWriter, r *http.Request, _ []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	q := r.URL.Query()
	from, limit, ok := pageParams(w, q.Get("from"), q.Get("limit"), 100)
	if !ok {
		return
	}
	all := s.sortedRooms()
	page := []obj{}
	for i := from; i < len(all) && i < from+limit; i++ {
		page = append(page, s.roomStats(all[i]))
	}
	out := obj{{"offset", from}, {"rooms", page}, {"total_rooms", len(all)}}
	if from+limit < len(all) {
		out = append(out, kv{"next_batch", from + len(page)})
	}
	if from > 0 {
		out = append(out, kv{"prev_batch", max(0, from-limit)})
	}
	writeJSON(w, http.StatusOK, out)
}

// adminRoom resolves the room of an admin path, 404 "Room not found" when unknown.
func (s *Server) adminRoom(w http.ResponseWriter, r *http.Request, id string) *world.Room {
	if _, ok := s.requireAdmin(w, r); !ok {
		return nil
	}
	room := s.w.Room(id)
	if room == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Room not found")
	}
	return room
}

// roomDetails serves GET /_synapse/admin/v1/rooms/{roomId}.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-details-api
func (s *Server) roomDetails(w http.ResponseWriter, r *http.Request, v []string) {
	room := s.adminRoom(w, r, v[0])
	if room == nil {
		return
	}
	st := s.roomStats(room)
	devices := 0
	for _, m := range s.localJoined(room) {
		if u := s.w.User(m); u != nil {
			devices += len(u.Devices)
		}
	}
	var avatar, topic any
	if room.LocalJoinedNow() {
		avatar, topic = nullable(stateString(room, "m.room.avatar", "url")), nullable(stateString(room, "m.room.topic", "topic"))
	}
	out := append(st[:len(st)-1:len(st)-1], kv{"avatar", avatar}, kv{"topic", topic}, st[len(st)-1],
		kv{"joined_local_devices", devices}, kv{"forgotten", false})
	if s.atLeast(1, 163) { // seen on 1.163.2, not on 1.120.2
		out = append(out, kv{"tombstoned", false}, kv{"replacement_room", nil})
	}
	writeJSON(w, http.StatusOK, out)
}

// roomMembers serves GET /_synapse/admin/v1/rooms/{roomId}/members (currently joined users).
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-members-api
func (s *Server) roomMembers(w http.ResponseWriter, r *http.Request, v []string) {
	room := s.adminRoom(w, r, v[0])
	if room == nil {
		return
	}
	m := nonNil(room.JoinedMembers())
	writeJSON(w, http.StatusOK, obj{{"members", m}, {"total", len(m)}})
}

// roomState serves GET /_synapse/admin/v1/rooms/{roomId}/state in client format; a room the server
// has left has no current state any more.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-state-api
func (s *Server) roomState(w http.ResponseWriter, r *http.Request, v []string) {
	room := s.adminRoom(w, r, v[0])
	if room == nil {
		return
	}
	out := []obj{}
	if room.LocalJoinedNow() {
		for _, id := range room.CurrentState().EventIDs() {
			out = append(out, s.clientEvent(room, room.Event(id)))
		}
	}
	writeJSON(w, http.StatusOK, obj{{"state", out}})
}

// forwardExtremities serves GET /_synapse/admin/v1/rooms/{roomId}/forward_extremities.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#forward-extremities-admin-api
func (s *Server) forwardExtremities(w http.ResponseWriter, r *http.Request, v []string) {
	room := s.adminRoom(w, r, v[0])
	if room == nil {
		return
	}
	out := []obj{}
	for _, id := range room.ForwardExtremities() {
		ev := room.Event(id)
		out = append(out, obj{{"event_id", id}, {"state_group", s.eventIndex(ev) + 1}, {"depth", ev.Depth}, {"received_ts", ev.OriginServerTS + 5}})
	}
	writeJSON(w, http.StatusOK, obj{{"count", len(out)}, {"results", out}})
}

// adminMessages serves GET /_synapse/admin/v1/rooms/{roomId}/messages (Synapse ≥ 1.68): no
// visibility filter; with raw, federation-format PDUs plus event_id and unsigned.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-messages-api
func (s *Server) adminMessages(w http.ResponseWriter, r *http.Request, v []string) {
	room := s.adminRoom(w, r, v[0])
	if room == nil {
		return
	}
	_, raw := r.URL.Query()["raw"]
	if f := r.URL.Query().Get("filter"); strings.Contains(f, `"event_format"`) && gjson.Get(f, "event_format").String() == "federation" {
		raw = true
	}
	s.paginate(w, r, room, func(ev *world.Event) any {
		if raw {
			pdu := adminRaw(room, ev, s.fedPDU(room, ev, false, unsignedAge))
			if gjsonHas(pdu, "event_id") {
				return json.RawMessage(pdu)
			}
			idJSON, _ := json.Marshal(ev.ID)
			return json.RawMessage(append(append([]byte(`{"event_id":`), idJSON...), append([]byte{','}, pdu[1:]...)...))
		}
		return s.clientEvent(room, ev)
	})
}

func gjsonHas(b []byte, key string) bool { return gjson.GetBytes(b, key).Exists() }

// fetchEvent serves GET /_synapse/admin/v1/fetch_event/{eventId} (Synapse ≥ 1.140): the raw PDU.
// https://element-hq.github.io/synapse/latest/admin_api/fetch_event.html
func (s *Server) fetchEvent(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	ev := s.w.Event(v[0])
	if ev == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Event not found")
		return
	}
	room := s.w.Room(ev.RoomID)
	pdu := adminRaw(room, ev, s.fedPDU(room, ev, false, unsignedAge))
	if !gjsonHas(pdu, "event_id") { // Synapse 1.163.2 names the event here, unlike over federation
		if named, err := sjson.SetBytes(pdu, "event_id", ev.ID); err == nil {
			pdu = named
		}
	}
	writeJSON(w, http.StatusOK, []byte(`{"event":`+string(pdu)+`}`))
}

// adminRaw is an event in the admin API's raw form: in a version 12 room Synapse gives the create
// event the room_id it does not have (seen on Synapse 1.163.2), so these bytes are not the signed
// PDU; the federation API serves it without.
func adminRaw(room *world.Room, ev *world.Event, pdu []byte) []byte {
	if room.DomainlessIDs() && ev.Type == "m.room.create" && !gjsonHas(pdu, "room_id") {
		if out, err := sjson.SetBytes(pdu, "room_id", room.ID); err == nil {
			return out
		}
	}
	return pdu
}

// LocalMedia lists the local media the simulated server holds for each user with any: the
// world's uploads (World.User.Media), in upload order.
func (s *Server) LocalMedia() map[string][]MediaItem {
	out := map[string][]MediaItem{}
	for _, u := range s.w.Users {
		for _, m := range u.Media {
			out[u.ID] = append(out[u.ID], MediaItem{MediaID: m.ID, Length: int64(len(m.Bytes))})
		}
	}
	return out
}

// MediaItem is one local upload of the simulated server.
type MediaItem struct {
	MediaID string
	Length  int64
}

// userMediaStatistics serves GET /_synapse/admin/v1/statistics/users/media: one entry per user with
// local media, sorted by user ID (order_by and dir are honoured for user_id only), next_token an int
// present while from+limit < total.
// https://element-hq.github.io/synapse/latest/admin_api/statistics.html#users-media-usage-statistics
func (s *Server) userMediaStatistics(w http.ResponseWriter, r *http.Request, _ []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	q := r.URL.Query()
	from, limit, ok := pageParams(w, q.Get("from"), q.Get("limit"), 100)
	if !ok {
		return
	}
	if q.Has("search_term") && q.Get("search_term") == "" {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Query parameter search_term cannot be an empty string.")
		return
	}
	media := s.LocalMedia()
	var ids []string
	for id := range media {
		if t := q.Get("search_term"); t == "" || strings.Contains(id, t) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if q.Get("dir") == "b" {
		slices.Reverse(ids)
	}
	page := []obj{}
	for i := from; i < len(ids) && i < from+limit; i++ {
		u := s.w.User(ids[i])
		var n int64
		for _, m := range media[u.ID] {
			n += m.Length
		}
		page = append(page, obj{{"displayname", nullable(u.Profile.DisplayName)}, {"media_count", len(media[u.ID])},
			{"media_length", n}, {"user_id", u.ID}})
	}
	out := obj{{"users", page}, {"total", len(ids)}}
	if from+limit < len(ids) {
		out = append(out, kv{"next_token", from + len(page)})
	}
	writeJSON(w, http.StatusOK, out)
}
