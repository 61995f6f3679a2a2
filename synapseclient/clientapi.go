package synapseclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
)

// UserAPI is the part of the client-server API the migration reads for one user; UserClient
// implements it and tests can fake it.
type UserAPI interface {
	WhoAmI(ctx context.Context) (*WhoAmI, error)
	Profile(ctx context.Context, userID string) (*Profile, error)
	SyncAccountData(ctx context.Context) (*SyncAccountData, error)
	Devices(ctx context.Context) ([]Device, error)
	Pushers(ctx context.Context) ([]Pusher, error)
	PushRules(ctx context.Context) (json.RawMessage, error)
	RoomTags(ctx context.Context, userID, roomID string) (map[string]json.RawMessage, error)
	ThreePIDs(ctx context.Context) ([]ThreePID, error)
	QueryKeys(ctx context.Context, userIDs ...string) (*KeysQuery, error)
	RoomKeysVersion(ctx context.Context) (*BackupVersion, error)
	RoomKeys(ctx context.Context, version string) (*RoomKeys, error)
	RoomAliases(ctx context.Context, roomID string) ([]string, error)
	Logout(ctx context.Context) error
}

var _ UserAPI = (*UserClient)(nil)

// UserClient talks to /_matrix/client/v3 with one access token, e.g. a login-as puppet token.
// The token never appears in errors.
type UserClient struct {
	t     *transport
	base  *url.URL
	token string
}

func (u *UserClient) get(ctx context.Context, template, query string, out any, args ...string) error {
	c := &call{endpoint: "GET " + template, method: "GET", base: u.base, path: fillPath(template, args...), query: query,
		auth: bearer(u.token), idempotent: true}
	return u.t.getJSON(ctx, c, out)
}

// WhoAmI is the owner of an access token; puppet tokens have no device.
type WhoAmI struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	IsGuest  bool   `json:"is_guest"`
}

// WhoAmI asks whose token this is.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3accountwhoami
func (u *UserClient) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var out WhoAmI
	if err := u.get(ctx, "/_matrix/client/v3/account/whoami", "", &out); err != nil {
		return nil, err
	}
	if out.UserID == "" {
		return nil, fmt.Errorf("synapseclient: GET /_matrix/client/v3/account/whoami: answer has no user_id")
	}
	return &out, nil
}

// Profile is a user's display name and avatar; Raw keeps any other profile fields.
type Profile struct {
	DisplayName *string         `json:"displayname"`
	AvatarURL   *string         `json:"avatar_url"`
	Raw         json.RawMessage `json:"-"`
}

// Profile returns a user's profile.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3profileuserid
func (u *UserClient) Profile(ctx context.Context, userID string) (*Profile, error) {
	var raw json.RawMessage
	if err := u.get(ctx, "/_matrix/client/v3/profile/{userId}", "", &raw, userID); err != nil {
		return nil, err
	}
	var out Profile
	if err := decode("GET /_matrix/client/v3/profile/{userId}", raw, &out); err != nil {
		return nil, err
	}
	out.Raw = raw
	return &out, nil
}

// AccountDataEvent is one account data entry as /sync gives it.
type AccountDataEvent struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// SyncAccountData is the account data of one /sync: global (with the synthesized m.push_rules)
// and per joined room (with m.tag).
type SyncAccountData struct {
	NextBatch string
	Global    []AccountDataEvent
	Rooms     map[string][]AccountDataEvent
}

// SyncFilter is the filter SyncAccountData sends: no presence, timeline, state or ephemeral
// events, only account data. It is the filter of the recorded Synapse 1.67 fixture
// client_sync_global_and_room_account_data.
const SyncFilter = `{"presence":{"not_types":["*"]},"room":{"timeline":{"limit":0,"not_types":["*"]},"state":{"not_types":["*"]},"ephemeral":{"not_types":["*"]}}}`

// SyncAccountData runs one initial /sync filtered down to account data. Only joined rooms
// appear, and only those that have room account data.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3sync
func (u *UserClient) SyncAccountData(ctx context.Context) (*SyncAccountData, error) {
	var out struct {
		NextBatch   string `json:"next_batch"`
		AccountData struct {
			Events []AccountDataEvent `json:"events"`
		} `json:"account_data"`
		Rooms struct {
			Join map[string]struct {
				AccountData struct {
					Events []AccountDataEvent `json:"events"`
				} `json:"account_data"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if err := u.get(ctx, "/_matrix/client/v3/sync", "filter="+escape(SyncFilter), &out); err != nil {
		return nil, err
	}
	res := &SyncAccountData{NextBatch: out.NextBatch, Global: nonNil(out.AccountData.Events), Rooms: map[string][]AccountDataEvent{}}
	for room, r := range out.Rooms.Join {
		if len(r.AccountData.Events) > 0 {
			res.Rooms[room] = r.AccountData.Events
		}
	}
	return res, nil
}

// Devices lists the token owner's devices.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3devices
func (u *UserClient) Devices(ctx context.Context) ([]Device, error) {
	var out struct {
		Devices []Device `json:"devices"`
	}
	if err := u.get(ctx, "/_matrix/client/v3/devices", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.Devices), nil
}

// Pushers lists the token owner's pushers.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3pushers
func (u *UserClient) Pushers(ctx context.Context) ([]Pusher, error) {
	var out struct {
		Pushers []Pusher `json:"pushers"`
	}
	if err := u.get(ctx, "/_matrix/client/v3/pushers", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.Pushers), nil
}

// PushRules returns the token owner's push rulesets exactly as received ({"global": {...}}).
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3pushrules
func (u *UserClient) PushRules(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	if err := u.get(ctx, "/_matrix/client/v3/pushrules/", "", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RoomTags returns a user's tags on a room: tag name to its content (e.g. {"order":0.25}).
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3useruseridroomsroomidtags
func (u *UserClient) RoomTags(ctx context.Context, userID, roomID string) (map[string]json.RawMessage, error) {
	var out struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	if err := u.get(ctx, "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags", "", &out, userID, roomID); err != nil {
		return nil, err
	}
	if out.Tags == nil {
		out.Tags = map[string]json.RawMessage{}
	}
	return out.Tags, nil
}

// ThreePIDs lists the token owner's third-party identifiers.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3account3pid
func (u *UserClient) ThreePIDs(ctx context.Context) ([]ThreePID, error) {
	var out struct {
		ThreePIDs []ThreePID `json:"threepids"`
	}
	if err := u.get(ctx, "/_matrix/client/v3/account/3pid", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.ThreePIDs), nil
}

// KeysQuery holds public device and cross-signing keys, each object as received (signatures
// intact). The user-signing key is only returned to its owner.
type KeysQuery struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        map[string]json.RawMessage            `json:"failures"`
}

// QueryKeys returns all devices' keys and the cross-signing keys of the given users.
// https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3keysquery
func (u *UserClient) QueryKeys(ctx context.Context, userIDs ...string) (*KeysQuery, error) {
	const template = "/_matrix/client/v3/keys/query"
	req := map[string]map[string][]string{"device_keys": {}}
	for _, id := range userIDs {
		req["device_keys"][id] = []string{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	c := &call{endpoint: "POST " + template, method: "POST", base: u.base, path: template, body: body,
		auth: bearer(u.token), idempotent: true}
	var out KeysQuery
	if err := u.t.getJSON(ctx, c, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// BackupVersion is the current server-side key backup; AuthData is kept as received.
type BackupVersion struct {
	Version   string          `json:"version"`
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	ETag      string          `json:"etag"`
	Count     int64           `json:"count"`
	Raw       json.RawMessage `json:"-"`
}

// RoomKeysVersion returns the current key backup version, or nil without error when the user
// has none (404 M_NOT_FOUND).
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3room_keysversion
func (u *UserClient) RoomKeysVersion(ctx context.Context) (*BackupVersion, error) {
	const template = "/_matrix/client/v3/room_keys/version"
	var raw json.RawMessage
	if err := u.get(ctx, template, "", &raw); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == 404 && (e.ErrCode == "M_NOT_FOUND" || e.ErrCode == "") {
			return nil, nil
		}
		return nil, err
	}
	var out BackupVersion
	if err := decode("GET "+template, raw, &out); err != nil {
		return nil, err
	}
	out.Raw = raw
	return &out, nil
}

// RoomKeys holds the sessions of one backup version: room ID to session ID to key data as received.
type RoomKeys struct {
	Rooms map[string]map[string]json.RawMessage
}

// RoomKeys returns every backed-up session of a backup version.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3room_keyskeys
func (u *UserClient) RoomKeys(ctx context.Context, version string) (*RoomKeys, error) {
	const template = "/_matrix/client/v3/room_keys/keys"
	if version == "" {
		return nil, fmt.Errorf("synapseclient: GET %s: version is required", template)
	}
	var out struct {
		Rooms map[string]struct {
			Sessions map[string]json.RawMessage `json:"sessions"`
		} `json:"rooms"`
	}
	if err := u.get(ctx, template, "version="+escape(version), &out); err != nil {
		return nil, err
	}
	res := &RoomKeys{Rooms: map[string]map[string]json.RawMessage{}}
	for room, r := range out.Rooms {
		res.Rooms[room] = r.Sessions
	}
	return res, nil
}

// Logout invalidates the client's access token (for a login-as puppet token: only the token, as
// it has no device). A token the server no longer knows (401) counts as logged out, so a retry
// after a lost answer succeeds.
// https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3logout
func (u *UserClient) Logout(ctx context.Context) error {
	const template = "/_matrix/client/v3/logout"
	c := &call{endpoint: "POST " + template, method: "POST", base: u.base, path: template, body: []byte("{}"),
		auth: bearer(u.token), idempotent: true}
	_, err := u.t.do(ctx, c)
	if errors.Is(err, ErrUnauthorized) {
		return nil
	}
	return err
}

// RoomAliases lists the local aliases of a room; Synapse lets a server admin read them without
// being in the room.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidaliases
func (u *UserClient) RoomAliases(ctx context.Context, roomID string) ([]string, error) {
	var out struct {
		Aliases []string `json:"aliases"`
	}
	if err := u.get(ctx, "/_matrix/client/v3/rooms/{roomId}/aliases", "", &out, roomID); err != nil {
		return nil, err
	}
	return nonNil(out.Aliases), nil
}
