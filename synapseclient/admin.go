package synapseclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// AdminAPI is the part of Synapse's admin API the migration reads; AdminClient implements it and
// tests can fake it.
type AdminAPI interface {
	ServerVersion(ctx context.Context) (*ServerVersionInfo, error)
	Version(ctx context.Context) (Version, error)
	ListUsers(ctx context.Context, opts ListUsersOptions) (*UserPage, error)
	AllUsers(ctx context.Context) ([]UserSummary, error)
	User(ctx context.Context, userID string) (*UserDetails, error)
	LoginAsUser(ctx context.Context, userID string, validUntil time.Time) (string, error)
	SearchUsers(ctx context.Context, term string) ([]SearchUser, error)
	AccountData(ctx context.Context, userID string) (*AccountData, error)
	Devices(ctx context.Context, userID string) ([]Device, error)
	Pushers(ctx context.Context, userID string) ([]Pusher, error)
	JoinedRooms(ctx context.Context, userID string) ([]string, error)
	ListRooms(ctx context.Context, opts ListRoomsOptions) (*RoomPage, error)
	AllRooms(ctx context.Context) ([]RoomSummary, error)
	Room(ctx context.Context, roomID string) (*RoomDetails, error)
	RoomState(ctx context.Context, roomID string) ([]json.RawMessage, error)
	RoomMembers(ctx context.Context, roomID string) ([]string, error)
	ForwardExtremities(ctx context.Context, roomID string) ([]ForwardExtremity, error)
	RoomMessages(ctx context.Context, roomID string, opts MessagesOptions) (*MessagesPage, error)
	FetchEvent(ctx context.Context, eventID string) (*PDU, error)
}

var _ AdminAPI = (*AdminClient)(nil)

// AdminClient talks to /_synapse/admin with the admin token.
type AdminClient struct {
	t          *transport
	base       *url.URL
	fedBase    *url.URL
	token      string
	serverName string
	pageSize   int

	mu      sync.Mutex
	adminID string
	version *Version
}

func (a *AdminClient) call(method, template, path, query string, body []byte) *call {
	return &call{endpoint: method + " " + template, method: method, base: a.base, path: path, query: query,
		body: body, auth: bearer(a.token), idempotent: method == "GET"}
}

func (a *AdminClient) needToken(endpoint string) error {
	if a.token == "" {
		return fmt.Errorf("synapseclient: %s: %w: Config.AdminToken is empty", endpoint, ErrNotConfigured)
	}
	return nil
}

func (a *AdminClient) get(ctx context.Context, template, path, query string, out any) error {
	c := a.call("GET", template, path, query, nil)
	if err := a.needToken(c.endpoint); err != nil {
		return err
	}
	return a.t.getJSON(ctx, c, out)
}

// ServerVersionInfo is the answer of the admin server_version endpoint.
type ServerVersionInfo struct {
	ServerVersion string `json:"server_version"`
	PythonVersion string `json:"python_version"`
}

// ServerVersion asks Synapse its version.
// https://element-hq.github.io/synapse/latest/admin_api/version_api.html
func (a *AdminClient) ServerVersion(ctx context.Context) (*ServerVersionInfo, error) {
	var out ServerVersionInfo
	if err := a.get(ctx, "/_synapse/admin/v1/server_version", "/_synapse/admin/v1/server_version", "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Version returns Synapse's parsed version, from Config.ServerVersion, else the admin
// server_version endpoint, else the unauthenticated federation /version; it is cached once known.
func (a *AdminClient) Version(ctx context.Context) (Version, error) {
	a.mu.Lock()
	if a.version != nil {
		v := *a.version
		a.mu.Unlock()
		return v, nil
	}
	a.mu.Unlock()
	var raw string
	info, err := a.ServerVersion(ctx)
	if err == nil {
		raw = info.ServerVersion
	} else {
		if ctx.Err() != nil {
			return Version{}, err
		}
		fc := &FederationClient{t: a.t, base: a.fedBase, serverName: a.serverName}
		sv, ferr := fc.Version(ctx)
		if ferr != nil {
			return Version{}, fmt.Errorf("synapseclient: finding the server version: admin API: %w; federation API: %w", err, ferr)
		}
		raw = sv.Server.Version
	}
	v, err := ParseVersion(raw)
	if err != nil {
		return Version{}, err
	}
	a.mu.Lock()
	a.version = &v
	a.mu.Unlock()
	return v, nil
}

// requireVersion fails with an *UnsupportedError, before any request to endpoint, when the server
// is older than need.
func (a *AdminClient) requireVersion(ctx context.Context, endpoint string, need Version) error {
	have, err := a.Version(ctx)
	if err != nil {
		return err
	}
	if !have.AtLeast(need) {
		return &UnsupportedError{Endpoint: endpoint, Need: need, Have: have}
	}
	return nil
}

// AdminUserID returns the admin token's user ID: Config.AdminUserID, else asked from
// /account/whoami once.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3accountwhoami
func (a *AdminClient) AdminUserID(ctx context.Context) (string, error) {
	a.mu.Lock()
	id := a.adminID
	a.mu.Unlock()
	if id != "" {
		return id, nil
	}
	if err := a.needToken("GET /_matrix/client/v3/account/whoami"); err != nil {
		return "", err
	}
	u := &UserClient{t: a.t, base: a.base, token: a.token}
	who, err := u.WhoAmI(ctx)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.adminID = who.UserID
	a.mu.Unlock()
	return who.UserID, nil
}

// UserSummary is one entry of the users list. CreationTS is in milliseconds here.
type UserSummary struct {
	Name         string  `json:"name"`
	IsGuest      Bool    `json:"is_guest"`
	Admin        Bool    `json:"admin"`
	UserType     *string `json:"user_type"`
	Deactivated  Bool    `json:"deactivated"`
	Erased       Bool    `json:"erased"`
	ShadowBanned Bool    `json:"shadow_banned"`
	Locked       Bool    `json:"locked"`
	DisplayName  *string `json:"displayname"`
	AvatarURL    *string `json:"avatar_url"`
	CreationTS   int64   `json:"creation_ts"`
	LastSeenTS   *int64  `json:"last_seen_ts"`
}

// ListUsersOptions selects a page of users; deactivated and locked users are always included.
type ListUsersOptions struct {
	From  string // next_token of the previous page; "" for the first
	Limit int    // 0 for Synapse's default (100)
	Name  string // optional substring filter on user ID and display name
}

// UserPage is one page of users; NextToken is "" on the last page.
type UserPage struct {
	Users     []UserSummary `json:"users"`
	Total     int           `json:"total"`
	NextToken string        `json:"-"`
}

// ListUsers returns one page of local users, including deactivated and locked ones.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-accounts
func (a *AdminClient) ListUsers(ctx context.Context, opts ListUsersOptions) (*UserPage, error) {
	q := url.Values{}
	if opts.From != "" {
		q.Set("from", opts.From)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Name != "" {
		q.Set("name", opts.Name)
	}
	q.Set("deactivated", "true")
	q.Set("locked", "true")
	var out struct {
		UserPage
		NextToken json.RawMessage `json:"next_token"`
	}
	const p = "/_synapse/admin/v2/users"
	if err := a.get(ctx, p, p, q.Encode(), &out); err != nil {
		return nil, err
	}
	page := out.UserPage
	tok, err := flexToken(out.NextToken)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: GET %s: next_token: %w", p, err)
	}
	page.NextToken = tok
	return &page, nil
}

// flexToken reads a pagination token Synapse sends as a string or a number; null or absent is "".
func flexToken(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("neither string nor number")
	}
	return n.String(), nil
}

// maxPages bounds the all-pages helpers against a server that never ends its pagination.
const maxPages = 1 << 20

// AllUsers pages through every local user, deactivated and locked ones included.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-accounts
func (a *AdminClient) AllUsers(ctx context.Context) ([]UserSummary, error) {
	var all []UserSummary
	seen := map[string]bool{}
	opts := ListUsersOptions{Limit: a.pageSize}
	for range maxPages {
		page, err := a.ListUsers(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Users...)
		if page.NextToken == "" || len(page.Users) == 0 {
			return all, nil
		}
		if seen[page.NextToken] {
			return nil, fmt.Errorf("synapseclient: GET /_synapse/admin/v2/users: next_token %q repeats", page.NextToken)
		}
		seen[page.NextToken] = true
		opts.From = page.NextToken
	}
	return nil, fmt.Errorf("synapseclient: GET /_synapse/admin/v2/users: more than %d pages", maxPages)
}

// ThreePID is a third-party identifier (email, phone) bound to an account.
type ThreePID struct {
	Medium      string `json:"medium"`
	Address     string `json:"address"`
	AddedAt     int64  `json:"added_at"`
	ValidatedAt int64  `json:"validated_at"`
}

// ExternalID links an account to an SSO provider's user.
type ExternalID struct {
	AuthProvider string `json:"auth_provider"`
	ExternalID   string `json:"external_id"`
}

// UserDetails is the admin API's view of one account; CreationTS is in seconds here. Raw holds
// the whole answer as received.
type UserDetails struct {
	Name         string       `json:"name"`
	Admin        Bool         `json:"admin"`
	Deactivated  Bool         `json:"deactivated"`
	Locked       Bool         `json:"locked"`
	ShadowBanned Bool         `json:"shadow_banned"`
	Erased       Bool         `json:"erased"`
	IsGuest      Bool         `json:"is_guest"`
	UserType     *string      `json:"user_type"`
	AppserviceID *string      `json:"appservice_id"`
	DisplayName  *string      `json:"displayname"`
	AvatarURL    *string      `json:"avatar_url"`
	CreationTS   int64        `json:"creation_ts"`
	ThreePIDs    []ThreePID   `json:"threepids"`
	ExternalIDs  []ExternalID `json:"external_ids"`
	// PasswordHash is only sent by Synapse before 1.51; use SearchUsers for later versions.
	PasswordHash string          `json:"password_hash"`
	Raw          json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the fields and keeps the raw bytes.
func (u *UserDetails) UnmarshalJSON(b []byte) error {
	type plain UserDetails
	return decodeKeepingRaw(b, (*plain)(u), &u.Raw)
}

// User returns one local account.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#query-user-account
func (a *AdminClient) User(ctx context.Context, userID string) (*UserDetails, error) {
	var out UserDetails
	if err := a.get(ctx, "/_synapse/admin/v2/users/{userId}", "/_synapse/admin/v2/users/"+escape(userID), "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LoginAsUser gets a puppet access token for userID (no device is created); a zero validUntil
// means no expiry. It refuses the admin itself without a request: Synapse answers 400 there, and
// the admin's own data must be read with the admin token.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#login-as-a-user
func (a *AdminClient) LoginAsUser(ctx context.Context, userID string, validUntil time.Time) (string, error) {
	const endpoint = "POST /_synapse/admin/v1/users/{userId}/login"
	if err := a.needToken(endpoint); err != nil {
		return "", err
	}
	self, err := a.AdminUserID(ctx)
	if err != nil {
		return "", fmt.Errorf("synapseclient: %s: finding the admin's user ID: %w", endpoint, err)
	}
	if userID == self {
		return "", fmt.Errorf("synapseclient: %s for %s: %w", endpoint, userID, ErrLoginAsSelf)
	}
	body := []byte("{}")
	if !validUntil.IsZero() {
		body = []byte(`{"valid_until_ms":` + strconv.FormatInt(validUntil.UnixMilli(), 10) + `}`)
	}
	c := a.call("POST", "/_synapse/admin/v1/users/{userId}/login", "/_synapse/admin/v1/users/"+escape(userID)+"/login", "", body)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := a.t.getJSON(ctx, c, &out); err != nil {
		return "", err
	}
	if out.AccessToken == "" {
		return "", fmt.Errorf("synapseclient: %s: answer has no access_token", endpoint)
	}
	return out.AccessToken, nil
}

// SearchUser is one entry of search_users, the only admin API that still returns password
// hashes (bcrypt). Its String and GoString methods leave the hash out.
type SearchUser struct {
	Name         string  `json:"name"`
	PasswordHash string  `json:"password_hash"`
	IsGuest      Bool    `json:"is_guest"`
	Admin        Bool    `json:"admin"`
	UserType     *string `json:"user_type"`
}

// String describes the user without the password hash.
func (u SearchUser) String() string {
	return fmt.Sprintf("{%s admin=%t guest=%t hash=%t}", u.Name, bool(u.Admin), bool(u.IsGuest), u.PasswordHash != "")
}

// GoString is String, so %#v does not print the hash either.
func (u SearchUser) GoString() string { return "synapseclient.SearchUser" + u.String() }

// SearchUsers lists local users whose ID contains term, with their password hashes (Synapse's
// undocumented SearchUsersRestServlet, present from 0.19.3; the answer is a bare JSON list). A term
// such as ":" or the server name matches every local user.
// https://github.com/element-hq/synapse/blob/develop/synapse/rest/admin/users.py (SearchUsersRestServlet)
func (a *AdminClient) SearchUsers(ctx context.Context, term string) ([]SearchUser, error) {
	const template = "/_synapse/admin/v1/search_users/{adminId}"
	if term == "" {
		return nil, fmt.Errorf("synapseclient: GET %s: term is required", template)
	}
	if err := a.needToken("GET " + template); err != nil {
		return nil, err
	}
	self, err := a.AdminUserID(ctx)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: GET %s: finding the admin's user ID: %w", template, err)
	}
	out := []SearchUser{}
	if err := a.get(ctx, template, "/_synapse/admin/v1/search_users/"+escape(self), "term="+escape(term), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// AccountData holds a user's account data as the admin API gives it: global and per-room maps of
// type to content. It lacks m.push_rules and m.tag (see UserClient.PushRules and RoomTags).
type AccountData struct {
	Global map[string]json.RawMessage            `json:"global"`
	Rooms  map[string]map[string]json.RawMessage `json:"rooms"`
}

// AccountData returns a user's global and per-room account data (Synapse >= 1.50).
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#account-data
func (a *AdminClient) AccountData(ctx context.Context, userID string) (*AccountData, error) {
	var out struct {
		AccountData AccountData `json:"account_data"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/users/{userId}/accountdata", "/_synapse/admin/v1/users/"+escape(userID)+"/accountdata", "", &out); err != nil {
		return nil, err
	}
	if out.AccountData.Global == nil {
		out.AccountData.Global = map[string]json.RawMessage{}
	}
	if out.AccountData.Rooms == nil {
		out.AccountData.Rooms = map[string]map[string]json.RawMessage{}
	}
	return &out.AccountData, nil
}

// Device is one device of a user; the admin API adds LastSeenUserAgent, the client API does not.
type Device struct {
	DeviceID          string          `json:"device_id"`
	UserID            string          `json:"user_id"`
	DisplayName       *string         `json:"display_name"`
	LastSeenIP        *string         `json:"last_seen_ip"`
	LastSeenTS        *int64          `json:"last_seen_ts"`
	LastSeenUserAgent *string         `json:"last_seen_user_agent"`
	Dehydrated        Bool            `json:"dehydrated"`
	Raw               json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the fields and keeps the raw bytes.
func (d *Device) UnmarshalJSON(b []byte) error {
	type plain Device
	return decodeKeepingRaw(b, (*plain)(d), &d.Raw)
}

// Devices lists a user's devices.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-all-devices
func (a *AdminClient) Devices(ctx context.Context, userID string) ([]Device, error) {
	var out struct {
		Devices []Device `json:"devices"`
	}
	if err := a.get(ctx, "/_synapse/admin/v2/users/{userId}/devices", "/_synapse/admin/v2/users/"+escape(userID)+"/devices", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.Devices), nil
}

// Pusher is one push gateway registration of a user.
type Pusher struct {
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Pushkey           string          `json:"pushkey"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Enabled           *bool           `json:"enabled"`   // absent before Synapse 1.73
	DeviceID          *string         `json:"device_id"` // absent before Synapse 1.73
	Raw               json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the fields and keeps the raw bytes.
func (p *Pusher) UnmarshalJSON(b []byte) error {
	type plain Pusher
	return decodeKeepingRaw(b, (*plain)(p), &p.Raw)
}

// Pushers lists a user's pushers.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-all-pushers
func (a *AdminClient) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	var out struct {
		Pushers []Pusher `json:"pushers"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/users/{userId}/pushers", "/_synapse/admin/v1/users/"+escape(userID)+"/pushers", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.Pushers), nil
}

// JoinedRooms lists the rooms a user is joined to.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-joined-rooms-of-a-user
func (a *AdminClient) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	var out struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/users/{userId}/joined_rooms", "/_synapse/admin/v1/users/"+escape(userID)+"/joined_rooms", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.JoinedRooms), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// RoomSummary is one entry of the rooms list; rooms that lost every local member have null
// names, join rules and history visibility.
type RoomSummary struct {
	RoomID             string          `json:"room_id"`
	Name               *string         `json:"name"`
	CanonicalAlias     *string         `json:"canonical_alias"`
	JoinedMembers      int             `json:"joined_members"`
	JoinedLocalMembers int             `json:"joined_local_members"`
	Version            string          `json:"version"`
	Creator            string          `json:"creator"`
	Encryption         *string         `json:"encryption"`
	Federatable        Bool            `json:"federatable"`
	Public             Bool            `json:"public"`
	JoinRules          *string         `json:"join_rules"`
	GuestAccess        *string         `json:"guest_access"`
	HistoryVisibility  *string         `json:"history_visibility"`
	StateEvents        int             `json:"state_events"`
	RoomType           *string         `json:"room_type"`
	Raw                json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the fields and keeps the raw bytes.
func (r *RoomSummary) UnmarshalJSON(b []byte) error {
	type plain RoomSummary
	return decodeKeepingRaw(b, (*plain)(r), &r.Raw)
}

// ListRoomsOptions selects a page of rooms.
type ListRoomsOptions struct {
	From    int    // offset: next_batch of the previous page
	Limit   int    // 0 for Synapse's default (100)
	OrderBy string // optional, e.g. "name", "version"
	Dir     string // optional "f" or "b"
}

// RoomPage is one page of rooms; NextBatch is nil on the last page.
type RoomPage struct {
	Rooms      []RoomSummary `json:"rooms"`
	Offset     int           `json:"offset"`
	TotalRooms int           `json:"total_rooms"`
	NextBatch  *int          `json:"-"`
}

// ListRooms returns one page of the rooms Synapse keeps statistics for.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#list-room-api
func (a *AdminClient) ListRooms(ctx context.Context, opts ListRoomsOptions) (*RoomPage, error) {
	q := url.Values{}
	if opts.From > 0 {
		q.Set("from", strconv.Itoa(opts.From))
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.OrderBy != "" {
		q.Set("order_by", opts.OrderBy)
	}
	if opts.Dir != "" {
		q.Set("dir", opts.Dir)
	}
	var out struct {
		RoomPage
		NextBatch json.RawMessage `json:"next_batch"`
	}
	const p = "/_synapse/admin/v1/rooms"
	if err := a.get(ctx, p, p, q.Encode(), &out); err != nil {
		return nil, err
	}
	page := out.RoomPage
	tok, err := flexToken(out.NextBatch)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: GET %s: next_batch: %w", p, err)
	}
	if tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil {
			return nil, fmt.Errorf("synapseclient: GET %s: next_batch %q is not an offset", p, tok)
		}
		page.NextBatch = &n
	}
	return &page, nil
}

// AllRooms pages through every room of the rooms list.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#list-room-api
func (a *AdminClient) AllRooms(ctx context.Context) ([]RoomSummary, error) {
	var all []RoomSummary
	opts := ListRoomsOptions{Limit: a.pageSize}
	for range maxPages {
		page, err := a.ListRooms(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Rooms...)
		if page.NextBatch == nil || len(page.Rooms) == 0 {
			return all, nil
		}
		if *page.NextBatch <= opts.From {
			return nil, fmt.Errorf("synapseclient: GET /_synapse/admin/v1/rooms: next_batch %d does not advance", *page.NextBatch)
		}
		opts.From = *page.NextBatch
	}
	return nil, fmt.Errorf("synapseclient: GET /_synapse/admin/v1/rooms: more than %d pages", maxPages)
}

// RoomDetails is the room list entry plus the details endpoint's extra fields.
type RoomDetails struct {
	RoomSummary
	Topic              *string `json:"topic"`
	Avatar             *string `json:"avatar"`
	JoinedLocalDevices int     `json:"joined_local_devices"`
	Forgotten          Bool    `json:"forgotten"`
}

// UnmarshalJSON decodes both parts and keeps the raw bytes in Raw.
func (r *RoomDetails) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &r.RoomSummary); err != nil {
		return err
	}
	var extra struct {
		Topic              *string `json:"topic"`
		Avatar             *string `json:"avatar"`
		JoinedLocalDevices int     `json:"joined_local_devices"`
		Forgotten          Bool    `json:"forgotten"`
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		return err
	}
	r.Topic, r.Avatar, r.JoinedLocalDevices, r.Forgotten = extra.Topic, extra.Avatar, extra.JoinedLocalDevices, extra.Forgotten
	return nil
}

// Room returns one room's details.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-details-api
func (a *AdminClient) Room(ctx context.Context, roomID string) (*RoomDetails, error) {
	var out RoomDetails
	if err := a.get(ctx, "/_synapse/admin/v1/rooms/{roomId}", "/_synapse/admin/v1/rooms/"+escape(roomID), "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RoomState returns a room's current state in client format (no signatures, hashes or edges:
// not usable as PDUs), each event as received.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-state-api
func (a *AdminClient) RoomState(ctx context.Context, roomID string) ([]json.RawMessage, error) {
	var out struct {
		State []json.RawMessage `json:"state"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/rooms/{roomId}/state", "/_synapse/admin/v1/rooms/"+escape(roomID)+"/state", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.State), nil
}

// RoomMembers lists the users currently joined to a room, local and remote.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-members-api
func (a *AdminClient) RoomMembers(ctx context.Context, roomID string) ([]string, error) {
	var out struct {
		Members []string `json:"members"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/rooms/{roomId}/members", "/_synapse/admin/v1/rooms/"+escape(roomID)+"/members", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.Members), nil
}

// ForwardExtremity is one of a room's newest events (a good seed for backfill and state_ids).
type ForwardExtremity struct {
	EventID    string `json:"event_id"`
	StateGroup int64  `json:"state_group"`
	Depth      int64  `json:"depth"`
	ReceivedTS int64  `json:"received_ts"`
}

// ForwardExtremities lists a room's forward extremities.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#check-for-forward-extremities
func (a *AdminClient) ForwardExtremities(ctx context.Context, roomID string) ([]ForwardExtremity, error) {
	var out struct {
		Results []ForwardExtremity `json:"results"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/rooms/{roomId}/forward_extremities", "/_synapse/admin/v1/rooms/"+escape(roomID)+"/forward_extremities", "", &out); err != nil {
		return nil, err
	}
	return nonNil(out.Results), nil
}

// MessagesOptions pages through a room's timeline with the admin messages API.
type MessagesOptions struct {
	From  string // pagination token; "" starts at the room's start (dir f) or end (dir b)
	To    string
	Dir   string // "f" or "b"; "" for Synapse's default
	Limit int    // 0 for Synapse's default (10)
}

// MessagesPage is one page of the admin messages API in federation format. End is "" when
// there is nothing more.
type MessagesPage struct {
	Chunk []PDU
	State []PDU
	Start string
	End   string
}

// RoomMessages returns a page of a room's events in federation format (the raw flag), without
// visibility filtering; Synapse >= 1.68. Events carry event_id and unsigned, which are not part of
// the signed PDU.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-messages-api
func (a *AdminClient) RoomMessages(ctx context.Context, roomID string, opts MessagesOptions) (*MessagesPage, error) {
	const template = "/_synapse/admin/v1/rooms/{roomId}/messages"
	if err := a.needToken("GET " + template); err != nil {
		return nil, err
	}
	if err := a.requireVersion(ctx, "GET "+template, VersionAdminRoomMessages); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("raw", "true")
	if opts.From != "" {
		q.Set("from", opts.From)
	}
	if opts.To != "" {
		q.Set("to", opts.To)
	}
	if opts.Dir != "" {
		q.Set("dir", opts.Dir)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	c := a.call("GET", template, "/_synapse/admin/v1/rooms/"+escape(roomID)+"/messages", q.Encode(), nil)
	body, err := a.t.do(ctx, c)
	if err != nil {
		return nil, err
	}
	root, err := parseObject(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	page := &MessagesPage{Start: root.Get("start").String(), End: root.Get("end").String()}
	if page.Chunk, err = parsePDUList(c.endpoint, body, root, "chunk", true); err != nil {
		return nil, err
	}
	if page.State, err = parsePDUList(c.endpoint, body, root, "state", false); err != nil {
		return nil, err
	}
	for _, list := range [][]PDU{page.Chunk, page.State} {
		for i := range list {
			if list[i], err = withoutAddedRoomID(list[i]); err != nil {
				return nil, fmt.Errorf("synapseclient: %s: %w", c.endpoint, err)
			}
		}
	}
	return page, nil
}

// FetchEvent returns one event as Synapse stored it (full PDU with signatures, hashes, edges),
// without visibility filtering; Synapse >= 1.140.
// https://element-hq.github.io/synapse/latest/admin_api/fetch_event.html
func (a *AdminClient) FetchEvent(ctx context.Context, eventID string) (*PDU, error) {
	const template = "/_synapse/admin/v1/fetch_event/{eventId}"
	if err := a.needToken("GET " + template); err != nil {
		return nil, err
	}
	if err := a.requireVersion(ctx, "GET "+template, VersionFetchEvent); err != nil {
		return nil, err
	}
	c := a.call("GET", template, "/_synapse/admin/v1/fetch_event/"+escape(eventID), "", nil)
	body, err := a.t.do(ctx, c)
	if err != nil {
		return nil, err
	}
	root, err := parseObject(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	ev := root.Get("event")
	if !ev.IsObject() {
		return nil, fmt.Errorf("synapseclient: %s: answer has no event object", c.endpoint)
	}
	p, err := pduFromResult(rawOf(body, ev), ev)
	if err == nil {
		p, err = withoutAddedRoomID(p)
	}
	if err != nil {
		return nil, fmt.Errorf("synapseclient: %s: %w", c.endpoint, err)
	}
	return &p, nil
}

// decodeKeepingRaw decodes b into v (a method-less view of the value, so decoding does not recurse)
// and keeps a copy of the bytes in raw.
func decodeKeepingRaw(b []byte, v any, raw *json.RawMessage) error {
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	*raw = append(json.RawMessage(nil), b...)
	return nil
}

// UserMediaUsage is one user's local media: how many uploads and their total size in bytes.
type UserMediaUsage struct {
	UserID      string  `json:"user_id"`
	DisplayName *string `json:"displayname"`
	MediaCount  int64   `json:"media_count"`
	MediaLength int64   `json:"media_length"`
}

// UserMediaPage is one page of the users' media statistics; NextToken is nil on the last page.
type UserMediaPage struct {
	Users     []UserMediaUsage `json:"users"`
	Total     int              `json:"total"`
	NextToken *int             `json:"-"`
}

// UserMediaStatistics returns one page of the users that uploaded local media, from offset from
// (0 for the first page) with at most limit entries (0 for Synapse's default, 100).
// https://element-hq.github.io/synapse/latest/admin_api/statistics.html#users-media-usage-statistics
func (a *AdminClient) UserMediaStatistics(ctx context.Context, from, limit int) (*UserMediaPage, error) {
	q := url.Values{}
	if from > 0 {
		q.Set("from", strconv.Itoa(from))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		UserMediaPage
		NextToken json.RawMessage `json:"next_token"`
	}
	const p = "/_synapse/admin/v1/statistics/users/media"
	if err := a.get(ctx, p, p, q.Encode(), &out); err != nil {
		return nil, err
	}
	page := out.UserMediaPage
	tok, err := flexToken(out.NextToken)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: GET %s: next_token: %w", p, err)
	}
	if tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil {
			return nil, fmt.Errorf("synapseclient: GET %s: next_token %q is not an offset", p, tok)
		}
		page.NextToken = &n
	}
	page.Users = nonNil(page.Users)
	return &page, nil
}

// MediaTotals is the local media of the whole server.
type MediaTotals struct {
	Users int   // users with at least one upload
	Count int64 // uploads
	Bytes int64 // their total size
}

// LocalMediaTotals pages through the users' media statistics and adds them up.
// https://element-hq.github.io/synapse/latest/admin_api/statistics.html#users-media-usage-statistics
func (a *AdminClient) LocalMediaTotals(ctx context.Context) (*MediaTotals, error) {
	var t MediaTotals
	from := 0
	for range maxPages {
		page, err := a.UserMediaStatistics(ctx, from, a.pageSize)
		if err != nil {
			return nil, err
		}
		for _, u := range page.Users {
			t.Users++
			t.Count += u.MediaCount
			t.Bytes += u.MediaLength
		}
		if page.NextToken == nil || len(page.Users) == 0 {
			return &t, nil
		}
		if *page.NextToken <= from {
			return nil, fmt.Errorf("synapseclient: GET /_synapse/admin/v1/statistics/users/media: next_token %d does not advance", *page.NextToken)
		}
		from = *page.NextToken
	}
	return nil, fmt.Errorf("synapseclient: GET /_synapse/admin/v1/statistics/users/media: more than %d pages", maxPages)
}

// LocalMedia is one local upload as the admin API lists a user's media (Synapse 1.67 shape;
// later versions add fields, ignored here). Null columns decode as "" and 0.
type LocalMedia struct {
	MediaID            string `json:"media_id"`
	MediaType          string `json:"media_type"`
	MediaLength        int64  `json:"media_length"`
	UploadName         string `json:"upload_name"`
	CreatedTS          int64  `json:"created_ts"`
	LastAccessTS       int64  `json:"last_access_ts"`
	QuarantinedBy      string `json:"quarantined_by"`
	SafeFromQuarantine bool   `json:"safe_from_quarantine"`
	// Authenticated (Synapse ≥ 1.120; 0/1 on SQLite) marks media uploaded with
	// enable_authenticated_media on: Synapse serves it only on the authenticated endpoints.
	Authenticated Bool `json:"authenticated"`
	// SHA256 is the hex sha256 of the bytes, recorded at upload by Synapse releases after 1.120 (1.163 does; 1.120 does not); "" otherwise.
	SHA256 string `json:"sha256"`
}

// LocalMediaPage is one page of a user's uploads; NextToken is nil on the last page.
type LocalMediaPage struct {
	Media     []LocalMedia `json:"media"`
	Total     int          `json:"total"`
	NextToken *int         `json:"-"`
}

// UserMedia returns one page of the local media a user uploaded, oldest first (order_by=created_ts,
// dir=f), from offset from with at most limit items (0 for Synapse's default, 100).
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-media-uploaded-by-a-user
func (a *AdminClient) UserMedia(ctx context.Context, userID string, from, limit int) (*LocalMediaPage, error) {
	q := url.Values{}
	q.Set("order_by", "created_ts")
	q.Set("dir", "f")
	if from > 0 {
		q.Set("from", strconv.Itoa(from))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Media     []mediaJSON     `json:"media"`
		Total     int             `json:"total"`
		NextToken json.RawMessage `json:"next_token"`
	}
	const tmpl = "/_synapse/admin/v1/users/{userId}/media"
	if err := a.get(ctx, tmpl, "/_synapse/admin/v1/users/"+escape(userID)+"/media", q.Encode(), &out); err != nil {
		return nil, err
	}
	page := &LocalMediaPage{Total: out.Total, Media: make([]LocalMedia, 0, len(out.Media))}
	for _, m := range out.Media {
		page.Media = append(page.Media, m.toLocalMedia())
	}
	tok, err := flexToken(out.NextToken)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: GET %s: next_token: %w", tmpl, err)
	}
	if tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil {
			return nil, fmt.Errorf("synapseclient: GET %s: next_token %q is not an offset", tmpl, tok)
		}
		page.NextToken = &n
	}
	return page, nil
}

// AllUserMedia pages through UserMedia and returns all of a user's uploads, oldest first.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-media-uploaded-by-a-user
func (a *AdminClient) AllUserMedia(ctx context.Context, userID string) ([]LocalMedia, error) {
	out := []LocalMedia{}
	from := 0
	for range maxPages {
		page, err := a.UserMedia(ctx, userID, from, a.pageSize)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Media...)
		if page.NextToken == nil || len(page.Media) == 0 {
			return out, nil
		}
		if *page.NextToken <= from {
			return nil, fmt.Errorf("synapseclient: GET /_synapse/admin/v1/users/{userId}/media: next_token %d does not advance", *page.NextToken)
		}
		from = *page.NextToken
	}
	return nil, fmt.Errorf("synapseclient: GET /_synapse/admin/v1/users/{userId}/media: more than %d pages", maxPages)
}

// mediaJSON decodes a media item whose nullable columns may be null; safe_from_quarantine is a
// boolean on PostgreSQL and 0/1 on SQLite.
type mediaJSON struct {
	MediaID            string          `json:"media_id"`
	MediaType          *string         `json:"media_type"`
	MediaLength        *int64          `json:"media_length"`
	UploadName         *string         `json:"upload_name"`
	CreatedTS          *int64          `json:"created_ts"`
	LastAccessTS       *int64          `json:"last_access_ts"`
	QuarantinedBy      *string         `json:"quarantined_by"`
	SafeFromQuarantine json.RawMessage `json:"safe_from_quarantine"`
}

func (m mediaJSON) toLocalMedia() LocalMedia {
	deref := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	num := func(n *int64) int64 {
		if n == nil {
			return 0
		}
		return *n
	}
	safe := string(m.SafeFromQuarantine)
	return LocalMedia{MediaID: m.MediaID, MediaType: deref(m.MediaType), MediaLength: num(m.MediaLength),
		UploadName: deref(m.UploadName), CreatedTS: num(m.CreatedTS), LastAccessTS: num(m.LastAccessTS),
		QuarantinedBy: deref(m.QuarantinedBy), SafeFromQuarantine: safe == "true" || safe == "1"}
}
