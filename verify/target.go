package verify

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
)

// Target is what verify reads from the new server, through its client API as a local user.
// HTTPTarget implements it; tests fake it.
type Target interface {
	// Check confirms the target answers and accepts the token.
	Check(ctx context.Context) error
	// Messages returns one page of a room's timeline, newest first, before from ("" = the end).
	Messages(ctx context.Context, roomID, asUser, from string, limit int) (*MessagesPage, error)
	// State returns a room's current state.
	State(ctx context.Context, roomID, asUser string) ([]StateEvent, error)
	// Profile returns a user's profile as the target answers it.
	Profile(ctx context.Context, userID string) (json.RawMessage, error)
	// Devices lists a user's devices, asked as that user.
	Devices(ctx context.Context, userID string) ([]Device, error)
	// AccountData returns one type of a user's global (roomID "") or room account data.
	AccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error)
	// QueryKeys returns the user's device and cross-signing keys, asked as that user.
	QueryKeys(ctx context.Context, userID string) (*Keys, error)
	// KeyBackup returns the current key backup version, or nil when there is none.
	KeyBackup(ctx context.Context, userID string) (*KeyBackupVersion, error)
}

// MessagesPage is one answer of GET /rooms/{roomId}/messages.
type MessagesPage struct {
	Chunk []TimelineEvent `json:"chunk"`
	Start string          `json:"start"`
	End   string          `json:"end"` // "" when there is nothing further back
}

// TimelineEvent is the part of a client-format event verify looks at.
type TimelineEvent struct {
	EventID  string  `json:"event_id"`
	Type     string  `json:"type"`
	StateKey *string `json:"state_key"`
	Sender   string  `json:"sender"`
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

// ErrNotFound is wrapped by Target methods when the target answers 404.
var ErrNotFound = errors.New("not found on the target")

// ErrForbidden is wrapped by Target methods when the target answers 403 (e.g. not in the room).
var ErrForbidden = errors.New("refused by the target")

// TargetError is a Matrix error answer of the target. It never holds the token.
type TargetError struct {
	Endpoint string
	Status   int
	ErrCode  string
	Message  string
}

func (e *TargetError) Error() string {
	return fmt.Sprintf("target: %s: %d %s %s", e.Endpoint, e.Status, e.ErrCode, e.Message)
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

// HTTPTarget talks to a Conduit (or any homeserver) client API with an application service
// token, acting as each local user with ?user_id= (identity assertion).
// https://spec.matrix.org/v1.16/application-service-api/#identity-assertion
type HTTPTarget struct {
	BaseURL string
	Token   string
	// HTTP sends the requests; http.DefaultClient when nil.
	HTTP *http.Client
	// Attempts per request for 429, 5xx and dropped connections (default 4).
	Attempts int
	// Timeout of one attempt (default 60 s).
	Timeout time.Duration

	logins DeviceLogin // room reads' devices on targets that need one (see devicelogin.go)
}

const clientPrefix = "/_matrix/client/v3"

func (t *HTTPTarget) do(ctx context.Context, method, endpoint, path string, query url.Values, body []byte, out any) error {
	return t.doAttempts(ctx, t.Attempts, method, endpoint, path, query, body, out)
}

func (t *HTTPTarget) doAttempts(ctx context.Context, attempts int, method, endpoint, path string, query url.Values, body []byte, out any) error {
	base, err := url.Parse(strings.TrimRight(t.BaseURL, "/"))
	if err != nil {
		return fmt.Errorf("target URL %q: %w", t.BaseURL, err)
	}
	u := *base
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Errorf("target: %s: %w", endpoint, err)
	}
	u.Path = base.Path + unescaped
	u.RawPath = base.EscapedPath() + path
	u.RawQuery = query.Encode()
	client := t.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	timeout := t.Timeout
	if attempts <= 0 {
		attempts = 4
	}
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	var last error
	for attempt := range attempts {
		if attempt > 0 {
			wait := time.Duration(250<<attempt) * time.Millisecond
			if te, ok := last.(*retryAfter); ok && te.wait > 0 {
				wait = te.wait
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		var retry bool
		retry, last = t.once(ctx, client, timeout, method, endpoint, u.String(), body, out)
		if !retry {
			if ra, ok := last.(*retryAfter); ok {
				return ra.err
			}
			return last
		}
	}
	if ra, ok := last.(*retryAfter); ok {
		return ra.err
	}
	return last
}

// retryAfter carries a retryable error and the wait the server asked for.
type retryAfter struct {
	err  error
	wait time.Duration
}

func (r *retryAfter) Error() string { return r.err.Error() }

func (t *HTTPTarget) once(ctx context.Context, client *http.Client, timeout time.Duration, method, endpoint, rawURL string, body []byte, out any) (retry bool, err error) {
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
	req.Header.Set("Authorization", "Bearer "+t.tokenFor(ctx))
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
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return true, fmt.Errorf("target: %s: reading the answer: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		var m struct {
			ErrCode    string `json:"errcode"`
			Error      string `json:"error"`
			RetryAfter int64  `json:"retry_after_ms"`
		}
		_ = json.Unmarshal(data, &m)
		te := &TargetError{Endpoint: endpoint, Status: resp.StatusCode, ErrCode: m.ErrCode, Message: m.Error}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			wait := time.Duration(m.RetryAfter) * time.Millisecond
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && wait == 0 {
				wait = time.Duration(s) * time.Second
			}
			return true, &retryAfter{err: te, wait: min(wait, 30*time.Second)}
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
func (t *HTTPTarget) Check(ctx context.Context) error {
	var out struct {
		UserID string `json:"user_id"`
	}
	if err := t.doAttempts(ctx, checkAttempts(t.Attempts), "GET", "GET /account/whoami", clientPrefix+"/account/whoami", nil, nil, &out); err != nil {
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

// Messages pages a room's timeline backwards.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidmessages
func (t *HTTPTarget) Messages(ctx context.Context, roomID, userID, from string, limit int) (*MessagesPage, error) {
	ctx, q, err := t.asMember(ctx, userID)
	if err != nil {
		return nil, err
	}
	q.Set("dir", "b")
	q.Set("limit", strconv.Itoa(limit))
	if from != "" {
		q.Set("from", from)
	}
	var out MessagesPage
	err = t.do(ctx, "GET", "GET /rooms/{roomId}/messages", clientPrefix+"/rooms/"+esc(roomID)+"/messages", q, nil, &out)
	return &out, err
}

// State returns a room's current state.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidstate
func (t *HTTPTarget) State(ctx context.Context, roomID, userID string) ([]StateEvent, error) {
	ctx, q, err := t.asMember(ctx, userID)
	if err != nil {
		return nil, err
	}
	var out []StateEvent
	err = t.do(ctx, "GET", "GET /rooms/{roomId}/state", clientPrefix+"/rooms/"+esc(roomID)+"/state", q, nil, &out)
	return out, err
}

// Profile returns a user's profile, asked as the appservice itself, so that a user the target
// does not have gives 404 instead of a refused identity assertion.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3profileuserid
func (t *HTTPTarget) Profile(ctx context.Context, userID string) (json.RawMessage, error) {
	var out json.RawMessage
	err := t.do(ctx, "GET", "GET /profile/{userId}", clientPrefix+"/profile/"+esc(userID), nil, nil, &out)
	return out, err
}

// Devices lists the user's devices.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3devices
func (t *HTTPTarget) Devices(ctx context.Context, userID string) ([]Device, error) {
	var out struct {
		Devices []Device `json:"devices"`
	}
	err := t.do(ctx, "GET", "GET /devices", clientPrefix+"/devices", asUser(userID), nil, &out)
	return out.Devices, err
}

// AccountData returns one type of global or room account data.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3useruseridaccount_datatype
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3useruseridroomsroomidaccount_datatype
func (t *HTTPTarget) AccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	var out json.RawMessage
	if roomID == "" {
		err := t.do(ctx, "GET", "GET /user/{userId}/account_data/{type}",
			clientPrefix+"/user/"+esc(userID)+"/account_data/"+esc(typ), asUser(userID), nil, &out)
		return out, err
	}
	err := t.do(ctx, "GET", "GET /user/{userId}/rooms/{roomId}/account_data/{type}",
		clientPrefix+"/user/"+esc(userID)+"/rooms/"+esc(roomID)+"/account_data/"+esc(typ), asUser(userID), nil, &out)
	return out, err
}

// QueryKeys asks the user's own keys, as the user (the user-signing key is only shown to its owner).
// https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3keysquery
func (t *HTTPTarget) QueryKeys(ctx context.Context, userID string) (*Keys, error) {
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
	if err := t.do(ctx, "POST", "POST /keys/query", clientPrefix+"/keys/query", asUser(userID), body, &out); err != nil {
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
func (t *HTTPTarget) KeyBackup(ctx context.Context, userID string) (*KeyBackupVersion, error) {
	var out KeyBackupVersion
	err := t.do(ctx, "GET", "GET /room_keys/version", clientPrefix+"/room_keys/version", asUser(userID), nil, &out)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}
