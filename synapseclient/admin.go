package synapseclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
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

// call builds a request to the endpoint template with its placeholders filled by args in order.
func (a *AdminClient) call(method, template, query string, body []byte, args ...string) *call {
	return &call{endpoint: method + " " + template, method: method, base: a.base, path: fillPath(template, args...), query: query,
		body: body, auth: bearer(a.token), idempotent: method == "GET"}
}

func (a *AdminClient) needToken(endpoint string) error {
	if a.token == "" {
		return fmt.Errorf("synapseclient: %s: %w: Config.AdminToken is empty", endpoint, ErrNotConfigured)
	}
	return nil
}

func (a *AdminClient) get(ctx context.Context, template, query string, out any, args ...string) error {
	c := a.call("GET", template, query, nil, args...)
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
	if err := a.get(ctx, "/_synapse/admin/v1/server_version", "", &out); err != nil {
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

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
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

// maxPages bounds the all-pages helpers against a server that never ends its pagination.
const maxPages = 1 << 20

// offsetPages calls page with from = 0, then with each next offset it returns, until it returns
// no next offset or an empty page. An offset that does not advance, or more than maxPages pages,
// is an error naming endpoint.
func offsetPages(endpoint string, page func(from int) (next *int, n int, err error)) error {
	from := 0
	for range maxPages {
		next, n, err := page(from)
		if err != nil {
			return err
		}
		if next == nil || n == 0 {
			return nil
		}
		if *next <= from {
			return fmt.Errorf("synapseclient: GET %s: next offset %d does not advance", endpoint, *next)
		}
		from = *next
	}
	return fmt.Errorf("synapseclient: GET %s: more than %d pages", endpoint, maxPages)
}
