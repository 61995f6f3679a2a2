// Package cutover is the target side of a cutover: one client for the target's client API (as its
// application service), the rejoin and warm engines, and warm's resume state.
package cutover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/backoff"
)

// MessagesPage is one answer of GET /rooms/{roomId}/messages.
type MessagesPage struct {
	Chunk []TimelineEvent `json:"chunk"`
	Start string          `json:"start"`
	End   string          `json:"end"` // "" when there is nothing further back
}

// TimelineEvent is the part of a client-format event the cutover looks at.
type TimelineEvent struct {
	EventID  string  `json:"event_id"`
	Type     string  `json:"type"`
	StateKey *string `json:"state_key"`
	Sender   string  `json:"sender"`
}

// IsCreate reports whether the event is the room's m.room.create.
func (e TimelineEvent) IsCreate() bool {
	return e.Type == "m.room.create" && e.StateKey != nil && *e.StateKey == ""
}

// StateEvent is one current-state event in client format.
type StateEvent struct {
	EventID  string `json:"event_id"`
	Type     string `json:"type"`
	StateKey string `json:"state_key"`
}

// Device is one entry of GET /devices.
type Device struct {
	DeviceID    string  `json:"device_id"`
	DisplayName *string `json:"display_name"`
}

// Keys is the answer of POST /keys/query for one user.
type Keys struct {
	DeviceKeys      map[string]json.RawMessage // device ID → signed device keys
	MasterKey       json.RawMessage
	SelfSigningKey  json.RawMessage
	UserSigningKey  json.RawMessage
	FailureMessages []string
}

// KeyBackupVersion is GET /room_keys/version; AuthData is compared, never reported.
type KeyBackupVersion struct {
	Version   string          `json:"version"`
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int64           `json:"count"`
	ETag      string          `json:"etag"`
}

// ErrNotFound is wrapped by Client methods when the target answers 404.
var ErrNotFound = errors.New("not found on the target")

// ErrForbidden is wrapped by Client methods when the target answers 403 (e.g. not in the room, or
// a user outside the appservice's namespace).
var ErrForbidden = errors.New("refused by the target")

// TargetError is a Matrix error answer of the target. It never holds the token.
type TargetError struct {
	Endpoint string
	Status   int
	ErrCode  string
	Message  string
}

func (e *TargetError) Error() string {
	s := fmt.Sprintf("target: %s: %d", e.Endpoint, e.Status)
	if e.ErrCode != "" {
		s += " " + e.ErrCode
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap maps 404 to ErrNotFound and 403 to ErrForbidden.
func (e *TargetError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusForbidden:
		return ErrForbidden
	}
	return nil
}

// Client talks to a Conduit (or any homeserver) client API with an application service token,
// acting as each local user with ?user_id= (identity assertion), and retries 429, 5xx and dropped
// connections with one backoff policy.
// https://spec.matrix.org/v1.16/application-service-api/#identity-assertion
type Client struct {
	BaseURL string
	Token   string
	// HTTP sends the requests; http.DefaultClient when nil.
	HTTP *http.Client
	// Attempts per request for 429, 5xx and dropped connections (default 4).
	Attempts int
	// Timeout of one attempt (default 60 s).
	Timeout time.Duration
	// DeviceID and DeviceName are the device room reads log each member in with on targets that
	// need one (default TRANSITIONMATRIX, see devicelogin.go).
	DeviceID, DeviceName string
	// OnRetry, when set, is told of each failed attempt that is tried again.
	OnRetry func(endpoint string, attempt int, err error)

	logins deviceLogins
}

const clientPrefix = "/_matrix/client/v3"

// maxAnswer bounds the answer body read.
const maxAnswer = 256 << 20

func (c *Client) do(ctx context.Context, method, endpoint, path string, query url.Values, body []byte, out any) error {
	return c.doAttempts(ctx, c.Attempts, method, endpoint, path, query, body, out)
}

// retryPolicy is the one retry policy of the target's client API: 500 ms doubling up to 30 s,
// unless the server asks for a wait (at most 30 s too).
var retryPolicy = backoff.Policy{Base: 500 * time.Millisecond, Max: 30 * time.Second}

// retryWait is the wait before retry number retry (1 for the first).
func retryWait(retry int, asked time.Duration) time.Duration {
	if asked > 0 {
		return min(asked, retryPolicy.Max)
	}
	return retryPolicy.Delay(retry)
}

func (c *Client) doAttempts(ctx context.Context, attempts int, method, endpoint, path string, query url.Values, body []byte, out any) error {
	base, err := url.Parse(strings.TrimRight(c.BaseURL, "/"))
	if err != nil {
		return fmt.Errorf("target URL %q: %w", c.BaseURL, err)
	}
	u := *base
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Errorf("target: %s: %w", endpoint, err)
	}
	u.Path = base.Path + unescaped
	u.RawPath = base.EscapedPath() + path
	u.RawQuery = query.Encode()
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	timeout := c.Timeout
	if attempts <= 0 {
		attempts = 4
	}
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	var last error
	for attempt := range attempts {
		if attempt > 0 {
			var asked time.Duration
			if ra, ok := last.(*retryAfter); ok {
				asked = ra.wait
			}
			if c.OnRetry != nil {
				c.OnRetry(endpoint, attempt, unwrapRetry(last))
			}
			if err := backoff.Sleep(ctx, retryWait(attempt, asked)); err != nil {
				return err
			}
		}
		var retry bool
		retry, last = c.once(ctx, client, timeout, method, endpoint, u.String(), body, out)
		if !retry {
			return unwrapRetry(last)
		}
	}
	return unwrapRetry(last)
}

// retryAfter carries a retryable error and the wait the server asked for.
type retryAfter struct {
	err  error
	wait time.Duration
}

func (r *retryAfter) Error() string { return r.err.Error() }

func unwrapRetry(err error) error {
	if ra, ok := err.(*retryAfter); ok {
		return ra.err
	}
	return err
}

func (c *Client) once(ctx context.Context, client *http.Client, timeout time.Duration, method, endpoint, rawURL string, body []byte, out any) (retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, rawURL, rd)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.tokenFor(ctx))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// url.Error holds the URL, which holds no token (the token travels in a header).
		return true, fmt.Errorf("target: %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return true, fmt.Errorf("target: %s: reading the answer: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		var m struct {
			ErrCode    string `json:"errcode"`
			Error      string `json:"error"`
			RetryAfter int64  `json:"retry_after_ms"`
		}
		te := &TargetError{Endpoint: endpoint, Status: resp.StatusCode}
		if json.Unmarshal(data, &m) == nil && m.ErrCode != "" {
			te.ErrCode, te.Message = m.ErrCode, m.Error
		} else {
			te.Message = strings.TrimSpace(string(data))
			if len(te.Message) > 200 {
				te.Message = te.Message[:200] + "…"
			}
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			wait := time.Duration(m.RetryAfter) * time.Millisecond
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && wait == 0 {
				wait = time.Duration(s) * time.Second
			}
			return true, &retryAfter{err: te, wait: wait}
		}
		return false, te
	}
	if out == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return false, fmt.Errorf("target: %s: answer is not the JSON expected: %w", endpoint, err)
	}
	return false, nil
}

func asUser(userID string) url.Values {
	q := url.Values{}
	if userID != "" {
		q.Set("user_id", userID)
	}
	return q
}

func esc(s string) string { return url.PathEscape(s) }

// Check asks whoami with the token: the target must answer and accept it. It tries twice at
// most, so that a target that is down is reported at once.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3accountwhoami
func (c *Client) Check(ctx context.Context) error {
	var out struct {
		UserID string `json:"user_id"`
	}
	if err := c.doAttempts(ctx, checkAttempts(c.Attempts), "GET", "GET /account/whoami", clientPrefix+"/account/whoami", nil, nil, &out); err != nil {
		return err
	}
	if out.UserID == "" {
		return errors.New("target: GET /account/whoami: answer has no user_id")
	}
	return nil
}

// checkAttempts is at most 2 attempts, fewer when the target is configured with fewer.
func checkAttempts(attempts int) int {
	if attempts <= 0 || attempts > 2 {
		return 2
	}
	return attempts
}

// JoinedRooms lists the rooms user is joined to on the target.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3joined_rooms
func (c *Client) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	var out struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	err := c.do(ctx, "GET", "GET /joined_rooms", clientPrefix+"/joined_rooms", asUser(userID), nil, &out)
	return out.JoinedRooms, err
}

// Join asks the target to join user to a room through serverName.
// https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3joinroomidoralias
func (c *Client) Join(ctx context.Context, userID, roomID, serverName string) error {
	q := asUser(userID)
	q.Set("server_name", serverName)
	return c.do(ctx, "POST", "POST /join/{roomIdOrAlias}", clientPrefix+"/join/"+esc(roomID), q, []byte("{}"), nil)
}

// Messages pages a room's timeline backwards from the token from ("" = the newest event).
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidmessages
func (c *Client) Messages(ctx context.Context, roomID, userID, from string, limit int) (*MessagesPage, error) {
	ctx, q, err := c.asMember(ctx, userID)
	if err != nil {
		return nil, err
	}
	q.Set("dir", "b")
	q.Set("limit", strconv.Itoa(limit))
	if from != "" {
		q.Set("from", from)
	}
	var out MessagesPage
	err = c.do(ctx, "GET", "GET /rooms/{roomId}/messages", clientPrefix+"/rooms/"+esc(roomID)+"/messages", q, nil, &out)
	return &out, err
}

// State returns a room's current state.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidstate
func (c *Client) State(ctx context.Context, roomID, userID string) ([]StateEvent, error) {
	ctx, q, err := c.asMember(ctx, userID)
	if err != nil {
		return nil, err
	}
	var out []StateEvent
	err = c.do(ctx, "GET", "GET /rooms/{roomId}/state", clientPrefix+"/rooms/"+esc(roomID)+"/state", q, nil, &out)
	return out, err
}

// Profile returns a user's profile, asked as the appservice itself, so that a user the target
// does not have gives 404 instead of a refused identity assertion.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3profileuserid
func (c *Client) Profile(ctx context.Context, userID string) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, "GET", "GET /profile/{userId}", clientPrefix+"/profile/"+esc(userID), nil, nil, &out)
	return out, err
}

// Devices lists the user's devices.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3devices
func (c *Client) Devices(ctx context.Context, userID string) ([]Device, error) {
	var out struct {
		Devices []Device `json:"devices"`
	}
	err := c.do(ctx, "GET", "GET /devices", clientPrefix+"/devices", asUser(userID), nil, &out)
	return out.Devices, err
}

// AccountData returns one type of global (roomID "") or room account data.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3useruseridaccount_datatype
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3useruseridroomsroomidaccount_datatype
func (c *Client) AccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	var out json.RawMessage
	if roomID == "" {
		err := c.do(ctx, "GET", "GET /user/{userId}/account_data/{type}",
			clientPrefix+"/user/"+esc(userID)+"/account_data/"+esc(typ), asUser(userID), nil, &out)
		return out, err
	}
	err := c.do(ctx, "GET", "GET /user/{userId}/rooms/{roomId}/account_data/{type}",
		clientPrefix+"/user/"+esc(userID)+"/rooms/"+esc(roomID)+"/account_data/"+esc(typ), asUser(userID), nil, &out)
	return out, err
}

// QueryKeys asks the user's own keys, as the user (the user-signing key is only shown to its owner).
// https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3keysquery
func (c *Client) QueryKeys(ctx context.Context, userID string) (*Keys, error) {
	body, err := json.Marshal(map[string]any{"device_keys": map[string][]string{userID: {}}})
	if err != nil {
		return nil, err
	}
	var out struct {
		DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
		MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
		SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
		UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
		Failures        map[string]json.RawMessage            `json:"failures"`
	}
	if err := c.do(ctx, "POST", "POST /keys/query", clientPrefix+"/keys/query", asUser(userID), body, &out); err != nil {
		return nil, err
	}
	k := &Keys{DeviceKeys: out.DeviceKeys[userID], MasterKey: out.MasterKeys[userID],
		SelfSigningKey: out.SelfSigningKeys[userID], UserSigningKey: out.UserSigningKeys[userID]}
	for server := range out.Failures {
		k.FailureMessages = append(k.FailureMessages, "key query failed for "+server)
	}
	return k, nil
}

// KeyBackup returns the current key backup version, nil when the user has none.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3room_keysversion
func (c *Client) KeyBackup(ctx context.Context, userID string) (*KeyBackupVersion, error) {
	var out KeyBackupVersion
	err := c.do(ctx, "GET", "GET /room_keys/version", clientPrefix+"/room_keys/version", asUser(userID), nil, &out)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}
