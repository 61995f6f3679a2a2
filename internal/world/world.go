// Package world generates a deterministic, fully signed model of a Synapse
// homeserver's data (users, devices, E2EE keys, account data and rooms of real
// PDUs) for the simulated Synapse and the tests built on it.
package world

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Room kinds: what a room exists to exercise.
const (
	KindOrdinary         = "ordinary"                         // local members only
	KindV1               = "v1"                               // room version 1 (event IDs with a server part, hashed refs)
	KindRemoteMembers    = "remote_members"                   // local room with members from the remote server
	KindAllLeft          = "all_left"                         // every local user has left (Synapse answers 403 for it)
	KindJoinedVisibility = "joined_visibility_remote_created" // created by the remote server, history "joined", locals joined late
)

// ServerKey is an ed25519 signing key of a homeserver.
type ServerKey struct {
	ServerName string
	KeyID      string // "ed25519:a_XXXX"
	Private    ed25519.PrivateKey
	Public     ed25519.PublicKey
}

// SynapseKeyFile returns the key in Synapse's signing key file format ("ed25519 a_XXXX <seed>").
func (k ServerKey) SynapseKeyFile() string {
	return "ed25519 " + k.KeyID[len("ed25519:"):] + " " + base64.RawStdEncoding.EncodeToString(k.Private.Seed()) + "\n"
}

// PublicBase64 is the public key in unpadded standard base64, as published in key documents.
func (k ServerKey) PublicBase64() string { return base64.RawStdEncoding.EncodeToString(k.Public) }

// OldKey is a rotated-out signing key with the time (ms) it stopped being used.
type OldKey struct {
	ServerKey
	ExpiredTS int64
}

// World is a generated homeserver: keys, users and rooms, with lookup indices.
type World struct {
	ServerName       string
	RemoteServerName string
	SigningKey       ServerKey
	OldKeys          []OldKey // local keys that signed early events, now expired
	RemoteKey        ServerKey
	Users            []*User  // local users, admin first
	RemoteUsers      []string // user IDs on the remote server
	Rooms            []*Room
	Aliases          map[string]string // local alias -> room ID

	usersByID  map[string]*User
	roomsByID  map[string]*Room
	eventsByID map[string]*Event
}

// User is a local account with everything an export of it needs.
type User struct {
	ID           string
	Localpart    string
	Password     string // plaintext, "" when the user has none
	PasswordHash string // bcrypt "$2b$", "" for no-password and deactivated users
	Admin        bool
	Deactivated  bool
	// Locked marks an account an admin locked (Synapse >= 1.93 lists it only with locked=true);
	// Generate locks nobody, tests set it.
	Locked       bool
	UserType     string // "" (null), "bot" or "support"
	CreationTS   int64  // ms
	Profile      Profile
	Threepids    []Threepid
	ExternalIDs  []ExternalID
	Devices      []*Device
	CrossSigning *CrossSigning // nil when the user never set it up
	AccountData  AccountData
	Tags         map[string]map[string]json.RawMessage // room ID -> tag -> content
	Pushers      []Pusher
	PushRules    json.RawMessage // full ruleset as GET /pushrules/ returns it
	KeyBackup    *KeyBackup
	// Media is the user's local uploads (avatar first, when the user has one), in upload order.
	Media []*Media
}

// Profile is a user's global profile.
type Profile struct {
	DisplayName string
	AvatarURL   string // "" = none
}

// Threepid is a bound third-party identifier (admin API shape).
type Threepid struct {
	Medium      string `json:"medium"`
	Address     string `json:"address"`
	AddedAt     int64  `json:"added_at"`
	ValidatedAt int64  `json:"validated_at"`
}

// ExternalID links a user to an SSO provider.
type ExternalID struct {
	AuthProvider string `json:"auth_provider"`
	ExternalID   string `json:"external_id"`
}

// Device is a user's device (session) with its E2EE identity.
type Device struct {
	ID                string
	DisplayName       string // "" = null
	LastSeenIP        string
	LastSeenTS        int64
	LastSeenUserAgent string
	AccessToken       string                     // "syt_..."
	Ed25519           ed25519.PrivateKey         // device signing key
	Curve25519        string                     // public identity key, unpadded base64
	Keys              json.RawMessage            // signed device keys, as in /keys/query (without "unsigned")
	OneTimeKeys       map[string]json.RawMessage // "signed_curve25519:<id>" -> signed key object
	// AccessTokenValidUntilMS is when AccessToken expires (ms; 0 = never, the usual case without
	// refresh tokens).
	AccessTokenValidUntilMS int64
	// FallbackKey is the device's fallback one-time key; nil when the device uploaded no keys.
	FallbackKey *FallbackKey
}

// FallbackKey is a device's fallback key as Synapse keeps it in e2e_fallback_keys_json.
type FallbackKey struct {
	Algorithm string          // "signed_curve25519"
	KeyID     string          // "AAAAAA..."
	JSON      json.RawMessage // signed {"key","fallback":true} object
	Used      bool            // a /keys/claim handed it out already
}

// Media is one local upload with its bytes, as Synapse's local_media_repository row and
// media_store file hold it.
type Media struct {
	ID          string // 24 letters, the part after "mxc://<server>/"
	ContentType string
	UploadName  string // "" = null
	CreatedTS   int64  // ms
	// LastAccessTS is when it was last downloaded (ms; 0 = null).
	LastAccessTS int64
	// QuarantinedBy is the admin who quarantined it ("" = not quarantined).
	QuarantinedBy string
	Bytes         []byte
	Thumbnails    []Thumbnail
}

// Thumbnail is a generated thumbnail of a local upload (local_media_repository_thumbnails).
type Thumbnail struct {
	Width, Height int
	ContentType   string
	Method        string // "crop" or "scale"
	Bytes         []byte
}

// FileName is the thumbnail's file name in Synapse's media store ("<w>-<h>-<top>-<sub>-<method>").
func (t Thumbnail) FileName() string {
	top, sub, _ := strings.Cut(t.ContentType, "/")
	return fmt.Sprintf("%d-%d-%s-%s-%s", t.Width, t.Height, top, sub, t.Method)
}

// CrossSigning holds a user's cross-signing keys: signed public key objects and private keys.
type CrossSigning struct {
	Master, SelfSigning, UserSigning                      json.RawMessage
	MasterPriv, SelfSigningPriv, UserSigningPriv          ed25519.PrivateKey
	MasterPublic, SelfSigningPublic, UserSigningPublicKey string // unpadded base64
}

// AccountData is a user's account data, admin-API shape (no m.tag, no m.push_rules).
type AccountData struct {
	Global map[string]json.RawMessage
	Rooms  map[string]map[string]json.RawMessage // room ID -> type -> content
}

// Pusher is an HTTP pusher in the admin API's shape.
type Pusher struct {
	AppDisplayName    string     `json:"app_display_name"`
	AppID             string     `json:"app_id"`
	Data              PusherData `json:"data"`
	DeviceDisplayName string     `json:"device_display_name"`
	Kind              string     `json:"kind"`
	Lang              string     `json:"lang"`
	ProfileTag        string     `json:"profile_tag"`
	Pushkey           string     `json:"pushkey"`
}

// PusherData is a pusher's data object.
type PusherData struct {
	URL    string `json:"url"`
	Format string `json:"format,omitempty"`
}

// KeyBackup is a user's current server-side key backup version and its sessions.
type KeyBackup struct {
	Version   string
	Algorithm string
	AuthData  json.RawMessage
	ETag      string
	Rooms     map[string]map[string]BackupSession // room ID -> session ID -> session
}

// Count is the number of backed-up sessions.
func (b *KeyBackup) Count() int {
	n := 0
	for _, s := range b.Rooms {
		n += len(s)
	}
	return n
}

// BackupSession is one backed-up megolm session (the /room_keys/keys shape).
type BackupSession struct {
	FirstMessageIndex int               `json:"first_message_index"`
	ForwardedCount    int               `json:"forwarded_count"`
	IsVerified        bool              `json:"is_verified"`
	SessionData       BackupSessionData `json:"session_data"`
}

// BackupSessionData is the encrypted part of a backed-up session.
type BackupSessionData struct {
	Ephemeral  string `json:"ephemeral"`
	Ciphertext string `json:"ciphertext"`
	Mac        string `json:"mac"`
}

// Room is a room and its whole event DAG.
type Room struct {
	ID      string
	Version string // "1", "6", "10", "11", "12"
	Kind    string
	Creator string
	// AdditionalCreators are the create event's additional_creators (room version 12): with
	// Creator they have infinite power and are never listed in m.room.power_levels.
	AdditionalCreators []string
	Name               string // current m.room.name, "" if none
	Topic              string // current topic
	Aliases            []string
	CanonicalAlias     string
	IsPublic           bool // published in the room directory
	JoinRule           string
	HistoryVisibility  string // current
	Encrypted          bool
	// FirstLocalJoin is the event ID of the first join of a local user; events
	// before it (KindJoinedVisibility) are hidden from the local server.
	FirstLocalJoin string
	Events         []*Event // creation (topological) order

	eventsByID  map[string]*Event
	stateBefore []*stateSnap // per Events index
	stateAfter  []*stateSnap
	index       map[string]int
	extremities []string
}

// Event is one signed PDU with the metadata Synapse keeps about it.
type Event struct {
	ID             string
	RoomID         string
	Type           string
	StateKey       *string
	Sender         string
	Origin         string // server that built and signed it
	Depth          int64
	PrevEvents     []string
	AuthEvents     []string
	OriginServerTS int64
	// JSON is the signed PDU as Synapse stores and serves it: canonical, no
	// "unsigned", with "event_id" only in room versions 1 and 2.
	JSON []byte
	// StreamOrdering is Synapse's global order; events backfilled before the
	// first local join (KindJoinedVisibility) get negative values, as in Synapse.
	StreamOrdering int64
	Outlier        bool   // always false today: every event is in the timeline
	Membership     string // content.membership for m.room.member
	Redacts        string // target of an m.room.redaction
	Redacted       bool   // a later m.room.redaction targets this event
	RedactedBy     string
	RedactedJSON   []byte // JSON pruned by the room version's redaction algorithm, when Redacted
	SignedWithKey  string // key ID that signed it
}

// IsState reports whether the event is a state event.
func (e *Event) IsState() bool { return e.StateKey != nil }

// User returns the local user with the given ID, or nil.
func (w *World) User(id string) *User { return w.usersByID[id] }

// Room returns the room with the given ID, or nil.
func (w *World) Room(id string) *Room { return w.roomsByID[id] }

// Event returns the event with the given ID from any room, or nil.
func (w *World) Event(id string) *Event { return w.eventsByID[id] }

// EventCount is the total number of events in all rooms.
func (w *World) EventCount() int { return len(w.eventsByID) }

// RoomsOfKind returns the rooms of one kind, in generation order.
func (w *World) RoomsOfKind(kind string) []*Room {
	var out []*Room
	for _, r := range w.Rooms {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// KeyFor returns the public key of server's key ID and its expiry (0 = current),
// covering the local, old and remote keys.
func (w *World) KeyFor(server, keyID string) (pub ed25519.PublicKey, expiredTS int64, ok bool) {
	switch server {
	case w.ServerName:
		if keyID == w.SigningKey.KeyID {
			return w.SigningKey.Public, 0, true
		}
		for _, k := range w.OldKeys {
			if k.KeyID == keyID {
				return k.Public, k.ExpiredTS, true
			}
		}
	case w.RemoteServerName:
		if keyID == w.RemoteKey.KeyID {
			return w.RemoteKey.Public, 0, true
		}
	}
	return nil, 0, false
}

// Memberships returns the user's current membership in every room where it has one.
func (w *World) Memberships(userID string) map[string]string {
	out := map[string]string{}
	for _, r := range w.Rooms {
		if m := r.MembershipNow(userID); m != "" {
			out[r.ID] = m
		}
	}
	return out
}

// JoinedRooms returns the IDs of the rooms the user is currently joined to, in generation order.
func (w *World) JoinedRooms(userID string) []string {
	var out []string
	for _, r := range w.Rooms {
		if r.MembershipNow(userID) == "join" {
			out = append(out, r.ID)
		}
	}
	return out
}

// Event returns the room's event with the given ID, or nil.
func (r *Room) Event(id string) *Event { return r.eventsByID[id] }

// Create returns the m.room.create event.
func (r *Room) Create() *Event { return r.Events[0] }

// Latest returns the last event created in the room.
func (r *Room) Latest() *Event { return r.Events[len(r.Events)-1] }

// ForwardExtremities returns the IDs of the events no other event points to, sorted.
func (r *Room) ForwardExtremities() []string { return append([]string(nil), r.extremities...) }

// CurrentState returns the room's state after its latest events.
func (r *Room) CurrentState() State { return State{r.stateAfter[len(r.Events)-1]} }

// StateBefore returns the state resolved at the event's prev_events (what
// /state_ids answers for it).
func (r *Room) StateBefore(eventID string) (State, bool) {
	i, ok := r.index[eventID]
	if !ok {
		return State{}, false
	}
	return State{r.stateBefore[i]}, true
}

// StateAfter returns the state including the event itself if it is a state
// event (Synapse's state group of the event, used for visibility).
func (r *Room) StateAfter(eventID string) (State, bool) {
	i, ok := r.index[eventID]
	if !ok {
		return State{}, false
	}
	return State{r.stateAfter[i]}, true
}

// LocalJoinedAt reports whether some local user is joined in the state after the event.
func (r *Room) LocalJoinedAt(eventID string) bool {
	st, ok := r.StateAfter(eventID)
	return ok && st.LocalJoined() > 0
}

// LocalJoinedNow reports whether some local user is joined in the current state.
func (r *Room) LocalJoinedNow() bool { return r.CurrentState().LocalJoined() > 0 }

// HistoryVisibilityAt returns m.room.history_visibility in the state after the
// event ("shared" if unset, as the spec says).
func (r *Room) HistoryVisibilityAt(eventID string) string {
	st, ok := r.StateAfter(eventID)
	if !ok {
		return ""
	}
	return r.historyVisibility(st)
}

func (r *Room) historyVisibility(st State) string {
	id, ok := st.Get("m.room.history_visibility", "")
	if !ok {
		return "shared"
	}
	var c struct {
		HV string `json:"history_visibility"`
	}
	_ = json.Unmarshal(contentOf(r.eventsByID[id].JSON), &c)
	return c.HV
}

// MembershipAt returns the user's membership in the state after the event ("" if none).
func (r *Room) MembershipAt(eventID, userID string) string {
	st, ok := r.StateAfter(eventID)
	if !ok {
		return ""
	}
	return r.membership(st, userID)
}

// MembershipNow returns the user's current membership ("" if none).
func (r *Room) MembershipNow(userID string) string { return r.membership(r.CurrentState(), userID) }

func (r *Room) membership(st State, userID string) string {
	id, ok := st.Get("m.room.member", userID)
	if !ok {
		return ""
	}
	return r.eventsByID[id].Membership
}

// JoinedMembers returns the currently joined users (local and remote), sorted.
func (r *Room) JoinedMembers() []string {
	var out []string
	for k, id := range r.CurrentState().Map() {
		if k.Type == "m.room.member" && r.eventsByID[id].Membership == "join" {
			out = append(out, k.StateKey)
		}
	}
	sort.Strings(out)
	return out
}

// DomainlessIDs reports whether the room's ID is its create event's reference hash (version 12):
// its create event has no room_id and is listed in no event's auth_events.
func (r *Room) DomainlessIDs() bool { return domainlessVersion(r.Version) }

func domainlessVersion(v string) bool { return v == "12" }

// AuthEventIDs returns the event's auth events as the auth rules see them: in version 12 rooms the
// room's m.room.create first, which the room ID implies (Synapse's auth chains hold it), then
// its auth_events.
func (r *Room) AuthEventIDs(e *Event) []string {
	if !r.DomainlessIDs() || e.Type == "m.room.create" || len(r.Events) == 0 {
		return e.AuthEvents
	}
	return append([]string{r.Create().ID}, e.AuthEvents...)
}

// AuthChain returns the IDs of all events reachable from ids through
// auth_events (the given events are included only if includeGiven), ordered by
// depth then ID; in version 12 rooms the m.room.create every event implies is reached too.
func (r *Room) AuthChain(ids []string, includeGiven bool) []string {
	seen := map[string]bool{}
	var stack []string
	for _, id := range ids {
		if includeGiven && !seen[id] && r.eventsByID[id] != nil {
			seen[id] = true
		}
		if ev := r.eventsByID[id]; ev != nil {
			stack = append(stack, r.AuthEventIDs(ev)...)
		}
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[id] {
			continue
		}
		seen[id] = true
		if ev := r.eventsByID[id]; ev != nil {
			stack = append(stack, r.AuthEventIDs(ev)...)
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := r.eventsByID[out[i]], r.eventsByID[out[j]]
		if a.Depth != b.Depth {
			return a.Depth < b.Depth
		}
		return a.ID < b.ID
	})
	return out
}
