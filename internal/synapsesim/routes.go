package synapsesim

import (
	"net/http"
	"strings"
)

// buildRoutes lists every endpoint with its route name (used by Stats and Faults).
func (s *Server) buildRoutes() []route {
	type h = func(http.ResponseWriter, *http.Request, []string)
	var rs []route
	add := func(name, method, pattern string, handler h, minVer ...int) {
		rt := route{name: name, method: method, parts: strings.Split(strings.TrimPrefix(pattern, "/"), "/"), handler: handler}
		if len(minVer) == 2 {
			rt.minVer = [2]int{minVer[0], minVer[1]}
		}
		rs = append(rs, rt)
	}
	const adm, fed = "/_synapse/admin", "/_matrix/federation/v1"
	add("admin.server_version", "GET", adm+"/v1/server_version", s.serverVersion)
	add("admin.users", "GET", adm+"/v2/users", s.listUsers)
	add("admin.user", "GET", adm+"/v2/users/{user}", s.getUser)
	add("admin.login", "POST", adm+"/v1/users/{user}/login", s.loginAs)
	add("admin.search_users", "GET", adm+"/v1/search_users/{user}", s.searchUsers)
	add("admin.accountdata", "GET", adm+"/v1/users/{user}/accountdata", s.accountData)
	add("admin.devices", "GET", adm+"/v2/users/{user}/devices", s.adminDevices)
	add("admin.pushers", "GET", adm+"/v1/users/{user}/pushers", s.adminPushers)
	add("admin.joined_rooms", "GET", adm+"/v1/users/{user}/joined_rooms", s.adminJoinedRooms)
	add("admin.user_media", "GET", adm+"/v1/users/{user}/media", s.userMedia)
	add("admin.whois", "GET", adm+"/v1/whois/{user}", s.whois)
	add("admin.rooms", "GET", adm+"/v1/rooms", s.listRooms)
	add("admin.room", "GET", adm+"/v1/rooms/{room}", s.roomDetails)
	add("admin.room_members", "GET", adm+"/v1/rooms/{room}/members", s.roomMembers)
	add("admin.room_state", "GET", adm+"/v1/rooms/{room}/state", s.roomState)
	add("admin.forward_extremities", "GET", adm+"/v1/rooms/{room}/forward_extremities", s.forwardExtremities)
	add("admin.room_messages", "GET", adm+"/v1/rooms/{room}/messages", s.adminMessages, 1, 68)
	add("admin.fetch_event", "GET", adm+"/v1/fetch_event/{event}", s.fetchEvent, 1, 140)
	add("admin.statistics_users_media", "GET", adm+"/v1/statistics/users/media", s.userMediaStatistics)

	add("client.versions", "GET", "/_matrix/client/versions", s.versions)
	for _, v := range []string{"v3", "r0"} {
		c := "/_matrix/client/" + v
		add("client.whoami", "GET", c+"/account/whoami", s.whoami)
		add("client.profile", "GET", c+"/profile/{user}", s.profile)
		add("client.sync", "GET", c+"/sync", s.sync)
		add("client.devices", "GET", c+"/devices", s.devices)
		add("client.pushers", "GET", c+"/pushers", s.pushers)
		add("client.pushrules", "GET", c+"/pushrules/", s.pushRules)
		add("client.pushrules", "GET", c+"/pushrules", s.pushRules)
		add("client.tags", "GET", c+"/user/{user}/rooms/{room}/tags", s.tags)
		add("client.account_data", "GET", c+"/user/{user}/account_data/{type}", s.globalAccountData)
		add("client.room_account_data", "GET", c+"/user/{user}/rooms/{room}/account_data/{type}", s.roomAccountData)
		add("client.3pid", "GET", c+"/account/3pid", s.threepids)
		add("client.keys_query", "POST", c+"/keys/query", s.keysQuery)
		add("client.room_keys_version", "GET", c+"/room_keys/version", s.backupVersion)
		add("client.room_keys_version", "GET", c+"/room_keys/version/{version}", s.backupVersion)
		add("client.room_keys_keys", "GET", c+"/room_keys/keys", s.backupKeys)
		add("client.joined_rooms", "GET", c+"/joined_rooms", s.joinedRooms)
		add("client.room_aliases", "GET", c+"/rooms/{room}/aliases", s.roomAliases)
		add("client.logout", "POST", c+"/logout", s.logout)
		add("client.messages", "GET", c+"/rooms/{room}/messages", s.roomMessages)
		add("client.event", "GET", c+"/rooms/{room}/event/{event}", s.roomEvent)
	}
	add("client.relations", "GET", "/_matrix/client/v1/rooms/{room}/relations/{event}", s.relations)
	add("client.relations", "GET", "/_matrix/client/v1/rooms/{room}/relations/{event}/{rel_type}", s.relations)

	add("fed.version", "GET", fed+"/version", s.fedVersion)
	add("key.server", "GET", "/_matrix/key/v2/server", s.keyServer)
	add("key.server", "GET", "/_matrix/key/v2/server/{key}", s.keyServer)
	add("key.query", "GET", "/_matrix/key/v2/query/{server}", s.keyQuery)
	add("fed.backfill", "GET", fed+"/backfill/{room}", s.backfill)
	add("fed.event", "GET", fed+"/event/{event}", s.fedEvent)
	add("fed.get_missing_events", "POST", fed+"/get_missing_events/{room}", s.getMissingEvents)
	add("fed.state_ids", "GET", fed+"/state_ids/{room}", s.stateIDs)
	add("fed.state", "GET", fed+"/state/{room}", s.state)
	add("fed.event_auth", "GET", fed+"/event_auth/{room}/{event}", s.eventAuth)
	add("fed.make_join", "GET", fed+"/make_join/{room}/{user}", s.makeJoin)
	add("fed.user_devices", "GET", fed+"/user/devices/{user}", s.userDevices)
	add("fed.query_profile", "GET", fed+"/query/profile", s.queryProfile)
	add("fed.public_rooms", "GET", fed+"/publicRooms", s.publicRooms)
	return rs
}
