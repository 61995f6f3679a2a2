package conduitsim

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"

	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/conduit"
)

// UserData is where the user endpoints read accounts from; *conduit.DB (a database the import
// wrote, opened read-only) implements it, so the simulated Conduit answers with the imported data.
type UserData interface {
	User(id string) (u conduit.User, ok bool, err error)
	Devices(user string) ([]conduit.Device, error)
	DeviceKeys(user string) (map[string]json.RawMessage, error)
	CrossSigningKeys(user string) (map[string]json.RawMessage, error)
	AccountData(user string) (map[string]map[string]json.RawMessage, error)
	Backups(user string) ([]conduit.Backup, error)
}

var _ UserData = (*conduit.DB)(nil)

func init() {
	routeSets = append(routeSets, func(s *Server, add func(name, method, pattern string, h handlerFunc)) {
		const c = "/_matrix/client/v3"
		add("client.profile", "GET", c+"/profile/{user}", s.profile)
		add("client.devices", "GET", c+"/devices", s.devices)
		add("client.account_data", "GET", c+"/user/{user}/account_data/{type}", s.accountData)
		add("client.room_account_data", "GET", c+"/user/{user}/rooms/{room}/account_data/{type}", s.accountData)
		add("client.keys_query", "POST", c+"/keys/query", s.keysQuery)
		add("client.room_keys_version", "GET", c+"/room_keys/version", s.roomKeysVersion)
	})
}

func internalError(w http.ResponseWriter, err error) {
	writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "conduitsim: reading the database: "+err.Error())
}

// profile answers GET /profile/{userId} as Conduit does for a local user: 404 when the user does
// not exist, otherwise the display name, avatar and blurhash it holds (absent fields left out).
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3profileuserid
func (s *Server) profile(w http.ResponseWriter, _ *http.Request, _ string, vars map[string]string) {
	id := vars["user"]
	out := map[string]string{}
	if s.opts.UserData == nil {
		s.mu.Lock()
		u, ok := s.local[id]
		s.mu.Unlock()
		if !ok {
			writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Profile was not found.")
			return
		}
		setNonEmpty(out, "displayname", u.DisplayName)
		setNonEmpty(out, "avatar_url", u.AvatarURL)
		writeJSON(w, http.StatusOK, out)
		return
	}
	u, ok, err := s.opts.UserData.User(id)
	if err != nil {
		internalError(w, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Profile was not found.")
		return
	}
	setNonEmpty(out, "displayname", u.DisplayName)
	setNonEmpty(out, "avatar_url", u.AvatarURL)
	setNonEmpty(out, "blurhash", u.Blurhash)
	writeJSON(w, http.StatusOK, out)
}

func setNonEmpty(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// devices answers GET /devices: the requesting user's devices.
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3devices
func (s *Server) devices(w http.ResponseWriter, _ *http.Request, user string, _ map[string]string) {
	out := []map[string]any{}
	if s.opts.UserData != nil {
		devs, err := s.opts.UserData.Devices(user)
		if err != nil {
			internalError(w, err)
			return
		}
		for _, d := range devs {
			m := map[string]any{"device_id": d.ID, "display_name": nullable(d.DisplayName), "last_seen_ip": nullable(d.LastSeenIP)}
			if d.LastSeenTS > 0 {
				m["last_seen_ts"] = d.LastSeenTS
			}
			out = append(out, m)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// accountData answers GET /user/{userId}/account_data/{type} and its per-room form: only for the
// requesting user (403 otherwise, as Conduit), 404 M_NOT_FOUND "Data not found." when absent.
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3useruseridaccount_datatype
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3useruseridroomsroomidaccount_datatype
func (s *Server) accountData(w http.ResponseWriter, _ *http.Request, user string, vars map[string]string) {
	if vars["user"] != user {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Not allowed to get account data of other users.")
		return
	}
	if s.opts.UserData == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Data not found.")
		return
	}
	all, err := s.opts.UserData.AccountData(user)
	if err != nil {
		internalError(w, err)
		return
	}
	content, ok := all[vars["room"]][vars["type"]]
	if !ok {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Data not found.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(content)
}

// keysQuery answers POST /keys/query for local users: every device's keys (with
// unsigned.device_display_name, as Conduit adds it), master and self-signing keys, and the
// user-signing key only to its owner.
// https://spec.matrix.org/v1.11/client-server-api/#post_matrixclientv3keysquery
func (s *Server) keysQuery(w http.ResponseWriter, r *http.Request, user string, _ map[string]string) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "Invalid JSON body.")
		return
	}
	out := map[string]map[string]any{"device_keys": {}, "master_keys": {}, "self_signing_keys": {}, "user_signing_keys": {}, "failures": {}}
	if s.opts.UserData == nil {
		writeJSON(w, http.StatusOK, out)
		return
	}
	for uid, want := range req.DeviceKeys {
		keys, err := s.opts.UserData.DeviceKeys(uid)
		if err != nil {
			internalError(w, err)
			return
		}
		devs, err := s.opts.UserData.Devices(uid)
		if err != nil {
			internalError(w, err)
			return
		}
		names := map[string]string{}
		for _, d := range devs {
			names[d.ID] = d.DisplayName
		}
		byDevice := map[string]json.RawMessage{}
		for dev, raw := range keys {
			if len(want) > 0 && !contains(want, dev) {
				continue
			}
			if n := names[dev]; n != "" {
				if withName, err := sjson.SetBytes(raw, "unsigned.device_display_name", n); err == nil {
					raw = withName
				}
			}
			byDevice[dev] = raw
		}
		out["device_keys"][uid] = byDevice
		cs, err := s.opts.UserData.CrossSigningKeys(uid)
		if err != nil {
			internalError(w, err)
			return
		}
		if k, ok := cs["master"]; ok {
			out["master_keys"][uid] = k
		}
		if k, ok := cs["self_signing"]; ok {
			out["self_signing_keys"][uid] = k
		}
		if k, ok := cs["user_signing"]; ok && uid == user {
			out["user_signing_keys"][uid] = k
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// roomKeysVersion answers GET /room_keys/version: the latest backup version, which Conduit takes
// as the last in key order of backupid_algorithm; count is its sessions, etag its etag.
// https://spec.matrix.org/v1.11/client-server-api/#get_matrixclientv3room_keysversion
func (s *Server) roomKeysVersion(w http.ResponseWriter, _ *http.Request, user string, _ map[string]string) {
	var backups []conduit.Backup
	if s.opts.UserData != nil {
		var err error
		if backups, err = s.opts.UserData.Backups(user); err != nil {
			internalError(w, err)
			return
		}
	}
	if len(backups) == 0 {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "Key backup does not exist.")
		return
	}
	sort.Slice(backups, func(i, j int) bool { return backups[i].Version < backups[j].Version })
	b := backups[len(backups)-1]
	var alg struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
	}
	if err := json.Unmarshal(b.Algorithm, &alg); err != nil {
		internalError(w, err)
		return
	}
	count := 0
	for _, sessions := range b.Sessions {
		count += len(sessions)
	}
	writeJSON(w, http.StatusOK, map[string]any{"algorithm": alg.Algorithm, "auth_data": alg.AuthData, "count": count,
		"etag": strconv.FormatUint(b.Etag, 10), "version": b.Version})
}
