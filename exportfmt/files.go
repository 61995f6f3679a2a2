package exportfmt

import (
	"encoding/json"

	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// Kinds of FileEntry, and the folders their files are in.
const (
	KindUser = "user"
	KindRoom = "room"
	UsersDir = "users"
	RoomsDir = "rooms"
)

// UserFile is OUT/users/<encoded user ID>.json: one local account, everything its owner would
// miss on the new server. It holds no access tokens; password_hash and key_backup are secrets.
type UserFile struct {
	UID          string                     `json:"uid"`
	Admin        bool                       `json:"admin"`
	Deactivated  bool                       `json:"deactivated"`
	Locked       bool                       `json:"locked"`
	ShadowBanned bool                       `json:"shadow_banned"`
	Erased       bool                       `json:"erased"`
	IsGuest      bool                       `json:"is_guest"`
	UserType     *string                    `json:"user_type"`
	AppserviceID *string                    `json:"appservice_id"`
	CreationTS   int64                      `json:"creation_ts"` // milliseconds
	PasswordHash *string                    `json:"password_hash"`
	Profile      json.RawMessage            `json:"profile"`
	Threepids    []synapseclient.ThreePID   `json:"threepids"`
	ExternalIDs  []synapseclient.ExternalID `json:"external_ids"`
	AccountData  AccountData                `json:"account_data"`
	Devices      []json.RawMessage          `json:"devices"`
	Pushers      []json.RawMessage          `json:"pushers"`
	JoinedRooms  []string                   `json:"joined_rooms"`
	E2E          E2E                        `json:"e2e"`
	// ClientAPIAs says how the client-API parts were read: "login_as" (a puppet token, logged
	// out afterwards), "admin_token" (the admin's own account), "synapse_db" (Synapse's
	// database, when Synapse refuses login-as and -synapse-db was given) or ClientAPIAsLockedAdmin.
	ClientAPIAs string `json:"client_api_as"`
}

// AccountData is a user's account data by type: global (with m.push_rules) and per room (with
// m.tag as {"tags": {...}}), as /sync would show it, for every room the admin API knows.
type AccountData struct {
	Global map[string]json.RawMessage            `json:"global"`
	Rooms  map[string]map[string]json.RawMessage `json:"rooms"`
}

// E2E is a user's public end-to-end encryption keys and server-side key backup.
type E2E struct {
	// DeviceKeys are the signed device keys by device ID, without "unsigned".
	DeviceKeys     map[string]json.RawMessage `json:"device_keys"`
	MasterKey      json.RawMessage            `json:"master_key"`
	SelfSigningKey json.RawMessage            `json:"self_signing_key"`
	UserSigningKey json.RawMessage            `json:"user_signing_key"`
	KeyBackup      *KeyBackup                 `json:"key_backup"`
}

// KeyBackup is the current key backup version and every session in it (still encrypted).
type KeyBackup struct {
	Version   string                                `json:"version"`
	Algorithm string                                `json:"algorithm"`
	AuthData  json.RawMessage                       `json:"auth_data"`
	ETag      string                                `json:"etag"`
	Count     int64                                 `json:"count"`
	Rooms     map[string]map[string]json.RawMessage `json:"rooms"`
}

// ClientAPIAsLockedAdmin is client_api_as of a locked account: profile and public keys were read
// with the admin's token; push rules, room tags and key backup could not be read.
const ClientAPIAsLockedAdmin = "admin_token_locked"

// Client-API sources of a user file (UserFile.ClientAPIAs).
const (
	AsLoginAs    = "login_as"
	AsAdminToken = "admin_token"
	AsSynapseDB  = "synapse_db"
)

// State formats of a room file.
const (
	// StateFederation: state and auth chain are full signed PDUs from the federation API.
	StateFederation = "federation"
	// StateClient: no local user is joined, so Synapse's federation API refuses the room; state
	// is what the admin API gives, in client format (no signatures, hashes or edges), and may be
	// empty (Synapse drops the current state of rooms the server left).
	StateClient = "client"
)

// RoomFile is OUT/rooms/<encoded room ID>.json: the room's current state and who is in it.
type RoomFile struct {
	RoomID      string `json:"room_id"`
	RoomVersion string `json:"room_version"`
	// StateFormat is StateFederation or StateClient.
	StateFormat string `json:"state_format"`
	// State is the current state, sorted by type and state key: PDUs as Synapse sent them minus
	// "unsigned" (StateFederation), or client-format events minus ages (StateClient).
	State []json.RawMessage `json:"state"`
	// AuthChain is every event the state's auth_events reach, by depth then event ID (PDUs).
	AuthChain          []json.RawMessage `json:"auth_chain"`
	ForwardExtremities []string          `json:"forward_extremities"`
	// LocalMembers and RemoteMembers map user IDs to their current membership.
	LocalMembers  map[string]string `json:"local_members"`
	RemoteMembers map[string]string `json:"remote_members"`
	// JoinedLocalMembers counts the local users joined now; 0 means the history cannot be served
	// over federation.
	JoinedLocalMembers int `json:"joined_local_members"`
	// Aliases are the room's local aliases; CanonicalAlias is from its state.
	Aliases        []string `json:"aliases"`
	CanonicalAlias *string  `json:"canonical_alias"`
	// Published is whether the room is in the server's public room directory.
	Published bool `json:"published"`
	// FederatedWith lists the other servers with joined members.
	FederatedWith []string `json:"federated_with"`
}
