package synapsesim

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// clientVersions is what Synapse 1.67 advertises at /_matrix/client/versions.
const clientVersions = `{"versions":["r0.0.1","r0.1.0","r0.2.0","r0.3.0","r0.4.0","r0.5.0","r0.6.0","r0.6.1","v1.1","v1.2"],` +
	`"unstable_features":{"org.matrix.label_based_filtering":true,"org.matrix.e2e_cross_signing":true,"org.matrix.msc2432":true,` +
	`"uk.half-shot.msc2666.mutual_rooms":true,"io.element.e2ee_forced.public":false,"io.element.e2ee_forced.private":false,` +
	`"io.element.e2ee_forced.trusted_private":false,"org.matrix.msc3026.busy_presence":false,"org.matrix.msc2285.stable":true,` +
	`"org.matrix.msc3827.stable":true,"org.matrix.msc2716":false,"org.matrix.msc3030":false,"org.matrix.msc3440.stable":true,"fi.mau.msc2815":false}}`

// versions serves GET /_matrix/client/versions (unauthenticated).
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientversions
func (s *Server) versions(w http.ResponseWriter, r *http.Request, _ []string) {
	writeJSON(w, http.StatusOK, []byte(clientVersions))
}

// whoami serves GET /_matrix/client/v3/account/whoami; puppet tokens have no device_id.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3accountwhoami
func (s *Server) whoami(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	out := obj{{"user_id", ti.user.ID}, {"is_guest", false}}
	if ti.device != "" {
		out = append(out, kv{"device_id", ti.device})
	}
	writeJSON(w, http.StatusOK, out)
}

// profile serves GET /_matrix/client/v3/profile/{userId}, leaving out unset fields.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3profileuserid
func (s *Server) profile(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requester(w, r); !ok {
		return
	}
	u := s.w.User(v[0])
	if u == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Profile was not found")
		return
	}
	out := obj{}
	if u.Profile.DisplayName != "" {
		out = append(out, kv{"displayname", u.Profile.DisplayName})
	}
	if u.Profile.AvatarURL != "" {
		out = append(out, kv{"avatar_url", u.Profile.AvatarURL})
	}
	writeJSON(w, http.StatusOK, out)
}

// syncFilter is the part of a sync filter the simulator honours.
type syncFilter struct {
	globalAD bool
	roomAD   bool
	rooms    map[string]bool // nil = all joined rooms
}

func parseSyncFilter(raw string) syncFilter {
	f := syncFilter{globalAD: true, roomAD: true}
	if !strings.HasPrefix(strings.TrimSpace(raw), "{") {
		return f
	}
	excludesAll := func(path string) bool {
		for _, t := range gjson.Get(raw, path+".not_types").Array() {
			if t.String() == "*" {
				return true
			}
		}
		return false
	}
	f.globalAD = !excludesAll("account_data")
	f.roomAD = !excludesAll("room.account_data")
	if rs := gjson.Get(raw, "room.rooms"); rs.Exists() && rs.IsArray() {
		f.rooms = map[string]bool{}
		for _, id := range rs.Array() {
			f.rooms[id.String()] = true
		}
	}
	return f
}

// sync serves GET /_matrix/client/v3/sync for account-data filters: global account data with a
// synthesized m.push_rules, and rooms.join only for joined rooms that have room account data
// (m.tag included), with empty timelines as Synapse answers such a filter.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3sync
func (s *Server) sync(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	u := ti.user
	f := parseSyncFilter(r.URL.Query().Get("filter"))
	batch := "s" + strconv.Itoa(s.w.EventCount()) + "_1_0_1_7_1_1_10_0"
	global := []obj{}
	if f.globalAD {
		for _, t := range sortedKeys(u.AccountData.Global) {
			global = append(global, obj{{"type", t}, {"content", u.AccountData.Global[t]}})
		}
		global = append(global, obj{{"type", "m.push_rules"}, {"content", u.PushRules}})
	}
	otk := map[string]int{}
	if ti.device != "" {
		for _, d := range u.Devices {
			if d.ID == ti.device && len(d.OneTimeKeys) > 0 {
				otk["signed_curve25519"] = len(d.OneTimeKeys)
			}
		}
	}
	unused := []string{}
	for _, d := range u.Devices {
		if d.ID == ti.device && d.FallbackKey != nil && !d.FallbackKey.Used {
			unused = append(unused, d.FallbackKey.Algorithm)
		}
	}
	out := obj{{"next_batch", batch}, {"account_data", obj{{"events", global}}}, {"device_one_time_keys_count", otk}}
	if !s.atLeast(1, 163) { // the unstable name is gone on 1.163.2 (still there on 1.120.2)
		out = append(out, kv{"org.matrix.msc2732.device_unused_fallback_key_types", unused})
	}
	out = append(out, kv{"device_unused_fallback_key_types", unused})
	join := obj{}
	for _, rid := range s.w.JoinedRooms(u.ID) {
		if (f.rooms != nil && !f.rooms[rid]) || !f.roomAD {
			continue
		}
		var evs []obj
		if tags := u.Tags[rid]; len(tags) > 0 {
			evs = append(evs, obj{{"type", "m.tag"}, {"content", obj{{"tags", tags}}}})
		}
		for _, t := range sortedKeys(u.AccountData.Rooms[rid]) {
			evs = append(evs, obj{{"type", t}, {"content", u.AccountData.Rooms[rid][t]}})
		}
		if len(evs) == 0 {
			continue
		}
		join = append(join, kv{rid, obj{{"timeline", obj{{"events", []any{}}, {"prev_batch", batch}, {"limited", false}}},
			{"state", obj{{"events", []any{}}}}, {"account_data", obj{{"events", evs}}}, {"ephemeral", obj{{"events", []any{}}}},
			{"unread_notifications", obj{{"notification_count", 0}, {"highlight_count", 0}}}, {"summary", obj{}}}})
	}
	if len(join) > 0 {
		out = append(out, kv{"rooms", obj{{"join", join}}})
	}
	writeJSON(w, http.StatusOK, out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// devices serves GET /_matrix/client/v3/devices (no user agent, unlike the admin API).
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3devices
func (s *Server) devices(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	out := []obj{}
	for _, d := range ti.user.Devices {
		out = append(out, obj{{"user_id", ti.user.ID}, {"device_id", d.ID}, {"display_name", nullable(d.DisplayName)},
			{"last_seen_ts", d.LastSeenTS}, {"last_seen_ip", d.LastSeenIP}})
	}
	writeJSON(w, http.StatusOK, obj{{"devices", out}})
}

// pushers serves GET /_matrix/client/v3/pushers.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3pushers
func (s *Server) pushers(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, obj{{"pushers", append([]world.Pusher{}, ti.user.Pushers...)}})
}

// pushRules serves GET /_matrix/client/v3/pushrules/.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3pushrules
func (s *Server) pushRules(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	rules := []byte(ti.user.PushRules)
	if s.modernUsers() { // the empty "device" scope is gone on 1.120.2 and 1.163.2
		rules, _ = sjson.DeleteBytes(rules, "device")
	}
	if s.atLeast(1, 163) && !gjson.GetBytes(rules, "global.postcontent").Exists() { // seen on 1.163.2
		rules, _ = sjson.SetRawBytes(rules, "global.postcontent", []byte("[]"))
	}
	writeJSON(w, http.StatusOK, rules)
}

// ownUser checks that a /user/{userId}/... path names the requester.
func ownUser(w http.ResponseWriter, ti tokenInfo, id, what string) bool {
	if ti.user.ID != id {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Cannot get "+what+" for other users.")
		return false
	}
	return true
}

// tags serves GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3useruseridroomsroomidtags
func (s *Server) tags(w http.ResponseWriter, r *http.Request, v []string) {
	ti, ok := s.requester(w, r)
	if !ok || !ownUser(w, ti, v[0], "tags") {
		return
	}
	tags := map[string]json.RawMessage{}
	for k, c := range ti.user.Tags[v[1]] {
		tags[k] = c
	}
	writeJSON(w, http.StatusOK, obj{{"tags", tags}})
}

// globalAccountData serves GET /_matrix/client/v3/user/{userId}/account_data/{type}: the raw content.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3useruseridaccount_datatype
func (s *Server) globalAccountData(w http.ResponseWriter, r *http.Request, v []string) {
	ti, ok := s.requester(w, r)
	if !ok || !ownUser(w, ti, v[0], "account data") {
		return
	}
	c, found := ti.user.AccountData.Global[v[1]]
	if v[1] == "m.push_rules" {
		c, found = ti.user.PushRules, true
	}
	if !found {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Account data not found")
		return
	}
	writeJSON(w, http.StatusOK, []byte(c))
}

// roomAccountData serves GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3useruseridroomsroomidaccount_datatype
func (s *Server) roomAccountData(w http.ResponseWriter, r *http.Request, v []string) {
	ti, ok := s.requester(w, r)
	if !ok || !ownUser(w, ti, v[0], "account data") {
		return
	}
	c, found := ti.user.AccountData.Rooms[v[1]][v[2]]
	if !found {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Room account data not found")
		return
	}
	writeJSON(w, http.StatusOK, []byte(c))
}

// threepids serves GET /_matrix/client/v3/account/3pid.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3account3pid
func (s *Server) threepids(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	out := []obj{}
	for _, t := range ti.user.Threepids {
		out = append(out, obj{{"medium", t.Medium}, {"address", t.Address}, {"validated_at", t.ValidatedAt}, {"added_at", t.AddedAt}})
	}
	writeJSON(w, http.StatusOK, obj{{"threepids", out}})
}

// keysQuery serves POST /_matrix/client/v3/keys/query: device keys with unsigned display names,
// cross-signing keys (the user-signing key only for the requester itself).
// https://spec.matrix.org/v1.3/client-server-api/#post_matrixclientv3keysquery
func (s *Server) keysQuery(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	var body struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	devKeys := obj{}
	master, selfSigning, userSigning := obj{}, obj{}, obj{}
	for _, uid := range sortedKeys(body.DeviceKeys) {
		u := s.w.User(uid)
		if u == nil {
			if s.isLocal(uid) {
				devKeys = append(devKeys, kv{uid, obj{}})
			}
			continue
		}
		want := body.DeviceKeys[uid]
		devs := obj{}
		for _, d := range u.Devices {
			if d.Keys == nil || (len(want) > 0 && !contains(want, d.ID)) {
				continue
			}
			un := obj{}
			if d.DisplayName != "" {
				un = obj{{"device_display_name", d.DisplayName}}
			}
			ub, _ := un.MarshalJSON()
			devs = append(devs, kv{d.ID, json.RawMessage(withUnsigned(d.Keys, ub))})
		}
		devKeys = append(devKeys, kv{uid, devs})
		if cs := u.CrossSigning; cs != nil {
			master = append(master, kv{uid, cs.Master})
			selfSigning = append(selfSigning, kv{uid, cs.SelfSigning})
			if uid == ti.user.ID {
				userSigning = append(userSigning, kv{uid, cs.UserSigning})
			}
		}
	}
	writeJSON(w, http.StatusOK, obj{{"device_keys", devKeys}, {"failures", obj{}}, {"master_keys", master},
		{"self_signing_keys", selfSigning}, {"user_signing_keys", userSigning}})
}

func contains(list []string, x string) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}

// backupVersion serves GET /_matrix/client/v3/room_keys/version[/{version}]: 404 when no backup.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3room_keysversion
func (s *Server) backupVersion(w http.ResponseWriter, r *http.Request, v []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	kb := ti.user.KeyBackup
	if kb == nil || (len(v) > 0 && v[0] != kb.Version) {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Unknown backup version")
		return
	}
	writeJSON(w, http.StatusOK, obj{{"version", kb.Version}, {"algorithm", kb.Algorithm}, {"auth_data", kb.AuthData},
		{"etag", kb.ETag}, {"count", kb.Count()}})
}

// backupKeys serves GET /_matrix/client/v3/room_keys/keys?version= (version is mandatory in 1.67).
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3room_keyskeys
func (s *Server) backupKeys(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if !q.Has("version") {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing string query parameter 'version'")
		return
	}
	kb := ti.user.KeyBackup
	if kb == nil || kb.Version != q.Get("version") {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Unknown backup version")
		return
	}
	rooms := obj{}
	for _, rid := range sortedKeys(kb.Rooms) {
		rooms = append(rooms, kv{rid, obj{{"sessions", kb.Rooms[rid]}}})
	}
	writeJSON(w, http.StatusOK, obj{{"rooms", rooms}})
}

// joinedRooms serves GET /_matrix/client/v3/joined_rooms.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3joined_rooms
func (s *Server) joinedRooms(w http.ResponseWriter, r *http.Request, _ []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, obj{{"joined_rooms", nonNil(s.w.JoinedRooms(ti.user.ID))}})
}

// visibleTo reports whether user may see ev under the room's history visibility at the event.
func visibleTo(room *world.Room, ev *world.Event, user string) bool {
	switch room.HistoryVisibilityAt(ev.ID) {
	case "joined":
		return room.MembershipAt(ev.ID, user) == "join"
	case "invited":
		m := room.MembershipAt(ev.ID, user)
		return m == "join" || m == "invite"
	case "world_readable":
		return true
	}
	return room.MembershipNow(user) != "" || room.MembershipAt(ev.ID, user) != ""
}

// memberRoom resolves a client room path for a user who is or was in the room.
func (s *Server) memberRoom(w http.ResponseWriter, ti tokenInfo, id string) *world.Room {
	room := s.w.Room(id)
	if room == nil || room.MembershipNow(ti.user.ID) == "" {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "User "+ti.user.ID+" not in room "+id+", and room previews are disabled")
		return nil
	}
	return room
}

// roomMessages serves GET /_matrix/client/v3/rooms/{roomId}/messages with the user's history visibility.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3roomsroomidmessages
func (s *Server) roomMessages(w http.ResponseWriter, r *http.Request, v []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	room := s.memberRoom(w, ti, v[0])
	if room == nil {
		return
	}
	s.paginate(w, r, room, func(ev *world.Event) any {
		if !visibleTo(room, ev, ti.user.ID) {
			return nil
		}
		if s.modernUsers() { // seen on 1.120.2 and 1.163.2
			return withMembership(s.clientEvent(room, ev))
		}
		return s.clientEvent(room, ev)
	})
}

// visibleEvent resolves the requester, a room they are in and an event in it they may see, or
// answers the error itself.
func (s *Server) visibleEvent(w http.ResponseWriter, r *http.Request, roomID, eventID string) (tokenInfo, *world.Room, *world.Event, bool) {
	ti, ok := s.requester(w, r)
	if !ok {
		return ti, nil, nil, false
	}
	room := s.memberRoom(w, ti, roomID)
	if room == nil {
		return ti, nil, nil, false
	}
	ev := room.Event(eventID)
	if ev == nil || !visibleTo(room, ev, ti.user.ID) {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Could not find event "+eventID)
		return ti, nil, nil, false
	}
	return ti, room, ev, true
}

// roomEvent serves GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3roomsroomideventeventid
func (s *Server) roomEvent(w http.ResponseWriter, r *http.Request, v []string) {
	_, room, ev, ok := s.visibleEvent(w, r, v[0], v[1])
	if !ok {
		return
	}
	if s.atLeast(1, 163) { // seen on 1.163.2, not on 1.120.2
		writeJSON(w, http.StatusOK, withMembership(s.clientEvent(room, ev)))
		return
	}
	writeJSON(w, http.StatusOK, s.clientEvent(room, ev))
}

// relations serves GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}: newest first, with
// Synapse 1.67's extra original_event.
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv1roomsroomidrelationseventid
func (s *Server) relations(w http.ResponseWriter, r *http.Request, v []string) {
	ti, room, target, ok := s.visibleEvent(w, r, v[0], v[1])
	if !ok {
		return
	}
	s.buildIndexes()
	rel := append([]*world.Event{}, s.rels[target.ID]...)
	sortNewestFirst(rel)
	limit := 5
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l > 0 {
		limit = l
	}
	chunk := []obj{}
	for _, ev := range rel {
		if len(v) > 2 && gjson.GetBytes(ev.JSON, `content.m\.relates_to.rel_type`).String() != v[2] {
			continue
		}
		if len(chunk) < limit && visibleTo(room, ev, ti.user.ID) {
			if s.modernUsers() {
				chunk = append(chunk, withMembership(s.clientEvent(room, ev)))
			} else {
				chunk = append(chunk, s.clientEvent(room, ev))
			}
		}
	}
	if s.modernUsers() { // original_event is gone on 1.120.2 and 1.163.2
		writeJSON(w, http.StatusOK, obj{{"chunk", chunk}})
		return
	}
	writeJSON(w, http.StatusOK, obj{{"chunk", chunk}, {"original_event", s.clientEvent(room, target)}})
}

// buildIndexes indexes relations and event positions once.
func (s *Server) buildIndexes() {
	s.relOnce.Do(func() {
		s.rels = map[string][]*world.Event{}
		s.stream = map[string]int{}
		for _, room := range s.w.Rooms {
			for i, ev := range room.Events {
				s.stream[ev.ID] = i
				if t := gjson.GetBytes(ev.JSON, `content.m\.relates_to.event_id`); t.Exists() {
					s.rels[t.String()] = append(s.rels[t.String()], ev)
				}
			}
		}
	})
}

// eventIndex is ev's position in its room's topological order.
func (s *Server) eventIndex(ev *world.Event) int {
	s.buildIndexes()
	return s.stream[ev.ID]
}

// pageToken renders a room position as a Synapse-looking topological token.
func pageToken(room *world.Room, pos int) string {
	var depth int64
	if pos > 0 && pos <= len(room.Events) {
		depth = room.Events[pos-1].Depth
	}
	return "t" + strconv.FormatInt(depth, 10) + "-" + strconv.Itoa(pos) + "_0_0_0_0_0_0_0_0"
}

// tokenPos parses a token from pageToken ("s..." sync tokens mean the end of the room).
func tokenPos(room *world.Room, tok string, dflt int) int {
	if tok == "" {
		return dflt
	}
	if strings.HasPrefix(tok, "s") {
		return len(room.Events)
	}
	_, rest, _ := strings.Cut(tok, "-")
	n, _, _ := strings.Cut(rest, "_")
	p, err := strconv.Atoi(n)
	if err != nil || p < 0 {
		return dflt
	}
	return min(p, len(room.Events))
}

// paginate answers a /messages request over the room's topological order; render returns nil to
// leave an event out.
func (s *Server) paginate(w http.ResponseWriter, r *http.Request, room *world.Room, render func(*world.Event) any) {
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir == "" {
		dir = "f"
	}
	if dir != "f" && dir != "b" {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Unknown direction: "+dir)
		return
	}
	limit := 10
	if ls := q.Get("limit"); ls != "" {
		l, err := strconv.Atoi(ls)
		if err != nil || l < 0 {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "limit must be an integer")
			return
		}
		limit = min(l, 1000)
	}
	n := len(room.Events)
	chunk := []any{}
	var start, end int
	if dir == "b" {
		start = tokenPos(room, q.Get("from"), n)
		stop := tokenPos(room, q.Get("to"), 0)
		p := start
		for ; p > stop && len(chunk) < limit; p-- {
			if e := render(room.Events[p-1]); e != nil {
				chunk = append(chunk, e)
			}
		}
		end = p
	} else {
		start = tokenPos(room, q.Get("from"), 0)
		stop := tokenPos(room, q.Get("to"), n)
		p := start
		for ; p < stop && len(chunk) < limit; p++ {
			if e := render(room.Events[p]); e != nil {
				chunk = append(chunk, e)
			}
		}
		end = p
	}
	out := obj{{"chunk", chunk}, {"start", pageToken(room, start)}}
	if end != start && end > 0 && end < n {
		out = append(out, kv{"end", pageToken(room, end)})
	}
	writeJSON(w, http.StatusOK, out)
}

// roomAliases serves GET /_matrix/client/v3/rooms/{roomId}/aliases: the room's local aliases, to
// a server admin always, otherwise to joined members or for world-readable rooms (403 else).
// https://spec.matrix.org/v1.3/client-server-api/#get_matrixclientv3roomsroomidaliases
func (s *Server) roomAliases(w http.ResponseWriter, r *http.Request, v []string) {
	ti, ok := s.requester(w, r)
	if !ok {
		return
	}
	room := s.w.Room(v[0])
	if room == nil || (!ti.user.Admin && room.MembershipNow(ti.user.ID) != "join" &&
		stateString(room, "m.room.history_visibility", "history_visibility") != "world_readable") {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "User "+ti.user.ID+" not in room "+v[0]+", and room previews are disabled")
		return
	}
	aliases := []string{}
	for a, id := range s.w.Aliases {
		if id == room.ID {
			aliases = append(aliases, a)
		}
	}
	sort.Strings(aliases)
	writeJSON(w, http.StatusOK, obj{{"aliases", aliases}})
}

// logout serves POST /_matrix/client/v3/logout: the token stops working; a puppet (login-as)
// token has no device, so only the token goes. Device tokens keep working here (the world's devices
// are fixed), where Synapse would delete the device.
// https://spec.matrix.org/v1.3/client-server-api/#post_matrixclientv3logout
func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ []string) {
	if _, ok := s.requester(w, r); !ok {
		return
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" || tok == r.Header.Get("Authorization") {
		tok = r.URL.Query().Get("access_token")
	}
	s.mu.Lock()
	if ti := s.tokens[tok]; ti.device == "" {
		delete(s.tokens, tok)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, obj{})
}

// LiveLoginTokens is the number of login-as (puppet) tokens that still work.
func (s *Server) LiveLoginTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ti := range s.tokens {
		if ti.device == "" {
			n++
		}
	}
	return n
}
