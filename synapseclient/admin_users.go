package synapseclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

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
	if err := a.get(ctx, p, q.Encode(), &out); err != nil {
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
	if err := a.get(ctx, "/_synapse/admin/v2/users/{userId}", "", &out, userID); err != nil {
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
	c := a.call("POST", "/_synapse/admin/v1/users/{userId}/login", "", body, userID)
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
	if err := a.get(ctx, template, "term="+escape(term), &out, self); err != nil {
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
	if err := a.get(ctx, "/_synapse/admin/v1/users/{userId}/accountdata", "", &out, userID); err != nil {
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

// JoinedRooms lists the rooms a user is joined to.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-joined-rooms-of-a-user
func (a *AdminClient) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	var out struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/users/{userId}/joined_rooms", "", &out, userID); err != nil {
		return nil, err
	}
	return nonNil(out.JoinedRooms), nil
}
